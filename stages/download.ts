/**
 * download: the dataset file and the base model directory, and `source.json`,
 * the provenance of both (the commit the Hub resolved, sha256 and size of
 * every downloaded file), so the lock pins what was fetched.
 *
 * Dataset sources:
 *   hf://datasets/<owner>/<repo>/<path/in/repo>[@revision]   (or <repo>@<revision>/<path>, where
 *                                    a revision with a slash can only be refs/convert/… or refs/pr/N)
 *   https://… or http://…
 *   a local file (relative to the workspace)
 * Model sources:
 *   hf://<owner>/<repo>[@revision]   config, tokenizer, generation config and the
 *                                    safetensors weights (every shard of an index)
 *   a local directory (copied), or `tiny`: a deterministic Qwen3-architecture
 *   checkpoint written here.
 *
 * Hub URLs resolve against HF_ENDPOINT (default https://huggingface.co);
 * HF_TOKEN goes to that origin only, as a bearer token, and nowhere else.
 * HF_HUB_OFFLINE=1 makes remote sources fail before any request. Downloads
 * resume, retry and verify (stages/lib/http.ts); `dataset.sha256` is checked
 * for every kind of source.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { Stage, StageError, Units } from "../engine/index.ts"
import { type Fetched, fetchIfExists, fetchToFile, type HttpOptions, type Io, sha256File } from "./lib/http.ts"
import { tinyBytes, writeTiny } from "./download/tiny.ts"
import { modelProblem } from "./lib/modelcheck.ts"
import { ByteSize, withDefault } from "./lib/schema.ts"

export const DatasetParams = Schema.Struct({
  source: Schema.String,
  sha256: Schema.optionalKey(Schema.String.check(Schema.isPattern(/^[0-9a-f]{64}$/)))
})

/**
 * A model's config.json facts (the fields of the same names), stated in the params so the
 * planner knows exact sizes before the model is downloaded (merge, GGUF); the download checks
 * them against the config.json it fetches.
 */
export const ModelConfigFacts = Schema.Struct({
  hidden_size: Schema.Int,
  intermediate_size: Schema.Int,
  num_attention_heads: Schema.Int,
  num_key_value_heads: Schema.Int,
  head_dim: Schema.optionalKey(Schema.Int),
  num_hidden_layers: Schema.Int,
  vocab_size: Schema.Int,
  tie_word_embeddings: Schema.Boolean,
  max_position_embeddings: Schema.Int,
  rope_theta: Schema.Finite,
  rms_norm_eps: Schema.Finite
})
export type ModelConfigFacts = typeof ModelConfigFacts.Type

export const ModelParams = Schema.Struct({
  source: withDefault(Schema.String, "tiny"),
  /** tiny model only: decoder layers (2–4) */
  layers: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 2, maximum: 4 })), 2),
  seed: withDefault(Schema.Int, 0),
  /** size the planner assumes before a remote model is downloaded */
  expectedSize: Schema.optionalKey(ByteSize),
  /** config.json facts of a remote model, for exact sizes in the plan */
  config: Schema.optionalKey(ModelConfigFacts)
})

const isRemote = (s: string) => /^(hf|https?):\/\//.test(s)
const isLocalModel = (s: string) => s !== "tiny" && !isRemote(s)

// ---- environment

/** What the downloads read from the environment (tests pass their own). */
export interface DownloadEnv {
  /** HF_ENDPOINT without a trailing slash */
  readonly endpoint: string
  readonly token: string | undefined
  /** HF_HUB_OFFLINE */
  readonly offline: boolean
  /** attempts per file (default 5) */
  readonly tries?: number
  /** first retry delay in ms (default 500) */
  readonly baseDelayMs?: number
}

const truthy = (v: string | undefined) => v !== undefined && /^(1|on|yes|true)$/i.test(v.trim())

export const envFrom = (env: NodeJS.ProcessEnv = process.env): DownloadEnv => ({
  endpoint: (env["HF_ENDPOINT"] || "https://huggingface.co").replace(/\/+$/, ""),
  token: env["HF_TOKEN"] || env["HUGGING_FACE_HUB_TOKEN"] || undefined,
  offline: truthy(env["HF_HUB_OFFLINE"])
})

