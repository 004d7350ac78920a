/**
 * merge: the adapter folded into the original 16-bit base weights (not the NF4 copy the
 * trainer computed with): W' = W + s · B · A in fp32 for every adapted projection, s = alpha / r
 * (alpha / √r with PEFT's use_rslora), stored in `merge.dtype`. The output is a complete Hugging
 * Face model directory: safetensors in shards of at most `merge.maxShardBytes` (one file,
 * model.safetensors, when it fits; model-0000i-of-0000n.safetensors with
 * model.safetensors.index.json otherwise, as transformers' save_pretrained names them),
 * config.json (torch_dtype set), generation_config.json, the tokenizer files and chat template.
 *
 * Tensors stream one at a time from the base's shards to the output's: memory stays near the
 * largest tensor (for Qwen3-4B the 389M-value embedding), not the model.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { Stage, StageError } from "../engine/index.ts"
import { locateTensors } from "./lib/checkpoint.ts"
import * as Safetensors from "./lib/safetensors.ts"
import { withDefault } from "./lib/schema.ts"
import { download, ModelParams } from "./download.ts"
import { factsFromConfig, parameterCount } from "./gguf/qwen3.ts"
import { train } from "./train.ts"

export const MergeParams = Schema.Struct({
  dtype: withDefault(Schema.Literals(["fp16", "bf16"]), "fp16"),
  /** the largest shard (transformers' default max_shard_size, 5 GB) */
  maxShardBytes: withDefault(Schema.Int.check(Schema.isGreaterThan(0)), 5_000_000_000)
})
export type MergeParams = typeof MergeParams.Type

/** values per piece when a tensor the adapter does not touch is converted */
const CHUNK_VALUES = 1 << 24

export interface MergeStep {
  readonly done: number
  readonly total: number
  readonly merged: number
  readonly scale: number
}

/** A PEFT adapter, read: its scale (alpha/r, or alpha/√r with rsLoRA) and its A and B per base weight. */
export interface Adapter {
  readonly dir: string
  readonly scale: number
  readonly tensors: Map<string, Safetensors.Located>
  /** the A and B of a base weight (`model.layers.0.self_attn.q_proj.weight`), or undefined */
  readonly of: (weight: string) => { readonly a: Safetensors.Located; readonly b: Safetensors.Located; readonly stem: string } | undefined
}

export const readAdapter = (adapterDir: string): Adapter => {
  const adapterCfgFile = path.join(adapterDir, "adapter_config.json")
  const cfg = JSON.parse(fs.readFileSync(adapterCfgFile, "utf8")) as { r?: unknown; lora_alpha?: unknown; use_rslora?: unknown }
  if (typeof cfg.r !== "number" || typeof cfg.lora_alpha !== "number" || cfg.r <= 0) throw new Error(`${adapterCfgFile}: r and lora_alpha must be numbers, r > 0`)
  const scale = cfg.use_rslora === true ? cfg.lora_alpha / Math.sqrt(cfg.r) : cfg.lora_alpha / cfg.r
  const tensors = Safetensors.indexFiles([path.join(adapterDir, "adapter_model.safetensors")])
  return {
    dir: adapterDir,
    scale,
    tensors,
    of: (weight) => {
      const stem = `base_model.model.${weight.replace(/\.weight$/, "")}`
      const a = tensors.get(`${stem}.lora_A.weight`)
      const b = tensors.get(`${stem}.lora_B.weight`)
      return a && b ? { a, b, stem } : undefined
    }
  }
}

/**
 * The merged values of an adapted base weight: W + s·B·A, accumulated in fp32 per element
 * (over the whole matrix: the largest projection, not the embedding, sits in memory).
 */
export const mergedWeight = (t: Safetensors.Located, lora: { a: Safetensors.Located; b: Safetensors.Located; stem: string }, ad: Adapter): Float32Array => {
  const values = Safetensors.readTensor(t)
  const A = Safetensors.readTensor(lora.a)
  const B = Safetensors.readTensor(lora.b)
  const [outF, r] = lora.b.info.shape as [number, number]
  const inF = lora.a.info.shape[1]!
  if (t.info.shape[0] !== outF || t.info.shape[1] !== inF || lora.a.info.shape[0] !== r)
    throw new Error(`${ad.dir}: ${lora.stem}: A [${lora.a.info.shape}] and B [${lora.b.info.shape}] do not fit the base's [${t.info.shape}]`)
  const delta = new Float32Array(inF)
  for (let o = 0; o < outF; o++) {
    delta.fill(0)
    for (let k = 0; k < r; k++) {
      const s = B[o * r + k]!
      if (s === 0) continue
      const arow = k * inF
      for (let j = 0; j < inF; j++) delta[j] = delta[j]! + s * A[arow + j]!
    }
    const row = o * inF
    for (let j = 0; j < inF; j++) values[row + j] = values[row + j]! + ad.scale * delta[j]!
  }
  return values
}

/** The values as `merge.dtype` stores them (what reading the merged model gives back). */
export const roundTo = (dtype: MergeParams["dtype"], v: Float32Array): Float32Array =>
  dtype === "fp16" ? Safetensors.fromF16(Safetensors.toF16(v)) : Safetensors.fromBf16(Safetensors.toBf16(v))

/**
 * Merges `adapterDir` into `baseDir`, writing `outDir`; yields after each tensor (the stage
 * reports progress between them). Throws an Error naming the file on bad input.
 */
