/**
 * Benchmark of the native Qwen3 forward + backward (qwen3ForwardBackward) on the tiny model
 * (hidden 256, intermediate 768, 4 heads x 64, 2 KV heads, 2 layers, vocab 151,936, tied head)
 * with a random rank-16 LoRA on all seven projections.
 *
 *   node bench/qwen3-step.ts [T=512] [runs=3] [threads] [isa: scalar|avx2|avx512|ref]
 *                                                   (build first: npm run build:native)
 *
 * `ref` runs the plain scalar single-threaded reference loops (qwen3ForwardBackwardRef).
 *
 * Prints tokens/s (T tokens per call, all of them counted in the loss) and GFLOP/s, where the
 * FLOP count is the model's multiply-adds x 2: the head three times (logits, then the logits
 * again and dH = dLogits E in the backward pass), every linear three times (y, dx, and the tiny
 * LoRA terms, counted apart) and the causal attention (QK^T and PV forward, four products
 * backward). The best of `runs` calls after one warm-up call.
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { addonPath, qwen3ForwardBackward } from "../native/index.ts"
import { loadQwen3 } from "../stages/lib/checkpoint.ts"
import { writeTiny } from "../stages/download/tiny.ts"
import { Rng } from "../stages/lib/rng.ts"

const T = Number(process.argv[2] ?? 512)
const runs = Number(process.argv[3] ?? 3)
const threadsArg = process.argv[4]
const isaArg = process.argv[5] ?? "best"
const raw = createRequire(import.meta.url)(addonPath) as {
  qwen3SetThreads(n: number): number
  qwen3SetIsa(isa: string): string
  qwen3ForwardBackwardRef: typeof qwen3ForwardBackward
}
if (threadsArg !== undefined) raw.qwen3SetThreads(Number(threadsArg))
const useRef = isaArg === "ref"
const isa = useRef ? "reference" : raw.qwen3SetIsa(isaArg)
const threads = useRef ? 1 : raw.qwen3SetThreads(0)
const fb = useRef ? raw.qwen3ForwardBackwardRef : qwen3ForwardBackward

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qwen3-bench-"))
writeTiny(path.join(dir, "model"), 2, 7)
const { config: c, weights } = loadQwen3(path.join(dir, "model"))
fs.rmSync(dir, { recursive: true, force: true })

const r = 16
const rng = new Rng(3)
const HD = c.heads * c.headDim
const KD = c.kvHeads * c.headDim
const io: Array<[number, number]> = [[c.hidden, HD], [c.hidden, KD], [c.hidden, KD], [HD, c.hidden], [c.hidden, c.intermediate], [c.hidden, c.intermediate], [c.intermediate, c.hidden]]
const proj = []
for (let l = 0; l < c.layers; l++)
  for (const [inF, outF] of io) {
    const A = Float32Array.from({ length: r * inF }, () => (rng.next() * 2 - 1) / Math.sqrt(inF))
    const B = Float32Array.from({ length: outF * r }, () => rng.normal() * 0.05)
    proj.push({ A, B, dA: new Float32Array(A.length), dB: new Float32Array(B.length) })
  }
const lora = { rank: r, scale: 2, proj }
const ids = Int32Array.from({ length: T }, () => Math.floor(rng.next() * 151669))
const mask = new Uint8Array(T).fill(1)

// multiply-adds of one call (forward + backward)
const counted = T - 1
const head = 3 * counted * c.vocab * c.hidden
let lin = 0
for (const [inF, outF] of io) lin += T * (3 * inF * outF + 2 * r * (inF + outF) + 2 * r * (inF + outF))
lin *= c.layers
const attn = c.layers * c.heads * c.headDim * ((T * (T + 1)) / 2) * (2 + 4)
const flops = 2 * (head + lin + attn)

const time = () => {
  const t0 = process.hrtime.bigint()
  const out = fb(c, weights, lora, ids, mask, 1, T, true)
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, loss: out.loss }
}
const first = time()
let best = first.s
for (let i = 0; i < runs; i++) best = Math.min(best, time().s)
console.log(`qwen3 tiny forward+backward, T=${T}, LoRA r=${r}, ${isa}, threads=${threads}: loss ${first.loss.toFixed(6)}`)
console.log(`  best of ${runs + 1}: ${(best * 1000).toFixed(1)} ms = ${(T / best).toFixed(1)} tokens/s, ${(flops / best / 1e9).toFixed(1)} GFLOP/s (${(flops / 1e9).toFixed(1)} GFLOP, head ${((100 * 2 * head) / flops).toFixed(1)}%)`)
