/**
 * The download stage against a real HTTP server on loopback (tests/httpServer.ts):
 * Hub URLs and commits, resume, retries, errors, checksums, tokens, offline mode,
 * sharded models, plain URLs.
 */
import { afterEach, assert, beforeEach, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { StageError } from "../engine/Errors.ts"
import {
  download,
  type DownloadEnv,
  downloadDataset,
  downloadModel,
  envFrom,
  hubUrl,
  parseHubDataset,
  parseHubModel,
  runDownload,
  type SourceRecord
} from "../stages/download.ts"
import { writeTiny } from "../stages/download/tiny.ts"
import { modelProblem } from "../stages/lib/modelcheck.ts"
import { fetchToFile } from "../stages/lib/http.ts"
import { TestHub } from "./httpServer.ts"
import { microModel, safetensorsHeader, withSafetensorsHeader, writeFiles } from "./microModel.ts"

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex")
const COMMIT = "0123456789abcdef0123456789abcdef01234567"
const COMMIT2 = "fedcba9876543210fedcba9876543210fedcba98"

interface Ctx {
  readonly workspace: string
  readonly scratchDir: string
  readonly out: string
  readonly logs: Array<string>
  readonly totals: Array<[number, string]>
  readonly updates: Array<number>
  readonly progress: { total: (n: number, unit: string) => Effect.Effect<void>; update: (d: number) => Effect.Effect<void> }
  readonly log: (line: string) => Effect.Effect<void>
}

const makeCtx = (): Ctx => {
  const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "download-test-"))
  const logs: Array<string> = []
  const totals: Array<[number, string]> = []
  const updates: Array<number> = []
  const out = path.join(workspace, "staging")
  fs.mkdirSync(path.join(out, "model"), { recursive: true })
  return {
    workspace,
    scratchDir: path.join(workspace, "scratch"),
    out,
    logs,
    totals,
    updates,
    progress: {
      total: (n, unit) => Effect.sync(() => void totals.push([n, unit])),
      update: (d) => Effect.sync(() => void updates.push(d))
    },
    log: (line) => Effect.sync(() => void logs.push(line))
  }
}

const run = <A>(e: Effect.Effect<A, StageError>) => Effect.runPromise(e)
const failure = async (e: Effect.Effect<unknown, StageError>): Promise<string> => {
  const err = await Effect.runPromise(Effect.flip(e))
  assert.strictEqual(err._tag, "StageError")
  assert.notInclude(err.message, "\n", "one-line message")
  return err.message
}

/** Every file under a directory (relative paths). */
const tree = (dir: string): Array<string> =>
  fs.existsSync(dir) ? (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as Array<fs.Dirent>).filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort() : []

let hub: TestHub
let ctx: Ctx
let env: DownloadEnv

beforeEach(async () => {
  hub = await TestHub.start()
  ctx = makeCtx()
  env = { endpoint: hub.hubUrl, token: undefined, offline: false, baseDelayMs: 5 }
})

afterEach(async () => {
  await hub.close()
  fs.rmSync(ctx.workspace, { recursive: true, force: true })
})

const csv = Buffer.from("instruction,response\n" + Array.from({ length: 2000 }, (_, i) => `question ${i},answer ${i}`).join("\n") + "\n")
const big = randomBytes(3 * 1024 * 1024 + 123)

const stageCtx = (dataset: { source: string; sha256?: string }, model: { source: string }) => ({
  name: "download",
  key: "test",
  owns: () => undefined,
  params: { dataset, model: { layers: 2, seed: 0, ...model } },
  inputs: {},
  outputs: {
    dataset: path.join(ctx.out, "dataset.csv"),
    model: path.join(ctx.out, "model"),
    source: path.join(ctx.out, "source.json")
  },
  workspace: ctx.workspace,
  scratchDir: ctx.scratchDir,
  progress: ctx.progress,
  log: ctx.log
})

