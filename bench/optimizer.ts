/**
 * The optimizer step of the training loop on the host, for Qwen3-4B's LoRA (r = 16 on all seven
 * projections of 36 layers: 33,030,144 parameters in 504 tensors): what stages/train/trainer.ts
 * runs once per optimizer step on the CPU backend (the CUDA backend runs it on the device; the
 * GPU check, native/cuda/gpu-check.sh, times both there).
 *
 * Rows: our 8-bit AdamW (native/src/adamw8bit.cpp, blockwise 8-bit moments) on one thread and on
 * the pool (the trainer's setting; blocks of 256 are independent, so the bits are the same); the
 * loop's gradient averaging, global norm and clipping (JavaScript, one pass each); and the peer in
 * the same run: PyTorch's torch.optim.AdamW (fp32 moments, foreach) on the same shapes and the
 * same number of threads (Debian's python3-torch; "not installed" without it). Best of 3 after a
 * warm-up.
 */
import { spawnSync } from "node:child_process"
import * as Native from "../native/index.ts"
import { PROJECTIONS, projectionShape, type Qwen3Config } from "../native/qwen3.ts"
import { Rng } from "../stages/lib/rng.ts"
import { best } from "./kernels.ts"

const QWEN3_4B: Qwen3Config = { hidden: 2560, intermediate: 9728, heads: 32, kvHeads: 8, headDim: 128, layers: 36, vocab: 151936, ropeTheta: 1e6, rmsEps: 1e-6, tied: true }
const RANK = 16

/** The LoRA tensors' sizes, A [r, in] and B [out, r] per projection, in the trainer's order. */
const shapes = (): Array<number> => {
  const sizes: Array<number> = []
  for (let l = 0; l < QWEN3_4B.layers; l++)
    for (const j of PROJECTIONS) {
      const s = projectionShape(QWEN3_4B, j)
      sizes.push(RANK * s.in, s.out * RANK)
    }
  return sizes
}

const PEER = `
import sys, time, torch
threads = int(sys.argv[1]); sizes = [int(x) for x in sys.argv[2].split(",")]
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(1)
ps = [torch.nn.Parameter(torch.randn(n, generator=g) * 0.02) for n in sizes]
for p in ps: p.grad = torch.randn(p.shape, generator=g) * 1e-3
opt = torch.optim.AdamW(ps, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, foreach=True)
opt.step()
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter(); opt.step(); best = min(best, time.perf_counter() - t0)
print(best * 1000, torch.__version__)
`

export const optimizerTable = (): string => {
  const sizes = shapes()
  const total = sizes.reduce((a, b) => a + b, 0)
  const rng = new Rng(3)
  const ps = sizes.map((n) => Float32Array.from({ length: n }, () => rng.normal() * 0.02))
  const gs = sizes.map((n) => Float32Array.from({ length: n }, () => rng.normal() * 1e-3))
  const opt = ps.map((p) => Native.adamw8bitInit(p.length))
  let step = 0
  const hyper = { lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }
  const adam = () => {
    step++
    ps.forEach((p, i) => Native.adamw8bitStep(p, gs[i]!, opt[i]!, { ...hyper, step }))
  }
  const pool = Native.threads()
  Native.addon().qwen3SetThreads(1)
  const one = best(3, adam)
  Native.addon().qwen3SetThreads(pool)
  const all = best(3, adam)
  // the loop's own pass over the gradients (trainer.ts): mean over gradAccum, the norm, clipping
  const normClip = best(3, () => {
    let sq = 0
    for (const g of gs)
      for (let i = 0; i < g.length; i++) {
        g[i] = g[i]! / 4
        sq += g[i]! * g[i]!
      }
    const c = 1 / (Math.sqrt(sq) + 1e-6)
    for (const g of gs) for (let i = 0; i < g.length; i++) g[i] = g[i]! * c * 4
  })
  const rate = (ms: number) => `${(total / (ms / 1000) / 1e6).toFixed(0)} M/s`
  const rows = [
    `| ours: 8-bit AdamW, 1 thread | ${one.toFixed(0)} | ${rate(one)} | 2.03 |`,
    `| ours: 8-bit AdamW, ${pool} threads | ${all.toFixed(0)} | ${rate(all)} | 2.03 |`,
    `| ours: mean, global norm and clipping of the gradients (JS, 1 thread) | ${normClip.toFixed(0)} | ${rate(normClip)} | |`
  ]
  const hasTorch = spawnSync("/usr/bin/python3", ["-c", "import torch"]).status === 0
  if (hasTorch) {
    const r = spawnSync("/usr/bin/python3", ["-c", PEER, String(pool), sizes.join(",")], {
      encoding: "utf8",
      env: { ...process.env, OMP_NUM_THREADS: String(pool) }
    })
    const [ms, version] = r.stdout.trim().split(" ")
    if (r.status === 0 && ms !== undefined) rows.push(`| PyTorch ${version} torch.optim.AdamW (fp32 moments, foreach), ${pool} threads | ${Number(ms).toFixed(0)} | ${rate(Number(ms))} | 8 |`)
    else rows.push(`| PyTorch torch.optim.AdamW | failed: ${(r.stderr || r.stdout).trim().split("\n").at(-1)} | | |`)
  } else rows.push("| PyTorch torch.optim.AdamW | not installed | | |")
  return [
    `## The optimizer step on the host: Qwen3-4B's LoRA, r = ${RANK} on all projections (${total.toLocaleString("en-US")} parameters, ${sizes.length} tensors), best of 3`,
    "",
    "| what | ms | parameters/s | state bytes/param |",
    "|---|---:|---:|---:|",
    ...rows
  ].join("\n")
}
