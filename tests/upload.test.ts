/**
 * The upload stage's remote targets through the real CLI, after a quick demo run:
 *
 * - S3 against `s3rver` (npm) on loopback: an independent S3 implementation,
 *   through `@aws-sdk/client-s3` (multipart for the merged weights);
 * - the Hub against tests/httpServer.ts, a loopback server speaking the few
 *   endpoints `@huggingface/hub` calls to create a repo and commit (it stands
 *   in for the real Hub, which cannot be reached here).
 *
 * Each: what lands is byte for byte the outputs plus a model card; a second
 * run sends nothing; a deleted remote file is sent again and an identical one
 * is not; `--dry-run` lists what would be sent; the secrets appear nowhere.
 * The S3 service's resumable multipart upload is tested on its own below.
 */
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import S3rver from "s3rver"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as S3 from "../cache/S3.ts"
import { cliAsync, makeDemoWorkspace, quickDemo, read } from "./helpers.ts"
import { TestHub } from "./httpServer.ts"

const SECRET = "s3cr3t-key-never-in-any-output"
const KEY_ID = "S3RVER" // the one access key id s3rver knows (it does not check signatures)

const run = async (ws: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) => (await cliAsync(ws, args, env).done)

/** Every file under the workspace's lock, out/ and .pipeline/ (no objects), as text, to look for secrets in. */
const allText = (ws: string): string => {
  const out: Array<string> = [read(ws, "pipeline.lock")]
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) {
        if (e.name !== "objects") walk(p)
      } else if (fs.statSync(p).size < 1_000_000) out.push(fs.readFileSync(p, "utf8"))
    }
  }
  walk(path.join(ws, "out", "upload"))
  walk(path.join(ws, ".pipeline"))
  return out.join("\n")
}

/** What the upload publishes, from the workspace's outputs: target path → bytes. */
const expected = (ws: string): Map<string, Buffer> => {
  const m = new Map<string, Buffer>()
  const add = (rel: string, abs: string) => {
    if (fs.statSync(abs).isDirectory()) for (const n of fs.readdirSync(abs)) add(`${rel}/${n}`, path.join(abs, n))
    else m.set(rel, fs.readFileSync(abs))
  }
  add("adapter", path.join(ws, "out/train/adapter"))
  add("merged", path.join(ws, "out/merge/model"))
  add("gguf", path.join(ws, "out/gguf/files"))
  add("eval/metrics.json", path.join(ws, "out/eval/metrics.json"))
  add("eval/report.md", path.join(ws, "out/eval/report.md"))
  add("README.md", path.join(ws, "out/upload/README.md"))
  return m
}

let ws: string
beforeAll(async () => {
  ws = makeDemoWorkspace(quickDemo, "upload-")
  const r = await run(ws, ["run", "eval"])
  expect(r.code, r.stderr).toBe(0)
  // gguf and merge too (the upload's inputs), without an upload yet
  const g = await run(ws, ["run", "gguf"])
  expect(g.code, g.stderr).toBe(0)
}, 300_000)

