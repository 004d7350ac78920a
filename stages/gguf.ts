/**
 * gguf: llama.cpp files (Q4_K_M, Q5_K_M, Q8_0) from the merged model.
 *
 * Today this records what it would write (types and expected sizes) but does
 * not quantize: the GGUF writer and K-quants are a later issue. Its estimate
 * and per-type variants are real and drive the disk check: for Qwen3-4B the
 * expected sizes are 2.49, 2.88 and 4.27 GB (DESIGN.md §4), i.e. 4.95, 5.73
 * and 8.50 bits per weight over 4,022,468,096 parameters.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import { Stage } from "../engine/index.ts"
import { withDefault } from "./lib/schema.ts"
import { merge } from "./merge.ts"

export const GGUF_TYPES = ["Q4_K_M", "Q5_K_M", "Q8_0"] as const
export type GgufType = (typeof GGUF_TYPES)[number]

const QWEN3_4B_PARAMS = 4_022_468_096
/** bits per weight, from the reference sizes of Qwen3-4B */
export const BITS_PER_WEIGHT: Record<GgufType, number> = {
  Q4_K_M: (2.49e9 * 8) / QWEN3_4B_PARAMS,
  Q5_K_M: (2.88e9 * 8) / QWEN3_4B_PARAMS,
  Q8_0: (4.27e9 * 8) / QWEN3_4B_PARAMS
}

export const GgufParams = Schema.Struct({
  types: withDefault(Schema.Array(Schema.Literals(GGUF_TYPES)), ["Q4_K_M", "Q5_K_M", "Q8_0"]),
  from: withDefault(Schema.Literals(["merged", "adapter"]), "merged")
})

/** bytes of one GGUF file from the merged fp16 checkpoint's size (2 bytes a parameter) */
export const ggufBytes = (type: GgufType, mergedBytes: number) => Math.round(((mergedBytes / 2) * BITS_PER_WEIGHT[type]) / 8)

export const gguf = Stage.make({
  name: "gguf",
  description: "llama.cpp GGUF files (quantizers: a later issue)",
  module: import.meta.url,
  params: { gguf: GgufParams },
  inputs: { model: merge.out.model },
  outputs: { files: Stage.dir("files") },
  resources: { memoryMB: 3000 },
  estimate: ({ params, inputSizes }) => ({
    bytes: { files: params.gguf.types.reduce((a, t) => a + ggufBytes(t, inputSizes["model"] ?? 0), 0) },
    seconds: 10 + params.gguf.types.length * ((inputSizes["model"] ?? 0) / 100e6)
  }),
  variants: {
    param: "gguf.types",
    items: (p) => p.gguf.types,
    bytes: (item, { inputSizes }) => ggufBytes(item as GgufType, inputSizes["model"] ?? 0)
  },
  run: (ctx) =>
    Effect.gen(function* () {
      const sizes = fs.readdirSync(ctx.inputs.model).reduce((a, f) => a + fs.statSync(`${ctx.inputs.model}/${f}`).size, 0)
      const planned = ctx.params.gguf.types.map((t) => ({ type: t, expectedBytes: ggufBytes(t, sizes) }))
      fs.writeFileSync(`${ctx.outputs.files}/planned.json`, JSON.stringify({ quantized: false, note: "GGUF export is a later issue", planned }, null, 2) + "\n")
      yield* ctx.log(`not quantized yet; planned ${planned.map((p) => p.type).join(", ")}`)
    })
})