const httpOptions = (env: DownloadEnv): Effect.Effect<HttpOptions, StageError> =>
  Effect.try({
    try: () => ({ token: env.token, authOrigin: new URL(env.endpoint).origin, tries: env.tries, baseDelayMs: env.baseDelayMs }),
    catch: () => new StageError({ message: `HF_ENDPOINT ${JSON.stringify(env.endpoint)} is not a URL` })
  })

/** What the downloads need of a stage's context. */
export interface DownloadCtx extends Io {
  readonly workspace: string
  readonly scratchDir: string
}

// ---- sources

export interface HubRef {
  /** owner/name */
  readonly repo: string
  readonly revision: string
  /** the revision was given in the source (else `main`) */
  readonly pinned: boolean
}

export type DatasetSource =
  | { readonly kind: "hub"; readonly ref: HubRef; readonly path: string; readonly url: string }
  | { readonly kind: "url"; readonly url: string }
  | { readonly kind: "local"; readonly file: string }

export type ModelSource =
  | { readonly kind: "tiny" }
  | { readonly kind: "hub"; readonly ref: HubRef }
  | { readonly kind: "local"; readonly dir: string }

const encodePath = (p: string) => p.split("/").map(encodeURIComponent).join("/")

/** `${endpoint}[/datasets]/<owner>/<repo>/resolve/<revision>/<file>` */
export const hubUrl = (endpoint: string, kind: "dataset" | "model", ref: HubRef, file: string): string =>
  `${endpoint}${kind === "dataset" ? "/datasets" : ""}/${encodePath(ref.repo)}/resolve/${encodeURIComponent(ref.revision)}/${encodePath(file)}`

const badPath = (p: string) => p === "" || p.split("/").some((s) => s === "" || s === "." || s === "..")

/** `hf://datasets/<owner>/<repo>/<path>[@revision]` or `hf://datasets/<owner>/<repo>@<revision>/<path>`. */
export const parseHubDataset = (source: string): { ref: HubRef; path: string } | string => {
  const usage = `dataset.source ${source}: expected hf://datasets/<owner>/<repo>/<path/in/repo>[@revision]`
  const m = /^hf:\/\/datasets\/([^/@]+)\/([^/@]+)(?:@(refs\/convert\/[^/]+|refs\/pr\/\d+|[^/]+))?\/(.+)$/.exec(source)
  if (!m) return usage
  const [, owner, name, repoRev, rest] = m as unknown as [string, string, string, string | undefined, string]
  const at = rest.lastIndexOf("@")
  const fileRev = at >= 0 ? rest.slice(at + 1) : undefined
  const file = at >= 0 ? rest.slice(0, at) : rest
  if (repoRev !== undefined && fileRev !== undefined) return `${usage} (the revision is given twice)`
  const revision = repoRev ?? fileRev
  if (badPath(file) || revision === "") return usage
  return { ref: { repo: `${owner}/${name}`, revision: revision ?? "main", pinned: revision !== undefined }, path: file }
}

/** `hf://<owner>/<repo>[@revision]` */
export const parseHubModel = (source: string): HubRef | string => {
  const m = /^hf:\/\/([^/@]+)\/([^/@]+)(?:@(.+))?$/.exec(source)
  if (!m || m[1] === "datasets" || m[3] === "") return `model.source ${source}: expected hf://<owner>/<repo>[@revision]`
  return { repo: `${m[1]}/${m[2]}`, revision: m[3] ?? "main", pinned: m[3] !== undefined }
}

const fail = (message: string) => Effect.fail(new StageError({ message }))