describe("upload to S3 (s3rver on loopback)", () => {
  let server: S3rver
  let endpoint: string
  let client: S3Client
  const env = () => ({ AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: SECRET, AWS_REGION: "us-east-1" })
  const set = (prefix = "runs/demo") => ["--set", `upload.target=s3://models/${prefix}`, "--set", `upload.s3.endpoint=${endpoint}`]
  const objectBytes = async (key: string) => Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: "models", Key: key }))).Body!.transformToByteArray())

  beforeAll(async () => {
    server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: fs.mkdtempSync(path.join(os.tmpdir(), "s3rver-")) })
    const { port } = await server.run()
    endpoint = `http://127.0.0.1:${port}`
    client = new S3Client({ endpoint, forcePathStyle: true, region: "us-east-1", credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET } })
    await client.send(new CreateBucketCommand({ Bucket: "models" }))
  })
  afterAll(async () => {
    client.destroy()
    await server.close()
  })

  it("publishes the outputs and a model card byte for byte, then does nothing; a deleted object is sent again, alone", async () => {
    const dry = await run(ws, ["run", "upload", "--dry-run", ...set()], env())
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.stdout).toMatch(/sends 15 files \([\d.]+ MB\) to s3:\/\/models\/runs\/demo:/)
    expect(dry.stdout).toMatch(/gguf\/model-Q8_0\.gguf {2}[\d.]+ MB/)

    const first = await run(ws, ["run", "upload", ...set()], env())
    expect(first.code, first.stderr).toBe(0)
    const want = expected(ws)
    for (const [rel, bytes] of want) expect((await objectBytes(`runs/demo/${rel}`)).equals(bytes), rel).toBe(true)
    const manifest = JSON.parse((await objectBytes("runs/demo/.pipeline-publish.json")).toString()) as { files: Array<{ path: string }> }
    expect(manifest.files.map((f) => f.path).sort()).toEqual([...want.keys()].sort())
    const card = read(ws, "out/upload/README.md")
    expect(card).toContain("CDLA-Sharing-1.0")
    expect(card).toMatch(/\| valLoss \| [\d.]+ \|/)
    expect(card).toContain("| lora.r | 16 |")
    expect(card).toMatch(/`gguf\/model-Q4_K_M\.gguf` \| [\d.]+ MB \| GGUF, Q4_K_M/)

    const again = await run(ws, ["run", "upload", ...set()], env())
    expect(again.stdout).toContain("nothing to do")

    await client.send(new DeleteObjectCommand({ Bucket: "models", Key: "runs/demo/gguf/model-Q8_0.gguf" }))
    const status = await run(ws, ["status", "upload", ...set()], env())
    expect(status.stdout).toMatch(/upload\s+stale \(published file missing: s3:\/\/models\/runs\/demo\/gguf\/model-Q8_0\.gguf\)/)
    const dry2 = await run(ws, ["run", "upload", "--dry-run", ...set()], env())
    expect(dry2.stdout).toMatch(/sends 1 file \([\d.]+ MB\) to s3:\/\/models\/runs\/demo, 14 already there:\n\s+gguf\/model-Q8_0\.gguf/)
    const resend = await run(ws, ["run", "upload", ...set()], env())
    expect(resend.code, resend.stderr).toBe(0)
    expect(resend.stdout).toMatch(/upload: running \(published file missing: s3:\/\/models\/runs\/demo\/gguf\/model-Q8_0\.gguf\)/)
    expect(resend.stdout).toMatch(/\[upload\] sends 1 file .*15 already there/)
    expect((await objectBytes("runs/demo/gguf/model-Q8_0.gguf")).equals(want.get("gguf/model-Q8_0.gguf")!)).toBe(true)

    // an object changed behind the publish's back (same size, other bytes) is seen and replaced
    const card2 = Buffer.from(want.get("README.md")!)
    card2[0] = card2[0]! ^ 1
    await client.send(new PutObjectCommand({ Bucket: "models", Key: "runs/demo/README.md", Body: card2, Metadata: { "pipeline-digest": "blake3:forged" } }))
    const fixed = await run(ws, ["run", "upload", ...set()], env())
    expect(fixed.stdout).toMatch(/upload: running \(published file modified: s3:\/\/models\/runs\/demo\/README\.md\)/)
    expect((await objectBytes("runs/demo/README.md")).equals(want.get("README.md")!)).toBe(true)

    for (const r of [dry, first, again, status, dry2, resend, fixed]) expect(r.stdout + r.stderr).not.toContain(SECRET)
    expect(allText(ws)).not.toContain(SECRET)
    expect(allText(ws)).not.toContain(KEY_ID)
  }, 180_000)

  it("refuses to overwrite an object no publish wrote, and names it; an unreachable store is one line", async () => {
    await client.send(new PutObjectCommand({ Bucket: "models", Key: "theirs/README.md", Body: "their notes" }))
    const r = await run(ws, ["run", "upload", ...set("theirs")], env())
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain("s3://models/theirs holds 1 object that no publish wrote (README.md); publishing would overwrite them, so pick an empty prefix")
    expect((await objectBytes("theirs/README.md")).toString()).toBe("their notes")

    const closed = ["--set", "upload.target=s3://models/x", "--set", "upload.s3.endpoint=http://127.0.0.1:9"]
    const down = await run(ws, ["run", "upload", ...closed], env())
    expect(down.code).not.toBe(0)
    const errs = down.stderr.trim().split("\n")
    expect(errs.length, down.stderr).toBe(1)
    expect(down.stderr).toMatch(/s3:\/\/models\/x\/.* ECONNREFUSED|connect/i)
    expect(down.stderr).not.toMatch(/\n\s+at /)
  }, 120_000)
})

