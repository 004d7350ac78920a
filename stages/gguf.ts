/**
 * gguf: llama.cpp files from the merged model, one per `gguf.types` (default Q4_K_M, Q5_K_M,
 * Q8_0; F16 too), named `model-<TYPE>.gguf`, each with an Ollama `model-<TYPE>.Modelfile`.
 *
 * `gguf.from: adapter` reads the base model and the adapter instead of the merged model, and
 * merges each weight as it is written (stages/gguf/merged.ts): the same bytes, without the
 * merged 16-bit copy on disk. merge is on demand, so when nothing else reads its output (an
 * upload without `merged` in `upload.include`) it does not run, and a disk that cannot hold
 * base, merged copy and GGUF files together holds base and GGUF files.
 *
 * Written by our own GGUF writer (stages/gguf/format.ts) and quantizers (native, byte-identical
 * to ggml's), tensor by tensor: memory stays near the largest tensor. Every file's exact size is
 * computed from the tensor shapes before a byte is written, and the stage fails at once when the
 * disk cannot hold them all. The planner's estimate, made before the merged model exists, uses
 * bits per weight measured on Qwen3-4B (DESIGN.md §4): 4.95, 5.73 and 8.50 for Q4_K_M, Q5_K_M
 * and Q8_0, 16 for F16, over 2 bytes per parameter of the merged fp16 checkpoint.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { Stage, StageError } from "../engine/index.ts"
import { openGguf } from "./gguf/format.ts"
import { modelfile } from "./gguf/modelfile.ts"
import { FILE_TYPES, type FileType } from "./gguf/mixture.ts"
import { factsFromConfig, planQwen3Gguf, plannedBytes } from "./gguf/qwen3.ts"
import { download, ModelParams } from "./download.ts"
import { withDefault } from "./lib/schema.ts"
import { merge, MergeParams } from "./merge.ts"
import { mergedReader } from "./gguf/merged.ts"
import { train } from "./train.ts"

const modelBytes = (inputSizes: Readonly<Record<string, number>>) => inputSizes["model"] ?? inputSizes["base"] ?? 0

export const GGUF_TYPES = FILE_TYPES
export type GgufType = FileType

const QWEN3_4B_PARAMS = 4_022_468_096
/** bits per weight, from the reference sizes of Qwen3-4B */
export const BITS_PER_WEIGHT: Record<GgufType, number> = {
  F16: 16,
  Q4_K_M: (2.49e9 * 8) / QWEN3_4B_PARAMS,
  Q5_K_M: (2.88e9 * 8) / QWEN3_4B_PARAMS,
  Q8_0: (4.27e9 * 8) / QWEN3_4B_PARAMS
}

export const GgufParams = Schema.Struct({
  types: withDefault(Schema.Array(Schema.Literals(GGUF_TYPES)), ["Q4_K_M", "Q5_K_M", "Q8_0"]),
  /** merged: from the merged 16-bit model; adapter: from base + adapter, merged weight by weight, no merged copy on disk */
  from: withDefault(Schema.Literals(["merged", "adapter"]), "merged"),
  /** general.name in the files */
  name: withDefault(Schema.String, "finetune-pipeline")
})

/** bytes of one GGUF file from the merged fp16 checkpoint's size (2 bytes a parameter) */
export const ggufBytes = (type: GgufType, mergedBytes: number) => Math.round(((mergedBytes / 2) * BITS_PER_WEIGHT[type]) / 8)

/** A file's size for the plan: exact from the model's config facts when the params state them, else from bits per weight. */
const fileBytes = (p: { readonly gguf: typeof GgufParams.Type; readonly model: typeof ModelParams.Type }, type: GgufType, mergedBytes: number): number =>
  p.model.config ? plannedBytes(factsFromConfig(p.model.config), type, p.gguf.name) + modelfile(`model-${type}.gguf`).length : ggufBytes(type, mergedBytes)

