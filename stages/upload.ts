/**
 * upload: publish the adapter, the merged model, the GGUF files, the eval
 * metrics and report, and a model card (stages/upload/layout.ts has the
 * layout; stages/upload/card.ts the card) to `upload.target`:
 *
 * - `dir://PATH`: a directory (relative to the workspace or absolute). It is
 *   swapped in whole (stages/lib/publish.ts): it must be new, empty, or hold
 *   exactly what an earlier publish recorded, and may not be or hold the
 *   workspace's own files (both checked when the plan is made).
 * - `s3://BUCKET/PREFIX`: an S3 bucket or any S3-compatible store
 *   (`upload.s3.endpoint`), multipart above `upload.s3.partSizeMB`, resumable
 *   (stages/upload/s3.ts).
 * - `hf://OWNER/NAME`: a Hub model repo, created if missing, one commit per
 *   publish (stages/upload/hub.ts); `HF_ENDPOINT`, `HF_TOKEN`.
 *
 * The published copy lives outside the store, so restoring this stage from
 * the cache would not republish it: the stage declares an external check,
 * and the engine reruns it whenever the target does not hold what this key
 * published, byte for byte. A remote target is asked what it holds before
 * anything is sent: what is there is not sent again. `--dry-run` lists what
 * a publish would send, with sizes.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { Digest, S3, Stage, StageError } from "../engine/index.ts"
import { DatasetParams, envFrom, ModelParams } from "./download.ts"
import { evaluate } from "./evaluate.ts"
import { gguf } from "./gguf.ts"
import { publish, publishedProblem, targetProblem } from "./lib/publish.ts"
import { withDefault } from "./lib/schema.ts"
import { merge } from "./merge.ts"
import { LoraParams, TrainParams, train } from "./train.ts"
import { modelCard } from "./upload/card.ts"
import { localFiles, placements } from "./upload/layout.ts"
import { hubTarget } from "./upload/hub.ts"
import { checkPublished, describePreview, previewPublish, publishTo, type RemoteTarget } from "./upload/remote.ts"
import { s3Target } from "./upload/s3.ts"

const PARTS = ["adapter", "merged", "gguf", "eval"] as const

export const UploadParams = Schema.Struct({
  target: withDefault(Schema.String, "dir://out/published"),
  /** what to publish; without `merged`, the merged model is not made unless gguf reads it */
  include: withDefault(Schema.Array(Schema.Literals(PARTS)).check(Schema.isMinLength(1)), [...PARTS]),
  /** hf://: create the repo private (a publish is never public by accident) */
  private: withDefault(Schema.Boolean, true),
  /** hf://: the branch to commit to */
  revision: withDefault(Schema.String.check(Schema.isPattern(/^[A-Za-z0-9._/-]+$/)), "main"),
  /** s3://: an S3-compatible store and how to talk to it */
  s3: withDefault(
    Schema.Struct({
      endpoint: Schema.optionalKey(Schema.String),
      region: Schema.optionalKey(Schema.String),
      pathStyle: Schema.optionalKey(Schema.Boolean),
      partSizeMB: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 5, maximum: 2047 })), 64)
    }),
    {}
  )
})

type Params = {
  readonly upload: typeof UploadParams.Type
  readonly dataset: typeof DatasetParams.Type
  readonly model: typeof ModelParams.Type
  readonly lora: typeof LoraParams.Type
  readonly train: typeof TrainParams.Type
}

type Target =
  | { readonly kind: "dir"; readonly dir: string }
  | { readonly kind: "s3"; readonly loc: S3.S3Location }
  | { readonly kind: "hf"; readonly repo: string }

const HUB_REPO = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/

/** What `upload.target` names, or why it names nothing usable. */
export const parseTarget = (target: string, workspace: string): Target | { readonly problem: string } => {
  if (target.startsWith("dir://")) {
    const p = target.slice("dir://".length)
    if (p === "" || p.includes("\0")) return { problem: `upload.target ${target}: expected dir://<directory>` }
    return { kind: "dir", dir: path.resolve(workspace, p) }
  }
  if (target.startsWith("s3://")) {
    const loc = S3.parseUrl(target)
    return "problem" in loc ? { problem: `upload.target ${loc.problem}` } : { kind: "s3", loc }
  }
  if (target.startsWith("hf://")) {
    const repo = target.slice("hf://".length).replace(/\/+$/, "")
    if (repo.startsWith("datasets/") || repo.startsWith("spaces/")) return { problem: `upload.target ${target}: publish to a model repo, hf://<owner>/<name>` }
    if (!HUB_REPO.test(repo)) return { problem: `upload.target ${target}: expected hf://<owner>/<name>` }
    return { kind: "hf", repo }
  }
  return { problem: `upload.target ${target}: expected dir://<directory>, s3://<bucket>/<prefix> or hf://<owner>/<name>` }
}

/** HF_ENDPOINT and HF_TOKEN, read as download reads them */
const hubEnv = () => {
  const { endpoint, token } = envFrom()
  return { endpoint, token }
}

const s3Config = (p: typeof UploadParams.Type["s3"], timeoutMs?: number): S3.S3Config => ({
  endpoint: p.endpoint,
  region: p.region,
  pathStyle: p.pathStyle,
  timeoutMs
})