describe("upload to the Hub (a loopback stand-in for its API)", () => {
  let hub: TestHub
  const env = () => ({ HF_ENDPOINT: hub.hubUrl, HF_TOKEN: hub.token })
  const set = ["--set", "upload.target=hf://acme/support-bot"]

  beforeAll(async () => {
    hub = await TestHub.start()
  })
  afterAll(() => hub.close())

  it("creates a private repo and commits the outputs and a model card in one commit; a second run does nothing", async () => {
    const noToken = await run(ws, ["run", "upload", ...set], { HF_ENDPOINT: hub.hubUrl, HF_TOKEN: "" })
    expect(noToken.code).toBe(2)
    expect(noToken.stderr.trim()).toBe("error: stage upload: upload.target hf://acme/support-bot: publishing to the Hub needs HF_TOKEN (a token with write access)")

    const dry = await run(ws, ["run", "upload", "--dry-run", ...set], env())
    expect(dry.stdout).toMatch(/sends 15 files \([\d.]+ MB\) to hf:\/\/acme\/support-bot:/)
    const first = await run(ws, ["run", "upload", ...set], env())
    expect(first.code, first.stderr).toBe(0)
    expect(hub.commits).toBe(1)
    const files = hub.files("acme/support-bot")!
    const want = expected(ws)
    for (const [rel, bytes] of want) expect(Buffer.from(files[rel]!).equals(bytes), rel).toBe(true)
    expect(Object.keys(files).sort()).toEqual([...want.keys(), ".pipeline-publish.json"].sort())
    // weights went through LFS storage (the cdn), not inline in the commit
    expect(hub.bytesSentFor("/upload/")).toBeGreaterThan(want.get("merged/model.safetensors")!.length)
    expect(hub.received.has("merged/model.safetensors")).toBe(false)
    // private: the repo does not answer without the token
    expect((await fetch(`${hub.hubUrl}/acme/support-bot/resolve/main/README.md`)).status).toBe(401)
    expect(read(ws, "out/upload/README.md")).toContain("subfolder=\"merged\"")

    const again = await run(ws, ["run", "upload", ...set], env())
    expect(again.stdout).toContain("nothing to do")
    expect(hub.commits).toBe(1)
    for (const r of [dry, first, again]) expect(r.stdout + r.stderr).not.toContain(hub.token)
    expect(allText(ws)).not.toContain(hub.token)
    expect(hub.hits.filter((h) => h.server === "cdn" && h.authorization !== undefined)).toEqual([])
  }, 180_000)

  it("a file deleted from the repo is committed again, and no byte of an identical one is sent", async () => {
    const res = await fetch(`${hub.hubUrl}/api/models/acme/support-bot/commit/main`, {
      method: "POST",
      headers: { authorization: `Bearer ${hub.token}`, "content-type": "application/x-ndjson" },
      body: [{ key: "header", value: { summary: "oops" } }, { key: "deletedFile", value: { path: "gguf/model-Q5_K_M.gguf" } }, { key: "deletedFile", value: { path: "eval/report.md" } }]
        .map((l) => JSON.stringify(l))
        .join("\n")
    })
    expect(res.status).toBe(200)
    const sentBefore = hub.bytesSentFor("/upload/")
    const status = await run(ws, ["status", "upload", ...set], env())
    expect(status.stdout).toMatch(/upload\s+stale \(published file missing: hf:\/\/acme\/support-bot\/eval\/report\.md\)/)
    const r = await run(ws, ["run", "upload", ...set], env())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/\[upload\] sends 2 files .*14 already there/)
    const files = hub.files("acme/support-bot")!
    const want = expected(ws)
    for (const [rel, bytes] of want) expect(Buffer.from(files[rel]!).equals(bytes), rel).toBe(true)
    // the GGUF's blob was still in LFS storage: the commit points at it again, nothing is uploaded
    expect(hub.bytesSentFor("/upload/")).toBe(sentBefore)
  }, 120_000)
})