export const datasetSource = (source: string, workspace: string, endpoint: string): Effect.Effect<DatasetSource, StageError> => {
  if (source.startsWith("hf://")) {
    const p = parseHubDataset(source)
    return typeof p === "string" ? fail(p) : Effect.succeed({ kind: "hub", ...p, url: hubUrl(endpoint, "dataset", p.ref, p.path) })
  }
  if (/^https?:\/\//.test(source)) return Effect.succeed({ kind: "url", url: source })
  return Effect.succeed({ kind: "local", file: path.resolve(workspace, source) })
}

export const modelSource = (source: string, workspace: string): Effect.Effect<ModelSource, StageError> => {
  if (source === "tiny") return Effect.succeed({ kind: "tiny" })
  if (source.startsWith("hf://")) {
    const p = parseHubModel(source)
    return typeof p === "string" ? fail(p) : Effect.succeed({ kind: "hub", ref: p })
  }
  if (isRemote(source)) return fail(`model.source ${source}: models come from hf://<owner>/<repo>[@revision], a local directory or tiny`)
  return Effect.succeed({ kind: "local", dir: path.resolve(workspace, source) })
}

/** With HF_HUB_OFFLINE set, the first remote source, named in the message. */
export const offlineProblem = (params: { readonly dataset: { readonly source: string }; readonly model: { readonly source: string } }, env: DownloadEnv): string | undefined => {
  if (!env.offline) return undefined
  for (const what of ["dataset", "model"] as const)
    if (isRemote(params[what].source)) return `HF_HUB_OFFLINE=1 and ${what} ${params[what].source} is not available locally`
  return undefined
}

// ---- provenance (source.json)

export interface DatasetRecord {
  readonly source: string
  /** what was requested (never a redirect target, never a token); null for a local file */
  readonly url: string | null
  /** the revision asked for (hf:// only) */
  readonly revision: string | null
  /** the Hub's X-Repo-Commit */
  readonly commit: string | null
  readonly sha256: string
  readonly bytes: number
}

export interface ModelFile {
  readonly name: string
  readonly bytes: number
  readonly sha256?: string
}

export interface ModelRecord {
  readonly source: string
  readonly revision: string | null
  readonly commit: string | null
  readonly files: ReadonlyArray<ModelFile>
}

export interface SourceRecord {
  readonly dataset: DatasetRecord
  readonly model: ModelRecord
}

// ---- file helpers

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).replace(/\s+/g, " ").trim()

const trySync = <A>(what: string, f: () => A): Effect.Effect<A, StageError> =>
  Effect.try({ try: f, catch: (e) => (e instanceof StageError ? e : new StageError({ message: `${what}: ${message(e)}` })) })

/** rename, or copy and delete across file systems */
const moveFile = (from: string, to: string) => {
  fs.mkdirSync(path.dirname(to), { recursive: true })
  try {
    fs.renameSync(from, to)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e
    fs.copyFileSync(from, to)
    fs.rmSync(from)
  }
}

