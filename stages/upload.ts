/**
 * upload: publish the adapter, the merged model, the GGUF files and the eval
 * metrics. Today: `dir://PATH` (a directory, relative to the workspace or
 * absolute); `hf://` and `s3://` targets are a later issue.
 *
 * Publishing never deletes what it did not write (stages/lib/publish.ts): the
 * target must be new, empty, or hold exactly what an earlier publish recorded
 * in its manifest, and it may not be the workspace, hold it, or hold any of
 * its own files (the engine's `owns`); both are checked when the plan is made,
 * so a bad target fails in the first second, not after training.
 *
 * The published copy lives outside the store, so restoring this stage from
 * the cache would not republish it: the stage declares an external check, and
 * the engine reruns it whenever the target does not hold what this key
 * published, byte for byte.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { Digest, Stage, StageError } from "../engine/index.ts"
import { publish, publishedProblem, targetProblem } from "./lib/publish.ts"
import { withDefault } from "./lib/schema.ts"
import { evaluate } from "./evaluate.ts"
import { gguf } from "./gguf.ts"
import { merge } from "./merge.ts"
import { train } from "./train.ts"

export const UploadParams = Schema.Struct({
  target: withDefault(Schema.String, "dir://out/published")
})

/** The directory a `dir://` target names, or why the target cannot be used. */
const directoryOf = (target: string, workspace: string): string | { problem: string } => {
  if (!target.startsWith("dir://")) return { problem: `upload.target ${target}: only dir:// targets for now (hf:// and s3:// are a later issue)` }
  const p = target.slice("dir://".length)
  if (p === "" || p.includes("\0")) return { problem: `upload.target ${target}: expected dir://<directory>` }
  return path.resolve(workspace, p)
}

const problemOf = (target: string, workspace: string, owns: (abs: string) => string | undefined): string | undefined => {
  const dest = directoryOf(target, workspace)
  if (typeof dest !== "string") return dest.problem
  const owned = owns(dest)
  if (owned !== undefined) return `upload.target ${target} would overwrite ${owned}; publish into a directory of its own, such as dir://out/published`
  const bad = targetProblem(dest, target)
  return bad === undefined ? undefined : `upload.target: ${bad}`
}

export const upload = Stage.make({
  name: "upload",
  description: "publish the artefacts",
  module: import.meta.url,
  params: { upload: UploadParams },
  inputs: { adapter: train.out.adapter, merged: merge.out.model, gguf: gguf.out.files, metrics: evaluate.out.metrics },
  outputs: { manifest: Stage.file("manifest.json") },
  estimate: () => ({ bytes: { manifest: 10_000 }, seconds: 5 }),
  preflight: ({ params, workspace, owns }) => problemOf(params.upload.target, workspace, owns),
  external: {
    check: ({ params, workspace, key, digestFile }) => {
      const dest = directoryOf(params.upload.target, workspace)
      return typeof dest === "string" ? publishedProblem(dest, params.upload.target, key, digestFile) : dest.problem
    }
  },
  run: (ctx) =>
    Effect.gen(function* () {
      const target = ctx.params.upload.target
      const problem = problemOf(target, ctx.workspace, ctx.owns)
      if (problem !== undefined) return yield* new StageError({ message: problem })
      const dest = directoryOf(target, ctx.workspace) as string
      const manifest = yield* Effect.try({
        try: () => publish(ctx.inputs, dest, target, ctx.key, (abs) => Digest.ofFile(abs).digest),
        catch: (e) => new StageError({ message: (e as Error).message })
      })
      fs.writeFileSync(ctx.outputs.manifest, JSON.stringify({ target, ...manifest }, null, 2) + "\n")
      yield* ctx.log(`published ${manifest.files.length} files to ${target}`)
    })
})
