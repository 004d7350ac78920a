/**
 * Quantizing to GGUF block types: our native quantizers against ggml's own
 * (`ggml_quantize_chunk` from node-llama-cpp's prebuilt libggml-base, through koffi), on the
 * same tensor of Qwen3-4B's largest projection shape (ffn_down: 2560 rows of 9728 values, fp16
 * values as the merged checkpoint holds them), one thread each: ggml's call is single-threaded.
 * The last column is ours on every thread of the pool (the gguf stage's setting).
 * Throughput is MB/s of F16 input (2 bytes a value). Best of 3 after a warm-up; the bytes are compared too.
 */
import { addon, ggufQuantize, threads } from "../native/index.ts"
import { fromF16, toF16 } from "../stages/lib/safetensors.ts"
import { Rng } from "../stages/lib/rng.ts"
import { ggmlQuantize } from "../tests/ggml.ts"
import { best } from "./kernels.ts"

const ROWS = 2560
const COLS = 9728
const TYPES: ReadonlyArray<readonly [string, number, number]> = [["Q8_0", 8, (COLS / 32) * 34], ["Q4_K", 12, (COLS / 256) * 144], ["Q5_K", 13, (COLS / 256) * 176], ["Q6_K", 14, (COLS / 256) * 210]]


export const ggufTable = (): string => {
  const rng = new Rng(1)
  const x = fromF16(toF16(Float32Array.from({ length: ROWS * COLS }, () => rng.normal() * 0.02)))
  const mb = (x.length * 2) / 1e6
  const rows: Array<string> = []
  const pool = threads()
  for (const [name, type, rowBytes] of TYPES) {
    let ours: Uint8Array = new Uint8Array(0)
    let theirs: Uint8Array = new Uint8Array(0)
    addon().qwen3SetThreads(1)
    const a = best(3, () => void (ours = ggufQuantize(type, x)))
    addon().qwen3SetThreads(pool)
    const all = best(3, () => void ggufQuantize(type, x))
    const b = best(3, () => void (theirs = ggmlQuantize(type, x, COLS, rowBytes * ROWS)))
    const same = Buffer.compare(Buffer.from(ours), Buffer.from(theirs)) === 0
    rows.push(`| ${name} | ${(mb / (a / 1000)).toFixed(0)} | ${(mb / (b / 1000)).toFixed(0)} | ${(b / a).toFixed(2)} | ${same ? "yes" : "**no**"} | ${(mb / (all / 1000)).toFixed(0)} |`)
  }
  return [
    `## Quantizing a ${ROWS} × ${COLS} tensor (Qwen3-4B's ffn_down, ${mb.toFixed(1)} MB of F16), one thread`,
    "",
    `| type | ours MB/s | ggml_quantize_chunk MB/s | ratio | same bytes | ours, ${threads()} threads MB/s |`,
    "|---|---:|---:|---:|---|---:|",
    ...rows,
    "",
    "Goal: ours ≥ 1× ggml's."
  ].join("\n")
}
