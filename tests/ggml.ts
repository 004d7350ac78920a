/**
 * llama.cpp's own quantizer and model quantizer, reached through node-llama-cpp's prebuilt CPU
 * libraries (libggml-base, libllama of llama.cpp as node-llama-cpp 3.21.1 ships it) with koffi:
 * the peer our GGUF writer is compared with, byte for byte. Test- and bench-only.
 */
import koffi from "koffi"
import { createRequire } from "node:module"
import * as fs from "node:fs"
import * as path from "node:path"

const require = createRequire(import.meta.url)

/** the directory of the prebuilt linux-x64 CPU binaries */
export const binsDir = (): string => {
  // the package exports only its entry point (dist/index.js): its root is one level up
  const pkg = path.dirname(path.dirname(require.resolve("@node-llama-cpp/linux-x64")))
  const dir = path.join(pkg, "bins", "linux-x64")
  if (!fs.existsSync(path.join(dir, "libggml-base.so"))) throw new Error(`${dir}: libggml-base.so not found`)
  return dir
}

let ggml: {
  quantizeChunk: (type: number, src: Float32Array, dst: Uint8Array, start: number, rows: number, perRow: number, imatrix: null) => number
  dequantize: Record<number, (src: Uint8Array, dst: Float32Array, k: number) => void>
} | undefined

const loadGgml = () => {
  if (ggml) return ggml
  const lib = koffi.load(path.join(binsDir(), "libggml-base.so"))
  const dq = (name: string) => lib.func(`void ${name}(const void *x, float *y, int64_t k)`)
  ggml = {
    quantizeChunk: lib.func("size_t ggml_quantize_chunk(int type, const float *src, void *dst, int64_t start, int64_t nrows, int64_t n_per_row, const float *imatrix)"),
    dequantize: { 8: dq("dequantize_row_q8_0"), 12: dq("dequantize_row_q4_K"), 13: dq("dequantize_row_q5_K"), 14: dq("dequantize_row_q6_K"), 1: dq("ggml_fp16_to_fp32_row") }
  }
  return ggml
}

/** ggml's bytes for `rows` rows of `perRow` values of type `type` (no importance matrix). */
export const ggmlQuantize = (type: number, src: Float32Array, perRow: number, bytes: number): Uint8Array => {
  const out = new Uint8Array(bytes)
  const n = loadGgml().quantizeChunk(type, src, out, 0, src.length / perRow, perRow, null)
  if (n !== bytes) throw new Error(`ggml_quantize_chunk wrote ${n} bytes, expected ${bytes}`)
  return out
}

export const ggmlDequantize = (type: number, q: Uint8Array, n: number): Float32Array => {
  const out = new Float32Array(n)
  const f = loadGgml().dequantize[type]
  if (!f) throw new Error(`no dequantizer for ggml type ${type}`)
  f(q, out, n)
  return out
}

// llama.h of llama.cpp as shipped with node-llama-cpp 3.21.1 (its tag v0.4.0): registered with
// koffi by name, which the function signatures below refer to
koffi.struct("llama_model_quantize_params", {
  nthread: "int32_t",
  ftype: "int",
  output_tensor_type: "int",
  token_embedding_type: "int",
  allow_requantize: "bool",
  quantize_output_tensor: "bool",
  only_copy: "bool",
  pure: "bool",
  keep_split: "bool",
  dry_run: "bool",
  imatrix: "void *",
  kv_overrides: "void *",
  tt_overrides: "void *",
  prune_layers: "void *",
  max_buf_size: "size_t"
})

let llama: { defaults: () => Record<string, unknown>; quantize: (inp: string, out: string, params: Record<string, unknown>) => number } | undefined

/** llama.cpp's `llama_model_quantize` (what `llama-quantize IN OUT TYPE` runs); returns 0 on success. */
export const llamaQuantize = (input: string, output: string, ftype: number, nthread = 1): number => {
  if (!llama) {
    const dir = binsDir()
    // libllama finds its ggml libraries by name: load them first, from the same directory
    koffi.load(path.join(dir, "libggml-base.so"))
    koffi.load(path.join(dir, "libggml.v0.4.0.so"))
    const lib = koffi.load(path.join(dir, "libllama.v0.4.0.so"))
    llama = {
      defaults: lib.func("llama_model_quantize_params llama_model_quantize_default_params(void)"),
      quantize: lib.func("uint32_t llama_model_quantize(const char *fname_inp, const char *fname_out, const llama_model_quantize_params *params)")
    }
  }
  const params = { ...llama.defaults(), ftype, nthread }
  return llama.quantize(input, output, params)
}