/** Every file under a directory, relative names (with `/`), sorted, with sizes. */
const listFiles = (dir: string): Array<ModelFile> => {
  const out: Array<ModelFile> = []
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`
      if (e.isDirectory()) walk(path.join(d, e.name), r)
      else out.push({ name: r, bytes: fs.statSync(path.join(d, e.name)).size })
    }
  }
  walk(dir, "")
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

// ---- dataset

const localDataset = (source: string, file: string, dest: string, sha256: string | undefined, ctx: DownloadCtx) =>
  Effect.gen(function* () {
    const st = fs.statSync(file, { throwIfNoEntry: false })
    if (!st) return yield* fail(`dataset.source ${source}: no such file (${file})`)
    if (!st.isFile()) return yield* fail(`dataset.source ${source}: ${st.isDirectory() ? "a directory" : "not a regular file"}; expected a CSV file (${file})`)
    const got = yield* Effect.tryPromise({ try: () => sha256File(file), catch: (e) => new StageError({ message: `dataset.source ${source}: ${message(e)}` }) })
    if (sha256 !== undefined && got.sha256 !== sha256) return yield* fail(`${source}: sha256 ${got.sha256} does not match dataset.sha256 ${sha256}`)
    yield* trySync(`dataset.source ${source}`, () => fs.copyFileSync(file, dest))
    yield* ctx.log(`dataset: ${source} (${got.bytes} bytes)`)
    return { source, url: null, revision: null, commit: null, ...got } satisfies DatasetRecord
  })

/** Fetches the dataset (or copies a local one) to `dest`, checked against `params.sha256`. */
export const downloadDataset = (
  params: typeof DatasetParams.Type,
  dest: string,
  ctx: DownloadCtx,
  env: DownloadEnv
): Effect.Effect<DatasetRecord, StageError> =>
  Effect.gen(function* () {
    const src = yield* datasetSource(params.source, ctx.workspace, env.endpoint)
    if (src.kind === "local") return yield* localDataset(params.source, src.file, dest, params.sha256, ctx)
    if (env.offline) return yield* fail(`HF_HUB_OFFLINE=1 and dataset ${params.source} is not available locally`)
    const part = path.join(ctx.scratchDir, "dataset", path.basename(dest))
    const got = yield* fetchToFile({ url: src.url, dest: part, label: "dataset", sha256: params.sha256 }, yield* httpOptions(env), ctx)
    // copied, not moved: if the model fails next, the next attempt still has the dataset
    yield* trySync("dataset", () => fs.copyFileSync(part, dest, fs.constants.COPYFILE_FICLONE))
    return {
      source: params.source,
      url: src.url,
      revision: src.kind === "hub" ? src.ref.revision : null,
      commit: got.commit,
      sha256: got.sha256,
      bytes: got.bytes
    } satisfies DatasetRecord
  })

// ---- model

/** The files of a Hub model besides its weights; generation_config.json may be missing. */
export const MODEL_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json"] as const
export const OPTIONAL_MODEL_FILES = ["generation_config.json"] as const
const INDEX = "model.safetensors.index.json"
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/

/** The shard files an index names, each once, sorted. */
export const shardsOf = (indexFile: string): Effect.Effect<Array<string>, StageError> =>
  trySync(`model ${INDEX}`, () => {
    const index = JSON.parse(fs.readFileSync(indexFile, "utf8")) as { weight_map?: unknown }
    const map = index.weight_map
    if (typeof map !== "object" || map === null) throw new Error("no weight_map")
    const names = [...new Set(Object.values(map as Record<string, unknown>))].sort()
    const bad = names.find((n) => typeof n !== "string" || !SAFE_NAME.test(n))
    if (bad !== undefined) throw new Error(`weight_map names an unsafe shard file ${JSON.stringify(bad)}`)
    if (names.length === 0) throw new Error("weight_map is empty")
    return names as Array<string>
  })

const hubModel = (source: string, ref: HubRef, dest: string, ctx: DownloadCtx, env: DownloadEnv) =>
  Effect.gen(function* () {
    const opts = yield* httpOptions(env)
    const dir = path.join(ctx.scratchDir, "model")
    const req = (name: string, revision: string) => ({
      url: hubUrl(env.endpoint, "model", { ...ref, revision }, name),
      dest: path.join(dir, name),
      label: `model ${name}`
    })
    const got: Array<[string, Fetched]> = []
    const config = yield* fetchToFile(req("config.json", ref.revision), opts, ctx)
    got.push(["config.json", config])
    // every other file from the commit config.json resolved to, so a moving branch cannot mix two commits
    const revision = config.commit ?? ref.revision
    for (const name of MODEL_FILES.slice(1)) got.push([name, yield* fetchToFile(req(name, revision), opts, ctx)])
    for (const name of OPTIONAL_MODEL_FILES) {
      const f = yield* fetchIfExists(req(name, revision), opts, ctx)
      if (f !== null) got.push([name, f])
      else yield* ctx.log(`model ${name}: not in the repo, skipped`)
    }
    const index = yield* fetchIfExists(req(INDEX, revision), opts, ctx)
    if (index !== null) got.push([INDEX, index])
    const weights = index === null ? ["model.safetensors"] : yield* shardsOf(path.join(dir, INDEX))
    for (const name of weights) got.push([name, yield* fetchToFile(req(name, revision), opts, ctx)])
    const problem = modelProblem(dir, source)
    if (problem !== undefined) return yield* fail(`model.source: ${problem}`)
    yield* trySync("model", () => got.forEach(([name]) => moveFile(path.join(dir, name), path.join(dest, name))))
    const files = got.map(([name, f]) => ({ name, bytes: f.bytes, sha256: f.sha256 })).sort((a, b) => (a.name < b.name ? -1 : 1))
    return { source, revision: ref.revision, commit: config.commit, files } satisfies ModelRecord
  })

const localModel = (source: string, dir: string, dest: string, ctx: DownloadCtx) =>
  Effect.gen(function* () {
    if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory())
      return yield* fail(`model.source ${source}: not a directory (expected tiny, hf://<owner>/<repo>[@revision] or a local model directory)`)
    const problem = modelProblem(dir, source)
    if (problem !== undefined) return yield* fail(`model.source: ${problem}`)
    const files = yield* trySync(`model.source ${source}`, () => {
      fs.cpSync(dir, dest, { recursive: true, dereference: true })
      return listFiles(dest)
    })
    yield* ctx.log(`model: ${source} (${files.length} files, ${files.reduce((a, f) => a + f.bytes, 0)} bytes)`)
    return { source, revision: null, commit: null, files } satisfies ModelRecord
  })