export const gguf = Stage.make({
  name: "gguf",
  description: "llama.cpp GGUF files (Q4_K_M, Q5_K_M, Q8_0, F16) with Ollama Modelfiles",
  module: import.meta.url,
  // model: its config facts, when the params state them, give exact sizes before the download
  // merge: its dtype, for the values a GGUF from base + adapter must round through
  params: { gguf: GgufParams, model: ModelParams, merge: MergeParams },
  inputs: { model: merge.out.model, base: download.out.model, adapter: train.out.adapter },
  inputsFor: (p) => (p.gguf.from === "merged" ? ["model"] : ["base", "adapter"]),
  outputs: { files: Stage.dir("files") },
  resources: { memoryMB: 3000 },
  // the model's 16-bit size: the merged copy's, or the base's (2 bytes a parameter either way)
  estimate: ({ params, inputSizes }) => ({
    bytes: { files: params.gguf.types.reduce((a, t) => a + fileBytes(params, t, modelBytes(inputSizes)), 0) },
    seconds: 10 + params.gguf.types.length * (modelBytes(inputSizes) / 100e6)
  }),
  variants: {
    param: "gguf.types",
    items: (p) => p.gguf.types,
    bytes: (item, { params, inputSizes }) => fileBytes(params, item as GgufType, modelBytes(inputSizes))
  },
  run: (ctx) =>
    Effect.gen(function* () {
      const { types, from, name } = ctx.params.gguf
      const types_ = [...new Set(types)]
      const inputs = ctx.inputs as Partial<Record<"model" | "base" | "adapter", string>>
      const modelDir = from === "merged" ? inputs.model! : inputs.base!
      const plans = yield* Effect.try({
        try: () => {
          const read = from === "adapter" ? mergedReader(inputs.base!, inputs.adapter!, ctx.params.merge.dtype) : undefined
          return types_.map((t) => ({ type: t, file: `model-${t}.gguf`, ...planQwen3Gguf(modelDir, t, name, read) }))
        },
        catch: (e) => new StageError({ message: `gguf: ${(e as Error).message}` })
      })
      const need = plans.reduce((a, p) => a + p.bytes, 0)
      // the plan's sizes came from the stated facts: say when the model's own files differ (its chat template, say)
      const facts = ctx.params.model.config
      if (facts !== undefined)
        for (const p of plans) {
          const planned = plannedBytes(factsFromConfig(facts), p.type, name)
          if (planned !== p.bytes) yield* ctx.log(`${p.file}: ${p.bytes} bytes, ${p.bytes - planned} more than planned from model.config`)
        }
      const free = (() => {
        const s = fs.statfsSync(ctx.outputs.files)
        return s.bavail * s.bsize
      })()
      if (need > free)
        return yield* new StageError({
          message: `gguf: the files need ${(need / 1e9).toFixed(2)} GB (${plans.map((p) => `${p.type} ${(p.bytes / 1e9).toFixed(2)} GB`).join(", ")}) and ${path.dirname(ctx.outputs.files)} has ${(free / 1e9).toFixed(2)} GB free`
        })
      const tensors = plans.reduce((a, p) => a + p.tensors.length, 0)
      yield* ctx.progress.total(tensors, "tensors")
      let done = 0
      for (const p of plans) {
        const target = path.join(ctx.outputs.files, p.file)
        const w = openGguf(target, p.metadata, p.tensors)
        for (const t of p.tensors) {
          yield* Effect.try({
            try: () => {
              for (const piece of t.chunks()) w.put(piece)
            },
            catch: (e) => {
              w.abort()
              return new StageError({ message: `gguf: ${p.file}: ${t.name}: ${(e as Error).message}` })
            }
          })
          yield* ctx.progress.update(++done, p.type)
        }
        const bytes = w.finish()
        fs.writeFileSync(path.join(ctx.outputs.files, `model-${p.type}.Modelfile`), modelfile(p.file))
        yield* ctx.log(`${p.file}: ${(bytes / 1e6).toFixed(1)} MB, ${p.tensors.length} tensors`)
      }
    })
})
