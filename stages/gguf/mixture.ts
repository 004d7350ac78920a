/**
 * Which ggml type each tensor gets in a file of a given llama.cpp file type. The `_M` mixtures
 * give some tensors more bits: the rules are llama.cpp's (`llama_tensor_get_type` in
 * src/llama-quant.cpp, llama.cpp as shipped with node-llama-cpp 3.21.1), restricted to the file
 * types we write and to dense models; tests/gguf.test.ts checks our choices against
 * `llama_model_quantize` itself on our F16 file.
 *
 * - 1-D tensors (norms) stay F32; only 2-D `.weight` tensors are quantized.
 * - The output matrix, or the token embedding when it is tied to the output (Qwen3-4B), gets
 *   Q6_K, except in a Q8_0 file (Q8_0) or when its rows are not whole 256-blocks (Q8_0).
 * - Q4_K_M and Q5_K_M: attn_v and ffn_down get Q6_K in the layers `useMoreBits` picks (the first
 *   and last eighth, and every third in between).
 * - A row length that is not a whole number of the type's blocks falls back (Q6_K → Q8_0);
 *   llama.cpp's fallbacks for Q4_K and Q5_K (Q5_0, Q5_1) are types we do not write, so such a
 *   model is refused with the tensor's name rather than written differently from llama.cpp.
 */
import { GgmlType } from "./format.ts"

export const FILE_TYPES = ["F16", "Q8_0", "Q4_K_M", "Q5_K_M"] as const
export type FileType = (typeof FILE_TYPES)[number]

/** `general.file_type` (llama.h's enum llama_ftype) */
export const LLAMA_FTYPE: Record<FileType, number> = { F16: 1, Q8_0: 7, Q4_K_M: 15, Q5_K_M: 17 }

const BASE: Record<FileType, GgmlType> = { F16: GgmlType.F16, Q8_0: GgmlType.Q8_0, Q4_K_M: GgmlType.Q4_K, Q5_K_M: GgmlType.Q5_K }

export const useMoreBits = (layer: number, layers: number): boolean =>
  layer < Math.trunc(layers / 8) || layer >= Math.trunc((7 * layers) / 8) || (layer - Math.trunc(layers / 8)) % 3 === 2

const blockOf = (t: GgmlType): number => (t === GgmlType.Q4_K || t === GgmlType.Q5_K || t === GgmlType.Q6_K ? 256 : t === GgmlType.Q8_0 ? 32 : 1)

export interface TensorForMixture {
  readonly name: string
  readonly dims: ReadonlyArray<number>
}

/**
 * The type of every tensor, in file order. `layers` is the block count; `tiedOutput` is true
 * when there is no output.weight (the token embedding serves as the output).
 */
export const chooseTypes = (fileType: FileType, tensors: ReadonlyArray<TensorForMixture>, layers: number): Array<GgmlType> => {
  const tied = !tensors.some((t) => t.name === "output.weight")
  const base = BASE[fileType]
  const mixture = fileType === "Q4_K_M" || fileType === "Q5_K_M"
  let attnV = 0
  let ffnDown = 0
  const nAttnV = tensors.filter((t) => t.name.endsWith("attn_v.weight")).length
  return tensors.map((t) => {
    if (t.dims.length < 2 || !t.name.endsWith(".weight") || t.name.includes("_norm.weight")) return GgmlType.F32
    let type: GgmlType = base
    if (base === GgmlType.F16) return type
    const isOutput = t.name === "output.weight" || (tied && t.name === "token_embd.weight")
    if (isOutput) {
      if (t.dims[0]! % blockOf(base) !== 0) type = GgmlType.Q8_0
      else if (type !== GgmlType.Q8_0) type = GgmlType.Q6_K
    } else if (t.name.endsWith("attn_v.weight")) {
      if (mixture && useMoreBits(attnV, nAttnV)) type = GgmlType.Q6_K
      attnV++
    } else if (t.name.includes("ffn_down")) {
      if (mixture && useMoreBits(ffnDown, layers)) type = GgmlType.Q6_K
      ffnDown++
    }
    if (t.dims[0]! % blockOf(type) !== 0) {
      if (type === GgmlType.Q6_K) type = GgmlType.Q8_0
      else
        throw new Error(
          `${t.name}: rows of ${t.dims[0]} values are not whole ${type === GgmlType.Q8_0 ? 32 : 256}-value blocks; llama.cpp would fall back to a type this writer does not produce`
        )
      if (t.dims[0]! % 32 !== 0) throw new Error(`${t.name}: rows of ${t.dims[0]} values are not whole 32-value blocks`)
    }
    return type
  })
}
