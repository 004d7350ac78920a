/**
 * upload: publish the adapter, the merged model, the GGUF files and the eval
 * metrics. Today: `dir://PATH` (a directory, relative to the workspace);
 * `hf://` and `s3://` targets are a later issue.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { Stage, StageError } from "../engine/index.ts"
import { withDefault } from "./lib/schema.ts"
import { evaluate } from "./evaluate.ts"
import { gguf } from "./gguf.ts"
import { merge } from "./merge.ts"
import { train } from "./train.ts"

export const UploadParams = Schema.Struct({
  target: withDefault(Schema.String, "dir://out/published")
})

export const upload = Stage.make({
  name: "upload",
  description: "publish the artefacts",
  module: import.meta.url,
  params: { upload: UploadParams },
  inputs: { adapter: train.out.adapter, merged: merge.out.model, gguf: gguf.out.files, metrics: evaluate.out.metrics },
  outputs: { manifest: Stage.file("manifest.json") },
  estimate: () => ({ bytes: { manifest: 10_000 }, seconds: 5 }),
  run: (ctx) =>
    Effect.gen(function* () {
      const target = ctx.params.upload.target
      if (!target.startsWith("dir://")) return yield* new StageError({ message: `upload.target ${target}: only dir:// targets for now (hf:// and s3:// are a later issue)` })
      const dest = path.resolve(ctx.workspace, target.slice("dir://".length))
      const files: Array<{ path: string; size: number }> = []
      const staged = `${dest}.tmp-${process.pid}`
      fs.rmSync(staged, { recursive: true, force: true })
      for (const [name, src] of Object.entries(ctx.inputs)) {
        const to = path.join(staged, name)
        fs.cpSync(src, fs.statSync(src).isDirectory() ? to : path.join(to, path.basename(src)), { recursive: true })
      }
      const walk = (d: string): void => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          const p = path.join(d, e.name)
          if (e.isDirectory()) walk(p)
          else files.push({ path: path.relative(staged, p), size: fs.statSync(p).size })
        }
      }
      walk(staged)
      fs.rmSync(dest, { recursive: true, force: true })
      fs.renameSync(staged, dest)
      fs.writeFileSync(ctx.outputs.manifest, JSON.stringify({ target, files }, null, 2) + "\n")
      yield* ctx.log(`published ${files.length} files to ${target}`)
    })
})