export function* mergeModel(baseDir: string, adapterDir: string, outDir: string, p: MergeParams): Generator<MergeStep, MergeStep> {
  const adapter = readAdapter(adapterDir)
  const { scale } = adapter
  const ad = adapter.tensors
  const base = locateTensors(baseDir)
  const dtype: Safetensors.Dtype = p.dtype === "fp16" ? "F16" : "BF16"
  const names = [...base.keys()]
  const sizeOf = (n: string) => 2 * base.get(n)!.info.shape.reduce((a, b) => a * b, 1)
  // shards in order, each at most maxShardBytes (a tensor larger than that gets a shard of its own)
  const shards: Array<Array<string>> = [[]]
  let inShard = 0
  for (const n of names) {
    if (inShard > 0 && inShard + sizeOf(n) > p.maxShardBytes) {
      shards.push([])
      inShard = 0
    }
    shards.at(-1)!.push(n)
    inShard += sizeOf(n)
  }
  const fileOf = (i: number) => (shards.length === 1 ? "model.safetensors" : `model-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`)
  let done = 0
  let merged = 0
  const used = new Set<string>()
  for (const [i, shard] of shards.entries()) {
    const w = Safetensors.openWriter(
      path.join(outDir, fileOf(i)),
      shard.map((n) => ({ name: n, dtype, shape: base.get(n)!.info.shape })),
      { format: "pt" }
    )
    try {
      for (const name of shard) {
        const t = base.get(name)!
        const lora = adapter.of(name)
        const convert = (v: Float32Array) => {
          const bits = dtype === "F16" ? Safetensors.toF16(v) : Safetensors.toBf16(v)
          return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength)
        }
        if (!lora) {
          // not adapted: converted in pieces of ~16M values, so the embedding never sits whole in memory
          const n = t.info.shape.reduce((x, y) => x * y, 1)
          for (let at = 0; at < n; at += CHUNK_VALUES) w.put(convert(Safetensors.readElements(t, at, Math.min(CHUNK_VALUES, n - at))))
          yield { done: ++done, total: names.length, merged, scale }
          continue
        }
        const values = mergedWeight(t, lora, adapter)
        const stem = lora.stem
        merged++
        used.add(`${stem}.lora_A.weight`).add(`${stem}.lora_B.weight`)
        w.put(convert(values))
        yield { done: ++done, total: names.length, merged, scale }
      }
      w.finish()
    } catch (e) {
      w.abort()
      throw e
    }
  }
  const unused = [...ad.keys()].filter((k) => !used.has(k))
  if (unused.length > 0) throw new Error(`${adapterDir}: ${unused.length} adapter tensors match no base weight (${unused.slice(0, 3).join(", ")})`)
  if (shards.length > 1) {
    const index = {
      metadata: { total_size: names.reduce((a, n) => a + sizeOf(n), 0) },
      weight_map: Object.fromEntries(shards.flatMap((s, i) => s.map((n) => [n, fileOf(i)])))
    }
    fs.writeFileSync(path.join(outDir, "model.safetensors.index.json"), JSON.stringify(index, null, 2) + "\n")
  }
  for (const f of fs.readdirSync(baseDir)) {
    if (f.endsWith(".safetensors") || f === "model.safetensors.index.json") continue
    const src = path.join(baseDir, f)
    if (!fs.statSync(src).isFile()) continue
    if (f === "config.json") {
      const c = JSON.parse(fs.readFileSync(src, "utf8")) as Record<string, unknown>
      fs.writeFileSync(path.join(outDir, f), JSON.stringify({ ...c, torch_dtype: p.dtype === "fp16" ? "float16" : "bfloat16" }, null, 2) + "\n")
    } else fs.copyFileSync(src, path.join(outDir, f))
  }
  return { done, total: names.length, merged, scale }
}

export const merge = Stage.make({
  name: "merge",
  description: "fold the adapter into 16-bit weights, a sharded Hugging Face model directory",
  module: import.meta.url,
  // the adapter's own adapter_config.json gives r and alpha: the lora section is train's business
  // model: its config facts, when the params state them, give the exact size before the download
  params: { merge: MergeParams, model: ModelParams },
  // runs when something reads the merged model (gguf from it, an upload that publishes it)
  onDemand: true,
  inputs: { adapter: train.out.adapter, model: download.out.model },
  outputs: { model: Stage.dir("model") },
  resources: { memoryMB: 3000 },
  estimate: ({ params, inputSizes }) => ({
    // 2 bytes a parameter, plus headers and the tokenizer files (~12 MB) when the facts are stated
    bytes: { model: params.model.config ? 2 * parameterCount(factsFromConfig(params.model.config)) + 12_000_000 : (inputSizes["model"] ?? 0) },
    seconds: 5 + (inputSizes["model"] ?? 0) / 200e6
  }),
  run: (ctx) =>
    Effect.gen(function* () {
      const steps = mergeModel(ctx.inputs.model, ctx.inputs.adapter, ctx.outputs.model, ctx.params.merge)
      let last: MergeStep | undefined
      let first = true
      while (true) {
        const r = yield* Effect.try({ try: () => steps.next(), catch: (e) => new StageError({ message: `merge: ${(e as Error).message}` }) })
        if (first) yield* ctx.progress.total(r.value.total, "tensors")
        first = false
        last = r.value
        if (r.done) break
        yield* ctx.progress.update(r.value.done)
      }
      const shards = fs.readdirSync(ctx.outputs.model).filter((f) => f.endsWith(".safetensors")).length
      yield* ctx.log(`merged ${last.merged} adapted projections (scale ${last.scale}) into ${ctx.params.merge.dtype}, ${shards} shard${shards === 1 ? "" : "s"}`)
    })
})