describe("sources", () => {
  it("parses hf:// dataset and model sources and builds resolve URLs", () => {
    const a = parseHubDataset("hf://datasets/acme/tickets/data/train.csv@v1.0")
    assert.deepStrictEqual(a, { ref: { repo: "acme/tickets", revision: "v1.0", pinned: true }, path: "data/train.csv" })
    const b = parseHubDataset("hf://datasets/acme/tickets@refs/convert/parquet/default/train/0.parquet")
    assert.deepStrictEqual(b, { ref: { repo: "acme/tickets", revision: "refs/convert/parquet", pinned: true }, path: "default/train/0.parquet" })
    assert.deepStrictEqual(parseHubDataset("hf://datasets/acme/tickets@refs/pr/3/x.csv"), { ref: { repo: "acme/tickets", revision: "refs/pr/3", pinned: true }, path: "x.csv" })
    const c = parseHubDataset("hf://datasets/acme/tickets/x.csv@refs/convert/parquet")
    assert.deepStrictEqual(c, { ref: { repo: "acme/tickets", revision: "refs/convert/parquet", pinned: true }, path: "x.csv" })
    assert.strictEqual(
      hubUrl("https://h.co", "dataset", (c as { ref: { repo: string; revision: string; pinned: boolean } }).ref, "a b/x.csv"),
      "https://h.co/datasets/acme/tickets/resolve/refs%2Fconvert%2Fparquet/a%20b/x.csv"
    )
    assert.deepStrictEqual(parseHubDataset("hf://datasets/acme/tickets@v2/x.csv"), { ref: { repo: "acme/tickets", revision: "v2", pinned: true }, path: "x.csv" })
    assert.isString(parseHubDataset("hf://datasets/acme/tickets@v0/x.csv@v1"), "the revision given twice")
    assert.isString(parseHubDataset("hf://acme/tickets/x.csv"))
    assert.isString(parseHubDataset("hf://datasets/acme/tickets/../x.csv"))
    assert.deepStrictEqual(parseHubModel("hf://Qwen/Qwen3-4B"), { repo: "Qwen/Qwen3-4B", revision: "main", pinned: false })
    assert.deepStrictEqual(parseHubModel("hf://Qwen/Qwen3-4B@abc"), { repo: "Qwen/Qwen3-4B", revision: "abc", pinned: true })
    assert.isString(parseHubModel("hf://datasets/acme/tickets"))
    assert.isString(parseHubModel("hf://Qwen/Qwen3-4B/sub"))
  })

  it("reads HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE", () => {
    assert.deepStrictEqual(envFrom({}), { endpoint: "https://huggingface.co", token: undefined, offline: false })
    assert.deepStrictEqual(envFrom({ HF_ENDPOINT: "http://mirror:8080/", HF_TOKEN: "t", HF_HUB_OFFLINE: "1" }), {
      endpoint: "http://mirror:8080",
      token: "t",
      offline: true
    })
    assert.strictEqual(envFrom({ HF_HUB_OFFLINE: "0" }).offline, false)
  })

  it("declares source.json as a third output with a small estimate", () => {
    assert.deepStrictEqual(Object.keys(download.outputs), ["dataset", "model", "source"])
    assert.strictEqual(download.outputs.source.path, "source.json")
    const est = download.estimate({ params: { dataset: { source: "hf://datasets/a/b/c.csv" }, model: { source: "tiny", layers: 2, seed: 0 } }, inputSizes: {} })
    assert.isAbove(est.bytes.source, 0)
    assert.isAtMost(est.bytes.source, 1_000_000)
  })
})