/** The remote target for params, with its client's lifetime in the scope. */
const remoteTarget = (params: Params, t: Exclude<Target, { kind: "dir" }>, stateDir: string, timeoutMs?: number) =>
  t.kind === "hf"
    ? Effect.succeed<RemoteTarget>(hubTarget({ repo: t.repo, revision: params.upload.revision, private: params.upload.private, ...hubEnv(), ...(timeoutMs ? { timeoutMs } : {}) }))
    : Effect.map(
        Effect.acquireRelease(
          Effect.sync(() => S3.make(s3Config(params.upload.s3, timeoutMs))),
          (c) => Effect.sync(() => c.destroy())
        ),
        (client) => s3Target(client, t.loc, { partSize: params.upload.s3.partSizeMB * 1024 * 1024, stateDir })
      )

const problemOf = (params: Params, workspace: string, owns: (abs: string) => string | undefined): string | undefined => {
  const target = params.upload.target
  const t = parseTarget(target, workspace)
  if ("problem" in t) return t.problem
  if (t.kind === "hf") return hubEnv().token === undefined ? `upload.target ${target}: publishing to the Hub needs HF_TOKEN (a token with write access)` : undefined
  if (t.kind === "s3") return undefined
  const owned = owns(t.dir)
  if (owned !== undefined) return `upload.target ${target} would overwrite ${owned}; publish into a directory of its own, such as dir://out/published`
  const bad = targetProblem(t.dir, target)
  return bad === undefined ? undefined : `upload.target: ${bad}`
}

/** The card for these params and inputs. */
type Inputs = Partial<Record<"adapter" | "merged" | "gguf" | "metrics" | "report", string>>

/** The files to publish other than the card. */
const inputFiles = (inputs: Inputs, digestFile: (abs: string) => string) => localFiles(placements(inputs, ""), digestFile).filter((f) => f.path !== "README.md")

const cardFor = (params: Params, inputs: Inputs, digestFile: (abs: string) => string, repo: string | undefined) => {
  const metrics = inputs.metrics === undefined ? {} : (JSON.parse(fs.readFileSync(inputs.metrics, "utf8")) as Record<string, number>)
  const files = inputFiles(inputs, digestFile)
  return modelCard({
    title: repo ?? "Customer-support tool-calling model",
    repo,
    dataset: params.dataset,
    model: params.model,
    lora: params.lora,
    train: params.train,
    metrics,
    files: [{ path: "README.md", size: 0 }, ...files]
  })
}

const CHECK_TIMEOUT_MS = 15_000

export const upload = Stage.make({
  name: "upload",
  description: "publish the artefacts",
  module: import.meta.url,
  params: { upload: UploadParams, dataset: DatasetParams, model: ModelParams, lora: LoraParams, train: TrainParams },
  inputs: { adapter: train.out.adapter, merged: merge.out.model, gguf: gguf.out.files, metrics: evaluate.out.metrics, report: evaluate.out.report },
  inputsFor: (p) => p.upload.include.flatMap((part) => (part === "eval" ? (["metrics", "report"] as const) : ([part] as const))),
  outputs: { manifest: Stage.file("manifest.json"), card: Stage.file("README.md") },
  estimate: () => ({ bytes: { manifest: 10_000, card: 10_000 }, seconds: 5 }),
  preflight: ({ params, workspace, owns }) => problemOf(params, workspace, owns),
  external: {
    check: ({ params, workspace, key, digestFile }) => {
      const t = parseTarget(params.upload.target, workspace)
      if ("problem" in t) return t.problem
      if (t.kind === "dir") return publishedProblem(t.dir, params.upload.target, key, digestFile)
      return Effect.scoped(Effect.flatMap(remoteTarget(params, t, workspace, CHECK_TIMEOUT_MS), (r) => checkPublished(r, key)))
    },
    preview: ({ params, workspace, inputs, digestFile }) => {
      const t = parseTarget(params.upload.target, workspace)
      if ("problem" in t || t.kind === "dir") return Effect.succeed([])
      const files = inputFiles(inputs, digestFile)
      return Effect.scoped(Effect.flatMap(remoteTarget(params, t, workspace, CHECK_TIMEOUT_MS), (r) => previewPublish(r, files))).pipe(
        Effect.map((p) => [...describePreview(params.upload.target, p), "  + README.md (the model card) and the manifest"]),
        Effect.catch((e) => Effect.succeed([`cannot ask ${params.upload.target} what it holds: ${e.message}`]))
      )
    }
  },
  run: (ctx) =>
    Effect.gen(function* () {
      const target = ctx.params.upload.target
      const problem = problemOf(ctx.params, ctx.workspace, ctx.owns)
      if (problem !== undefined) return yield* new StageError({ message: problem })
      const t = parseTarget(target, ctx.workspace) as Target
      const digestFile = (abs: string) => Digest.ofFile(abs).digest
      const card = yield* Effect.try({
        try: () => cardFor(ctx.params, ctx.inputs, digestFile, t.kind === "hf" ? t.repo : undefined),
        catch: (e) => new StageError({ message: `writing the model card: ${(e as Error).message}` })
      })
      fs.writeFileSync(ctx.outputs.card, card)
      const placed = placements(ctx.inputs, ctx.outputs.card)
      const manifest =
        t.kind === "dir"
          ? yield* Effect.try({
              try: () => publish(placed, t.dir, target, ctx.key, digestFile),
              catch: (e) => new StageError({ message: (e as Error).message })
            })
          : yield* Effect.scoped(
              Effect.flatMap(remoteTarget(ctx.params, t, ctx.scratchDir), (r) => publishTo(r, localFiles(placed, digestFile), ctx.key, { progress: ctx.progress, log: ctx.log }))
            )
      fs.writeFileSync(ctx.outputs.manifest, JSON.stringify({ target, ...manifest }, null, 2) + "\n")
      yield* ctx.log(`published ${manifest.files.length} files to ${target}`)
    })
})

