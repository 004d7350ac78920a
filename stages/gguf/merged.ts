/**
 * The merged model's values without the merged copy on disk (`gguf.from: adapter`): each
 * adapted weight is W + s·B·A computed as merge computes it (stages/merge.ts, fp32 per
 * element) and every value rounded to `merge.dtype` as merge stores it, so the GGUF files
 * are byte for byte those made from the merged model. One adapted weight sits in memory at a
 * time (the largest projection), as in merge.
 */
import { locateTensors } from "../lib/checkpoint.ts"
import { readElements } from "../lib/safetensors.ts"
import { type MergeParams, mergedWeight, readAdapter, roundTo } from "../merge.ts"
import type { TensorReader } from "./qwen3.ts"

export const mergedReader = (baseDir: string, adapterDir: string, dtype: MergeParams["dtype"]): TensorReader => {
  const adapter = readAdapter(adapterDir)
  const used = new Set<string>()
  for (const name of locateTensors(baseDir).keys()) {
    const l = adapter.of(name)
    if (l) used.add(`${l.stem}.lora_A.weight`).add(`${l.stem}.lora_B.weight`)
  }
  const unused = [...adapter.tensors.keys()].filter((k) => !used.has(k))
  if (unused.length > 0) throw new Error(`${adapterDir}: ${unused.length} adapter tensors match no base weight (${unused.slice(0, 3).join(", ")})`)
  let last: { readonly hf: string; readonly values: Float32Array } | undefined
  return (hf, loc, start, count) => {
    const lora = adapter.of(hf)
    if (lora === undefined) return roundTo(dtype, readElements(loc, start, count))
    if (last?.hf !== hf) last = { hf, values: roundTo(dtype, mergedWeight(loc, lora, adapter)) }
    return last.values.subarray(start, start + count)
  }
}