describe("dataset downloads", () => {
  it("resolves hf:// with a revision, records the commit and writes source.json", async () => {
    hub.repo({ kind: "dataset", id: "acme/tickets", commit: COMMIT, revisions: ["v1.0"], files: { "data/train.csv": csv } })
    const sc = stageCtx({ source: "hf://datasets/acme/tickets/data/train.csv@v1.0" }, { source: "tiny" })
    await run(runDownload(sc, env))
    assert.deepStrictEqual(hub.hits.map((h) => [h.method, h.path]), [["GET", "/datasets/acme/tickets/resolve/v1.0/data/train.csv"]])
    assert.isTrue(fs.readFileSync(sc.outputs.dataset).equals(csv))
    const source = JSON.parse(fs.readFileSync(sc.outputs.source, "utf8")) as SourceRecord
    assert.deepStrictEqual(source.dataset, {
      source: "hf://datasets/acme/tickets/data/train.csv@v1.0",
      url: `${hub.hubUrl}/datasets/acme/tickets/resolve/v1.0/data/train.csv`,
      revision: "v1.0",
      commit: COMMIT,
      sha256: sha(csv),
      bytes: csv.length
    })
    assert.strictEqual(source.model.source, "tiny")
    assert.includeMembers(source.model.files.map((f) => f.name), ["config.json", "model.safetensors"])
    assert.deepStrictEqual(ctx.totals.at(-1), [csv.length, "bytes"])
    assert.strictEqual(ctx.updates.at(-1), csv.length)
    assert.isTrue(ctx.logs.some((l) => l.startsWith("dataset: downloading")))
    // the part and its records are gone from scratch; only the completed download's record is left
    assert.deepStrictEqual(tree(ctx.scratchDir).filter((f) => f.endsWith(".part") || f.endsWith(".part.json")), [])
  })

  it("a run that fails on the model keeps the downloaded dataset for the next attempt", async () => {
    hub.repo({ kind: "dataset", id: "acme/tickets", commit: COMMIT, files: { "train.csv": csv } })
    const sc = stageCtx({ source: "hf://datasets/acme/tickets/train.csv", sha256: sha(csv) }, { source: "hf://acme/late" })
    const msg = await failure(runDownload(sc, env))
    assert.include(msg, `model config.json: not found: ${hub.hubUrl}/acme/late/resolve/main/config.json`)
    // the executor hands the next attempt a fresh staging directory and the same scratch
    fs.rmSync(ctx.out, { recursive: true })
    fs.mkdirSync(sc.outputs.model, { recursive: true })
    hub.repo({ kind: "model", id: "acme/late", commit: COMMIT2, files: microModel() })
    await run(runDownload(sc, env))
    assert.strictEqual(hub.hitsFor("train.csv").length, 1, "the dataset was not downloaded again")
    assert.isTrue(fs.readFileSync(sc.outputs.dataset).equals(csv))
    const source = JSON.parse(fs.readFileSync(sc.outputs.source, "utf8")) as SourceRecord
    assert.deepStrictEqual([source.dataset.commit, source.dataset.sha256, source.model.commit], [COMMIT, sha(csv), COMMIT2])
    assert.deepStrictEqual(tree(sc.outputs.model), ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
  })

  it("defaults to main and fails on an unknown revision with not found", async () => {
    hub.repo({ kind: "dataset", id: "acme/tickets", commit: COMMIT, files: { "train.csv": csv } })
    const rec = await run(downloadDataset({ source: "hf://datasets/acme/tickets/train.csv" }, path.join(ctx.out, "d.csv"), ctx, env))
    assert.strictEqual(hub.hits[0]!.path, "/datasets/acme/tickets/resolve/main/train.csv")
    assert.strictEqual(rec.revision, "main")
    assert.strictEqual(rec.commit, COMMIT)
    const msg = await failure(downloadDataset({ source: "hf://datasets/acme/tickets/train.csv@nope" }, path.join(ctx.out, "e.csv"), ctx, env))
    assert.include(msg, `not found: ${hub.hubUrl}/datasets/acme/tickets/resolve/nope/train.csv`)
  })

  it("downloads a plain http(s) URL, with no revision or commit", async () => {
    const url = hub.file("bitext.csv", csv)
    const rec = await run(downloadDataset({ source: url, sha256: sha(csv) }, path.join(ctx.out, "d.csv"), ctx, env))
    assert.deepStrictEqual(rec, { source: url, url, revision: null, commit: null, sha256: sha(csv), bytes: csv.length })
    assert.isTrue(fs.readFileSync(path.join(ctx.out, "d.csv")).equals(csv))
  })

  it("refuses a URL with credentials in it", async () => {
    const url = hub.file("bitext.csv", csv).replace("http://", "http://user:pw@")
    const msg = await failure(downloadDataset({ source: url }, path.join(ctx.out, "d.csv"), ctx, env))
    assert.include(msg, "credentials in URLs are not supported")
    assert.notInclude(msg, "pw")
    assert.strictEqual(hub.hits.length, 0)
  })

  it("resumes after a dropped connection with Range, byte-identical", async () => {
    const url = hub.file("big.bin", big)
    hub.fault("drop", "big.bin")
    const dest = path.join(ctx.out, "big.bin")
    const rec = await run(downloadDataset({ source: url, sha256: sha(big) }, dest, ctx, env))
    assert.isTrue(fs.readFileSync(dest).equals(big))
    assert.strictEqual(rec.sha256, sha(big))
    const hits = hub.hitsFor("big.bin")
    assert.strictEqual(hits.length, 2)
    assert.strictEqual(hits[0]!.range, undefined)
    assert.match(hits[1]!.range ?? "", /^bytes=\d+-$/)
    // resumed from what reached the disk: more than nothing, at most what the server sent before it dropped
    const resumedAt = Number(/\d+/.exec(hits[1]!.range!)![0])
    assert.isAbove(resumedAt, 0)
    assert.isAtMost(resumedAt, hits[0]!.bodyBytes)
    assert.strictEqual(hits[1]!.status, 206)
    assert.isBelow(hub.bytesSentFor("big.bin"), 2 * big.length)
    assert.isTrue(ctx.logs.some((l) => /retrying in .* \(attempt 2\/5\)/.test(l)))
    assert.isTrue(ctx.logs.some((l) => /resuming at/.test(l)))
  })

  it("a failed run leaves the part in scratch and the next run resumes it", async () => {
    const url = hub.file("big.bin", big)
    hub.fault("drop", "big.bin")
    const dest = path.join(ctx.out, "big.bin")
    const msg = await failure(downloadDataset({ source: url }, dest, ctx, { ...env, tries: 1 }))
    assert.include(msg, "gave up after 1 tries")
    assert.isFalse(fs.existsSync(dest))
    const part = tree(ctx.scratchDir).find((f) => f.endsWith(".part"))
    assert.isDefined(part)
    const have = fs.statSync(path.join(ctx.scratchDir, part!)).size
    assert.isAbove(have, 0)
    assert.isBelow(have, big.length)
    await run(downloadDataset({ source: url }, dest, ctx, env))
    assert.isTrue(fs.readFileSync(dest).equals(big))
    assert.strictEqual(hub.hitsFor("big.bin")[1]!.range, `bytes=${have}-`)
    assert.isBelow(hub.bytesSentFor("big.bin"), 2 * big.length)
  })

  it("restarts from zero when the server answers a Range request with 200 (the file changed)", async () => {
    const url = hub.file("big.bin", big)
    hub.fault("drop", "big.bin")
    const dest = path.join(ctx.out, "big.bin")
    await failure(downloadDataset({ source: url }, dest, ctx, { ...env, tries: 1 }))
    const changed = randomBytes(big.length)
    hub.file("big.bin", changed) // new ETag: If-Range fails, the server sends the whole file
    const rec = await run(downloadDataset({ source: url }, dest, ctx, env))
    const second = hub.hitsFor("big.bin")[1]!
    assert.isDefined(second.range)
    assert.strictEqual(second.status, 200)
    assert.isTrue(fs.readFileSync(dest).equals(changed))
    assert.strictEqual(rec.sha256, sha(changed))
    assert.isTrue(ctx.logs.some((l) => l.includes("sent the whole file")))
  })

  it("retries a 503 once and then succeeds", async () => {
    const url = hub.file("bitext.csv", csv)
    hub.fault("503", "bitext.csv")
    await run(downloadDataset({ source: url }, path.join(ctx.out, "d.csv"), ctx, env))
    assert.deepStrictEqual(hub.hitsFor("bitext.csv").map((h) => h.status), [503, 200])
    assert.isTrue(fs.readFileSync(path.join(ctx.out, "d.csv")).equals(csv))
    assert.isTrue(ctx.logs.some((l) => l.includes("503 Service Unavailable; retrying") && l.includes("(attempt 2/5)")))
  })

  it("gives up after the configured tries with exponential backoff", async () => {
    const url = hub.file("bitext.csv", csv)
    hub.fault("503", "bitext.csv", 10)
    const started = Date.now()
    const msg = await failure(downloadDataset({ source: url }, path.join(ctx.out, "d.csv"), ctx, { ...env, tries: 4, baseDelayMs: 40 }))
    assert.strictEqual(hub.hitsFor("bitext.csv").length, 4)
    assert.include(msg, "gave up after 4 tries")
    assert.isAtLeast(Date.now() - started, 40 + 80 + 160 - 5)
    assert.deepStrictEqual(
      ctx.logs.filter((l) => l.includes("retrying")).map((l) => /retrying in (\S+) /.exec(l)![1]),
      ["40ms", "80ms", "160ms"]
    )
  })

  it("fails on 404 at once with not found: <url>", async () => {
    const url = `${hub.hubUrl}/files/missing.csv`
    const msg = await failure(downloadDataset({ source: url }, path.join(ctx.out, "d.csv"), ctx, env))
    assert.include(msg, `not found: ${url}`)
    assert.strictEqual(hub.hits.length, 1, "a 404 is not retried")
  })

  it("refuses a sha256 mismatch, names both digests and leaves nothing behind", async () => {
    hub.repo({ kind: "dataset", id: "acme/tickets", commit: COMMIT, files: { "train.csv": csv } })
    const wrong = "0".repeat(64)
    const sc = stageCtx({ source: "hf://datasets/acme/tickets/train.csv", sha256: wrong }, { source: "tiny" })
    const msg = await failure(runDownload(sc, env))
    assert.include(msg, "dataset")
    assert.include(msg, sha(csv))
    assert.include(msg, wrong)
    assert.isFalse(fs.existsSync(sc.outputs.dataset))
    assert.isFalse(fs.existsSync(sc.outputs.source))
    assert.deepStrictEqual(tree(ctx.scratchDir), [])
  })

  it("checks dataset.sha256 of a local file too", async () => {
    fs.writeFileSync(path.join(ctx.workspace, "local.csv"), csv)
    const dest = path.join(ctx.out, "d.csv")
    const msg = await failure(downloadDataset({ source: "local.csv", sha256: "1".repeat(64) }, dest, ctx, env))
    assert.include(msg, sha(csv))
    assert.isFalse(fs.existsSync(dest))
    const rec = await run(downloadDataset({ source: "local.csv", sha256: sha(csv) }, dest, ctx, env))
    assert.deepStrictEqual(rec, { source: "local.csv", url: null, revision: null, commit: null, sha256: sha(csv), bytes: csv.length })
    assert.isTrue(fs.readFileSync(dest).equals(csv))
    assert.strictEqual(hub.hits.length, 0)
  })
})

describe("tokens", () => {
  const privateModel = microModel()
  const privateRepos = () => {
    hub.repo({ kind: "dataset", id: "acme/secret", commit: COMMIT, files: { "train.csv": csv }, private: true })
    hub.repo({
      kind: "model",
      id: "acme/secret-model",
      commit: COMMIT2,
      private: true,
      files: privateModel
    })
  }

  it("a private repo without HF_TOKEN fails with a message that asks for it", async () => {
    privateRepos()
    const msg = await failure(downloadDataset({ source: "hf://datasets/acme/secret/train.csv" }, path.join(ctx.out, "d.csv"), ctx, env))
    assert.include(msg, "HF_TOKEN")
    assert.include(msg, "401")
    assert.strictEqual(hub.hits.length, 1, "a 401 is not retried")
    const wrong = await failure(downloadDataset({ source: "hf://datasets/acme/secret/train.csv" }, path.join(ctx.out, "d.csv"), ctx, { ...env, token: "hf_wrong" }))
    assert.include(wrong, "HF_TOKEN was refused")
    assert.notInclude(wrong, "hf_wrong")
  })

  it("with HF_TOKEN it works; the token goes to the Hub only and never into logs or source.json", async () => {
    privateRepos()
    const sc = stageCtx({ source: "hf://datasets/acme/secret/train.csv" }, { source: "hf://acme/secret-model" })
    await run(runDownload(sc, { ...env, token: hub.token }))
    assert.isTrue(fs.readFileSync(sc.outputs.dataset).equals(csv))
    assert.isTrue(fs.readFileSync(path.join(sc.outputs.model, "model.safetensors")).equals(privateModel["model.safetensors"]!))
    for (const h of hub.hits) assert.strictEqual(h.authorization, h.server === "hub" ? `Bearer ${hub.token}` : undefined, `${h.server} ${h.path}`)
    assert.isTrue(hub.hits.some((h) => h.server === "cdn"), "the weights came through the cdn redirect")
    const everything = [ctx.logs.join("\n"), fs.readFileSync(sc.outputs.source, "utf8"), ...tree(ctx.workspace).filter((f) => f.endsWith(".json")).map((f) => fs.readFileSync(path.join(ctx.workspace, f), "utf8"))]
    for (const text of everything) assert.notInclude(text, hub.token)
    const source = JSON.parse(fs.readFileSync(sc.outputs.source, "utf8")) as SourceRecord
    assert.strictEqual(source.dataset.commit, COMMIT)
    assert.strictEqual(source.model.commit, COMMIT2)
  })

  it("HF_TOKEN is not sent to other origins (a plain URL elsewhere)", async () => {
    const url = hub.file("bitext.csv", csv)
    await run(downloadDataset({ source: url }, path.join(ctx.out, "d.csv"), ctx, { ...env, endpoint: "http://127.0.0.1:1", token: hub.token }))
    assert.strictEqual(hub.hits[0]!.authorization, undefined)
  })
})

describe("offline", () => {
  it("HF_HUB_OFFLINE=1 fails before any request, naming the source", async () => {
    hub.repo({ kind: "dataset", id: "acme/tickets", commit: COMMIT, files: { "train.csv": csv } })
    fs.writeFileSync(path.join(ctx.workspace, "local.csv"), csv)
    const off = { ...env, offline: true }
    const a = await failure(runDownload(stageCtx({ source: "hf://datasets/acme/tickets/train.csv" }, { source: "tiny" }), off))
    assert.strictEqual(a, "HF_HUB_OFFLINE=1 and dataset hf://datasets/acme/tickets/train.csv is not available locally")
    const sc = stageCtx({ source: "local.csv" }, { source: "hf://acme/model" })
    const b = await failure(runDownload(sc, off))
    assert.strictEqual(b, "HF_HUB_OFFLINE=1 and model hf://acme/model is not available locally")
    assert.isFalse(fs.existsSync(sc.outputs.dataset), "fails before doing any work")
    const c = await failure(downloadDataset({ source: hub.file("x.csv", csv) }, path.join(ctx.out, "d.csv"), ctx, off))
    assert.include(c, "HF_HUB_OFFLINE=1")
    assert.strictEqual(hub.hits.length, 0)
    // local sources still work offline
    await run(runDownload(stageCtx({ source: "local.csv" }, { source: "tiny" }), off))
    assert.strictEqual(hub.hits.length, 0)
  })
})

describe("model downloads", () => {
  const sharded: Record<string, Buffer | string> = { ...microModel({ layers: 2, shards: 2 }), "generation_config.json": '{"do_sample":true}' }
  const shard2 = sharded["model-00002-of-00002.safetensors"]!

  it("a sharded model: every shard of index.json, all at the commit config.json resolved to", async () => {
    hub.repo({ kind: "model", id: "Qwen/Qwen3-4B", commit: COMMIT, files: sharded })
    hub.fault("drop", `/blobs/${sha(shard2)}`) // the cdn drops the second shard half-way
    const dest = path.join(ctx.out, "model")
    const rec = await run(downloadModel({ source: "hf://Qwen/Qwen3-4B", layers: 2, seed: 0 }, dest, ctx, env))
    assert.deepStrictEqual(tree(dest), Object.keys(sharded).sort())
    for (const [name, body] of Object.entries(sharded)) assert.isTrue(fs.readFileSync(path.join(dest, name)).equals(Buffer.from(body)), name)
    assert.strictEqual(rec.commit, COMMIT)
    assert.strictEqual(rec.revision, "main")
    assert.deepStrictEqual(
      rec.files,
      Object.entries(sharded)
        .map(([name, body]) => ({ name, bytes: Buffer.byteLength(body), sha256: sha(body) }))
        .sort((a, b) => (a.name < b.name ? -1 : 1))
    )
    const hubHits = hub.hits.filter((h) => h.server === "hub")
    assert.strictEqual(hubHits[0]!.path, "/Qwen/Qwen3-4B/resolve/main/config.json")
    for (const h of hubHits.slice(1)) assert.include(h.path, `/resolve/${COMMIT}/`)
    assert.isFalse(hub.hits.some((h) => h.path.endsWith("/model.safetensors")), "no single-file weights asked for")
    assert.deepStrictEqual(hub.hitsFor(`/blobs/${sha(shard2)}`).map((h) => h.status), [200, 206])
    assert.isTrue(ctx.logs.some((l) => l.startsWith("model model-00002-of-00002.safetensors:") && l.includes("resuming")))
    for (const name of Object.keys(sharded)) assert.isTrue(ctx.logs.some((l) => l.startsWith(`model ${name}: downloading`)), name)
  })

  it("a single-file model without generation_config.json; a second run reuses completed files", async () => {
    const files = microModel()
    hub.repo({ kind: "model", id: "acme/small", commit: COMMIT, revisions: ["v2"], files })
    const dest = path.join(ctx.out, "model")
    // the weights fail for good the first time: config and tokenizer files stay completed in scratch
    hub.fault("503", "/blobs/", 3)
    await failure(downloadModel({ source: "hf://acme/small@v2", layers: 2, seed: 0 }, dest, ctx, { ...env, tries: 3 }))
    assert.deepStrictEqual(tree(dest), [])
    const before = hub.hits.length
    const rec = await run(downloadModel({ source: "hf://acme/small@v2", layers: 2, seed: 0 }, dest, ctx, env))
    assert.deepStrictEqual(tree(dest), Object.keys(files).sort())
    assert.isTrue(fs.readFileSync(path.join(dest, "model.safetensors")).equals(files["model.safetensors"]!))
    assert.strictEqual(rec.revision, "v2")
    assert.strictEqual(rec.commit, COMMIT)
    const again = hub.hits.slice(before).map((h) => h.path)
    assert.isFalse(again.some((p) => p.endsWith("/config.json") || p.endsWith("/tokenizer.json")), again.join(" "))
    assert.isTrue(ctx.logs.some((l) => l === "model generation_config.json: not in the repo, skipped"))
  })

  it("a missing shard is an error naming its URL", async () => {
    const { ["model-00002-of-00002.safetensors"]: _, ...missing } = sharded
    hub.repo({ kind: "model", id: "Qwen/Broken", commit: COMMIT, files: missing })
    const msg = await failure(downloadModel({ source: "hf://Qwen/Broken", layers: 2, seed: 0 }, path.join(ctx.out, "model"), ctx, env))
    assert.include(msg, `not found: ${hub.hubUrl}/Qwen/Broken/resolve/${COMMIT}/model-00002-of-00002.safetensors`)
  })

  it("copies a local model directory and records its files", async () => {
    const src = writeFiles(path.join(ctx.workspace, "base"), { ...microModel(), "sub/x.bin": "abc" })
    const rec = await run(downloadModel({ source: "base", layers: 2, seed: 0 }, path.join(ctx.out, "model"), ctx, env))
    assert.deepStrictEqual(
      rec.files,
      fs.readdirSync(src, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => ({ name: path.relative(src, path.join(e.parentPath, e.name)), bytes: fs.statSync(path.join(e.parentPath, e.name)).size })).sort((a, b) => (a.name < b.name ? -1 : 1))
    )
    const msg = await failure(downloadModel({ source: "nope", layers: 2, seed: 0 }, path.join(ctx.out, "model2"), ctx, env))
    assert.include(msg, "model.source nope: not a directory")
  })

  it("passes the tiny model the demo writes, and the micro model the tests serve", () => {
    const dir = path.join(ctx.workspace, "tiny")
    writeTiny(dir, 2, 0)
    assert.strictEqual(modelProblem(dir), undefined)
    assert.strictEqual(modelProblem(writeFiles(path.join(ctx.workspace, "micro"), microModel({ layers: 3, shards: 3 }))), undefined)
  })

  it("checks a local model directory when it is read: config, headers, offsets, shapes, one line naming the file", async () => {
    const bad = async (name: string, edit: (files: Record<string, Buffer>) => void) => {
      const files = microModel({ layers: 2 })
      edit(files)
      writeFiles(path.join(ctx.workspace, name), files)
      return failure(downloadModel({ source: name, layers: 2, seed: 0 }, path.join(ctx.out, name), ctx, env))
    }
    // offsets that run past the end of the file (the trainer used to fail on this hours later)
    let msg = await bad("past-end", (f) => {
      const h = safetensorsHeader(f["model.safetensors"]!)
      h["model.norm.weight"]!.data_offsets = [h["model.norm.weight"]!.data_offsets[0], h["model.norm.weight"]!.data_offsets[1] + 4096]
      f["model.safetensors"] = withSafetensorsHeader(f["model.safetensors"]!, h)
    })
    assert.match(msg, /^model\.source: past-end\/model\.safetensors: model\.norm\.weight: data runs past the end of the file/)
    msg = await bad("truncated", (f) => void (f["model.safetensors"] = f["model.safetensors"]!.subarray(0, 1000)))
    assert.include(msg, "truncated/model.safetensors: ")
    msg = await bad("shape", (f) => void (f["config.json"] = Buffer.from(f["config.json"]!.toString().replace('"hidden_size": 64', '"hidden_size": 128'))))
    assert.match(msg, /^model\.source: shape\/model\.safetensors: model\.embed_tokens\.weight: shape \[8192, 64\] does not match the config's \[8192, 128\]/)
    msg = await bad("layers", (f) => void (f["config.json"] = Buffer.from(f["config.json"]!.toString().replace('"num_hidden_layers": 2', '"num_hidden_layers": 3'))))
    assert.include(msg, "layers: tensor model.layers.2.input_layernorm.weight is missing")
    msg = await bad("config", (f) => void (f["config.json"] = Buffer.from("{ not json")))
    assert.strictEqual(msg, "model.source: config/config.json: not valid JSON")
    msg = await bad("noheads", (f) => void (f["config.json"] = Buffer.from(f["config.json"]!.toString().replace('"num_key_value_heads": 2', '"num_key_value_heads": 0'))))
    assert.include(msg, "noheads/config.json: num_key_value_heads: expected a positive whole number, got 0")
    msg = await bad("template", (f) => void (f["tokenizer_config.json"] = Buffer.from("{}")))
    assert.include(msg, "template/tokenizer_config.json: no chat_template")
  })
})

describe("fetchToFile", () => {
  it("follows redirects, keeps X-Repo-Commit from the redirect and writes only the completed file", async () => {
    hub.repo({ kind: "model", id: "acme/m", commit: COMMIT, files: { "model.safetensors": big } })
    const dest = path.join(ctx.scratchDir, "w", "model.safetensors")
    const url = `${hub.hubUrl}/acme/m/resolve/main/model.safetensors`
    const rec = await run(fetchToFile({ url, dest, label: "weights", sha256: sha(big) }, { baseDelayMs: 1 }, ctx))
    assert.deepStrictEqual(rec, { url, bytes: big.length, sha256: sha(big), commit: COMMIT })
    assert.deepStrictEqual(hub.hits.map((h) => [h.server, h.status]), [["hub", 302], ["cdn", 200]])
    assert.deepStrictEqual(tree(path.dirname(dest)), ["model.safetensors", "model.safetensors.json"])
    assert.isTrue(fs.readFileSync(dest).equals(big))
  })
})