describe("the S3 service's multipart upload", () => {
  it("resumes a killed upload from the parts already sent, and the object is the file", async () => {
    const server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: fs.mkdtempSync(path.join(os.tmpdir(), "s3rver-")) })
    const { port } = await server.run()
    const prev = { id: process.env["AWS_ACCESS_KEY_ID"], secret: process.env["AWS_SECRET_ACCESS_KEY"] }
    process.env["AWS_ACCESS_KEY_ID"] = KEY_ID
    process.env["AWS_SECRET_ACCESS_KEY"] = SECRET
    const s3 = S3.make({ endpoint: `http://127.0.0.1:${port}` })
    try {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mp-"))
      const file = path.join(dir, "big.bin")
      const data = Buffer.alloc(S3.MIN_PART * 4 + 12344)
      for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i)
      fs.writeFileSync(file, data)
      const stateFile = path.join(dir, "state.json")
      await Effect.runPromise(Effect.flatMap(Effect.tryPromise(() => new S3Client({ endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, region: "us-east-1" }).send(new CreateBucketCommand({ Bucket: "parts" }))), () => Effect.void))
      // one part at a time; interrupted once two parts are done
      const fiber = Effect.runFork(s3.putFile("parts", "big.bin", file, { partSize: S3.MIN_PART, stateFile, concurrency: 1 }))
      const t0 = Date.now()
      while (Object.keys((JSON.parse(fs.existsSync(stateFile) ? fs.readFileSync(stateFile, "utf8") : '{"parts":{}}') as { parts: object }).parts).length < 2) {
        if (Date.now() - t0 > 30_000) throw new Error("no parts recorded")
        await new Promise((r) => setTimeout(r, 5))
      }
      await Effect.runPromise(Fiber.interrupt(fiber))
      const recorded = Object.keys((JSON.parse(fs.readFileSync(stateFile, "utf8")) as { parts: object }).parts).length
      expect(recorded).toBeGreaterThanOrEqual(2)
      expect(recorded).toBeLessThan(5)
      const reported: Array<number> = []
      const info = await Effect.runPromise(s3.putFile("parts", "big.bin", file, { partSize: S3.MIN_PART, stateFile, onBytes: (n) => reported.push(n) }))
      expect(reported[0]).toBe(recorded * S3.MIN_PART) // resumed: the parts already sent count at once
      expect(info.size).toBe(data.length)
      expect(fs.existsSync(stateFile)).toBe(false)
      const dest = path.join(dir, "back.bin")
      expect(await Effect.runPromise(s3.getFile("parts", "big.bin", dest))).toBe(true)
      expect(fs.readFileSync(dest).equals(data)).toBe(true)
      expect(await Effect.runPromise(s3.getFile("parts", "absent", path.join(dir, "none")))).toBe(false)
      expect(fs.readdirSync(dir).sort()).toEqual(["back.bin", "big.bin"])
    } finally {
      s3.destroy()
      await server.close()
      process.env["AWS_ACCESS_KEY_ID"] = prev.id
      process.env["AWS_SECRET_ACCESS_KEY"] = prev.secret
      if (prev.id === undefined) delete process.env["AWS_ACCESS_KEY_ID"]
      if (prev.secret === undefined) delete process.env["AWS_SECRET_ACCESS_KEY"]
    }
  }, 120_000)
})

describe("gguf.from: adapter through the CLI", () => {
  it("makes the same GGUF bytes without running merge, and a publish without the merged model", async () => {
    const before = new Map(fs.readdirSync(path.join(ws, "out/gguf/files")).map((f) => [f, fs.readFileSync(path.join(ws, "out/gguf/files", f))]))
    const sets = ["--set", "gguf.from=adapter", "--set", "upload.include=[adapter, gguf, eval]", "--set", "upload.target=dir://out/lean"]
    const dry = await run(ws, ["run", "--dry-run", ...sets])
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.stdout).not.toMatch(/^ {2}merge /m)
    const r = await run(ws, ["run", ...sets])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/gguf: running \(params changed: gguf\.from merged -> adapter/)
    expect(r.stdout).not.toContain("merge: running")
    for (const [f, bytes] of before) expect(fs.readFileSync(path.join(ws, "out/gguf/files", f)).equals(bytes), f).toBe(true)
    const published = fs.readdirSync(path.join(ws, "out/lean")).sort()
    expect(published).toEqual([".pipeline-publish.json", "README.md", "adapter", "eval", "gguf"])
    expect(read(ws, "out/lean/README.md")).not.toContain("subfolder=\"merged\"")
  }, 180_000)
})

describe("pipeline report", () => {
  it("is one HTML file that headless Chromium renders, whose plots hold the real training series", async () => {
    const r = await run(ws, ["report", "--out", "report.html"])
    expect(r.code, r.stderr).toBe(0)
    const html = read(ws, "report.html")
    expect(html).not.toMatch(/<script|<link|src="http/) // self-contained
    const dom = spawnSync("chromium", ["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", `file://${path.join(ws, "report.html")}`], { encoding: "utf8", timeout: 60_000 })
    expect(dom.status, dom.stderr).toBe(0)
    const series = (name: string) => {
      const m = new RegExp(`data-series="${name}" data-points="([^"]+)"`).exec(dom.stdout)
      return m === null ? undefined : (JSON.parse(m[1]!.replaceAll("&quot;", '"')) as Array<[number, number]>)
    }
    const records = read(ws, "out/train/metrics.jsonl").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>)
    const want = (y: string) => records.filter((x) => typeof x[y] === "number").map((x) => [x["step"], x[y]])
    for (const y of ["loss", "valLoss", "lr"]) expect(series(`train: ${y}`), y).toEqual(want(y))
    expect(dom.stdout).toMatch(/<g class="stage" data-stage="train" data-state="up to date">/)
    expect(dom.stdout).toContain("decisionAccuracy") // the eval table
  }, 120_000)
})
