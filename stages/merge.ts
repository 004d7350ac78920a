/**
 * merge: base weights + LoRA delta → a 16-bit checkpoint in the Hugging Face
 * layout. W' = W + (alpha / r) · B · A for every adapted projection; other
 * tensors are converted as they are. Tensors stream one at a time, so memory
 * stays at the size of the largest tensor.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { Stage, StageError } from "../engine/index.ts"
import * as Safetensors from "./lib/safetensors.ts"
import { withDefault } from "./lib/schema.ts"
import { download } from "./download.ts"
import { train } from "./train.ts"

export const MergeParams = Schema.Struct({
  dtype: withDefault(Schema.Literals(["fp16", "bf16"]), "fp16")
})

export const merge = Stage.make({
  name: "merge",
  description: "fold the adapter into 16-bit weights",
  module: import.meta.url,
  // the adapter's own adapter_config.json gives r and alpha: the lora section is train's business
  params: { merge: MergeParams },
  inputs: { adapter: train.out.adapter, model: download.out.model },
  outputs: { model: Stage.dir("model") },
  resources: { memoryMB: 3000 },
  estimate: ({ inputSizes }) => ({ bytes: { model: inputSizes["model"] ?? 0 }, seconds: 5 + (inputSizes["model"] ?? 0) / 200e6 }),
  run: (ctx) =>
    Effect.gen(function* () {
      const weights = path.join(ctx.inputs.model, "model.safetensors")
      if (!fs.existsSync(weights)) return yield* new StageError({ message: `${weights}: merge reads a single model.safetensors for now` })
      const adapterFile = path.join(ctx.inputs.adapter, "adapter_model.safetensors")
      const adapterCfg = JSON.parse(fs.readFileSync(path.join(ctx.inputs.adapter, "adapter_config.json"), "utf8")) as { r: number; lora_alpha: number }
      const scale = adapterCfg.lora_alpha / adapterCfg.r
      const ad = Safetensors.indexFiles([adapterFile])
      const base = Safetensors.indexFiles([weights])
      const out: Array<Safetensors.Tensor> = []
      let merged = 0
      const names = [...base.keys()]
      yield* ctx.progress.total(names.length, "tensors")
      for (const [i, name] of names.entries()) {
        const t = base.get(name)!
        const w = Safetensors.readTensor(t)
        const stem = `base_model.model.${name.replace(/\.weight$/, "")}`
        const a = ad.get(`${stem}.lora_A.weight`)
        const b = ad.get(`${stem}.lora_B.weight`)
        if (a && b) {
          const A = Safetensors.readTensor(a)
          const B = Safetensors.readTensor(b)
          const [outF, r] = b.info.shape as [number, number]
          const inF = a.info.shape[1]!
          for (let o = 0; o < outF; o++)
            for (let k = 0; k < r; k++) {
              const s = scale * B[o * r + k]!
              if (s === 0) continue
              const row = o * inF
              const arow = k * inF
              for (let j = 0; j < inF; j++) w[row + j] = w[row + j]! + s * A[arow + j]!
            }
          merged++
        }
        const bits = ctx.params.merge.dtype === "fp16" ? Safetensors.toF16(w) : Safetensors.toBf16(w)
        out.push({ name, dtype: ctx.params.merge.dtype === "fp16" ? "F16" : "BF16", shape: t.info.shape, data: new Uint8Array(bits.buffer) })
        yield* ctx.progress.update(i + 1)
      }
      Safetensors.write(path.join(ctx.outputs.model, "model.safetensors"), out, { format: "pt" })
      for (const f of fs.readdirSync(ctx.inputs.model)) {
        if (f.endsWith(".safetensors") || f === "model.safetensors.index.json") continue
        const src = path.join(ctx.inputs.model, f)
        if (f === "config.json") {
          const cfg = JSON.parse(fs.readFileSync(src, "utf8")) as Record<string, unknown>
          fs.writeFileSync(path.join(ctx.outputs.model, f), JSON.stringify({ ...cfg, torch_dtype: ctx.params.merge.dtype === "fp16" ? "float16" : "bfloat16" }, null, 2) + "\n")
        } else fs.copyFileSync(src, path.join(ctx.outputs.model, f))
      }
      yield* ctx.log(`merged ${merged} adapted projections (scale ${scale}) into ${ctx.params.merge.dtype}`)
    })
})
