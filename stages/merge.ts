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
import { LoraParams, train } from "./train.ts"

export const MergeParams = Schema.Struct({
  dtype: withDefault(Schema.Literals(["fp16", "bf16"]), "fp16")
})

const readTensor = (fd: number, dataStart: number, info: Safetensors.TensorInfo): Float32Array => {
  const [a, b] = info.data_offsets
  const buf = Buffer.allocUnsafe(b - a)
  fs.readSync(fd, buf, 0, b - a, dataStart + a)
  const n = info.shape.reduce((x, y) => x * y, 1)
  if (info.dtype === "F32") return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + n * 4))
  if (info.dtype === "BF16") return Safetensors.fromBf16(new Uint16Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + n * 2)))
  throw new Error(`tensor dtype ${info.dtype} is not supported by merge yet`)
}

export const merge = Stage.make({
  name: "merge",
  description: "fold the adapter into 16-bit weights",
  module: import.meta.url,
  params: { merge: MergeParams, lora: LoraParams },
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
      const ad = Safetensors.readHeader(adapterFile)
      const adFd = fs.openSync(adapterFile, "r")
      const base = Safetensors.readHeader(weights)
      const fd = fs.openSync(weights, "r")
      const out: Array<Safetensors.Tensor> = []
      let merged = 0
      try {
        const names = Object.keys(base.header)
        yield* ctx.progress.total(names.length, "tensors")
        for (const [i, name] of names.entries()) {
          const info = base.header[name]!
          const w = readTensor(fd, base.dataStart, info)
          const stem = `base_model.model.${name.replace(/\.weight$/, "")}`
          const aInfo = ad.header[`${stem}.lora_A.weight`]
          const bInfo = ad.header[`${stem}.lora_B.weight`]
          if (aInfo && bInfo) {
            const A = readTensor(adFd, ad.dataStart, aInfo)
            const B = readTensor(adFd, ad.dataStart, bInfo)
            const [outF, r] = bInfo.shape as [number, number]
            const inF = aInfo.shape[1]!
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
          out.push({ name, dtype: ctx.params.merge.dtype === "fp16" ? "F16" : "BF16", shape: info.shape, data: new Uint8Array(bits.buffer) })
          yield* ctx.progress.update(i + 1)
        }
      } finally {
        fs.closeSync(fd)
        fs.closeSync(adFd)
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