/** Fetches the model (copies a local directory, writes `tiny`) into the directory `dest`. */
export const downloadModel = (
  params: typeof ModelParams.Type,
  dest: string,
  ctx: DownloadCtx,
  env: DownloadEnv
): Effect.Effect<ModelRecord, StageError> =>
  Effect.gen(function* () {
    const src = yield* modelSource(params.source, ctx.workspace)
    if (src.kind === "local") return yield* localModel(params.source, src.dir, dest, ctx)
    if (src.kind === "hub") {
      if (env.offline) return yield* fail(`HF_HUB_OFFLINE=1 and model ${params.source} is not available locally`)
      return yield* hubModel(params.source, src.ref, dest, ctx, env)
    }
    yield* ctx.log(`model: tiny Qwen3, ${params.layers} layers, seed ${params.seed}`)
    const files = yield* trySync("model tiny", () => {
      writeTiny(dest, params.layers, params.seed)
      return listFiles(dest)
    })
    return { source: "tiny", revision: null, commit: null, files } satisfies ModelRecord
  })

/** Where the model's config.json disagrees with the facts the params state about it. */
export const factsProblem = (facts: ModelConfigFacts, file: string): string | undefined => {
  const cfg = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>
  for (const [k, v] of Object.entries(facts))
    if (cfg[k] !== v) return `model.config.${k} is ${JSON.stringify(v)} but the model's config.json says ${JSON.stringify(cfg[k] ?? null)}; the plan's sizes came from the params`
  return undefined
}

// ---- the stage

type Params = { readonly dataset: typeof DatasetParams.Type; readonly model: typeof ModelParams.Type }

/** The stage's body with its environment passed in: dataset, then model, then source.json. */
export const runDownload = (ctx: Stage.RunContext<Params, never, "dataset" | "model" | "source">, env: DownloadEnv): Effect.Effect<void, StageError> =>
  Effect.gen(function* () {
    const offline = offlineProblem(ctx.params, env)
    if (offline !== undefined) return yield* fail(offline)
    const dataset = yield* downloadDataset(ctx.params.dataset, ctx.outputs.dataset, ctx, env)
    const model = yield* downloadModel(ctx.params.model, ctx.outputs.model, ctx, env)
    const facts = ctx.params.model.config
    if (facts !== undefined) {
      const problem = factsProblem(facts, path.join(ctx.outputs.model, "config.json"))
      if (problem !== undefined) return yield* fail(problem)
    }
    const record: SourceRecord = { dataset, model }
    yield* trySync("source.json", () => fs.writeFileSync(ctx.outputs.source, JSON.stringify(record, null, 2) + "\n"))
  })

export const download = Stage.make({
  name: "download",
  description: "fetch the dataset and the base model",
  module: import.meta.url,
  params: { dataset: DatasetParams, model: ModelParams },
  outputs: { dataset: Stage.file("dataset.csv"), model: Stage.dir("model"), source: Stage.file("source.json") },
  // local sources are inputs keyed by content (a model directory by its tree digest)
  deps: (p) => [...(isRemote(p.dataset.source) ? [] : [p.dataset.source]), ...(isLocalModel(p.model.source) ? [p.model.source] : [])],
  resources: { memoryMB: 512 },
  estimate: ({ params, inputSizes }) => ({
    bytes: {
      dataset: inputSizes[params.dataset.source] ?? 20_000_000,
      model:
        params.model.source === "tiny"
          ? tinyBytes(params.model.layers)
          : isLocalModel(params.model.source)
            ? (inputSizes[params.model.source] ?? 0)
            : (Units.parseBytes(params.model.expectedSize) ?? 0),
      source: 4096
    },
    // a remote dataset stays in scratch until the stage succeeds
    scratchBytes: isRemote(params.dataset.source) ? 20_000_000 : 0,
    seconds: params.model.source === "tiny" ? 2 : 600
  }),
  run: (ctx) => runDownload(ctx, envFrom())
})
