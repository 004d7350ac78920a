/**
 * Kernel benchmark of the native core: elements per second of each C++ kernel beside its plain
 * scalar reference, on one thread.
 *
 *   node bench/kernels.ts [log2 n]        (n = 2^22 elements by default; build first:
 *                                         npm run build:native)
 *
 * Rows: NF4 quantize and dequantize, double quantization of absmax values, the 8-bit AdamW step
 * (kernel, and its unfused reference) and the float32 AdamW step it replaces. Inputs are N(0, 1)
 * (weights, gradients) with a fixed seed. Each row is the best of several runs after one warm-up
 * call, so it measures the kernel with warm caches and no allocation in the timed region.
 * Not part of `npm run bench` (bench/index.ts) yet.
 */
import { Rng } from "../stages/lib/rng.ts"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import * as Native from "../native/index.ts"
import { addonBuildId } from "../stages/lib/addon.ts"

const gaussian = (n: number, seed: number): Float32Array => {
  const r = new Rng(seed)
  return Float32Array.from({ length: n }, () => r.normal())
}

interface Row {
  readonly name: string
  readonly impl: "kernel" | "reference"
  readonly elements: number
  readonly bestMs: number
}

/** Best wall time of `runs` calls after one warm-up call. */
export const best = (runs: number, f: () => void): number => {
  f()
  let ms = Infinity
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    f()
    ms = Math.min(ms, performance.now() - t0)
  }
  return ms
}

export const kernelTable = (n = 1 << 22): string => {
  const x = gaussian(n, 1)
  const grad = gaussian(n, 2)
  const codes = new Uint8Array(Math.ceil(n / 2))
  const absmax = new Float32Array(Math.ceil(n / Native.NF4_BLOCK))
  const out = new Float32Array(n)
  const rows: Array<Row> = []
  const impls = [
    ["kernel", Native.kernels, 5],
    ["reference", Native.reference, 2]
  ] as const

  for (const [impl, k, runs] of impls) {
    rows.push({ name: "nf4 quantize", impl, elements: n, bestMs: best(runs, () => k.nf4QuantizeInto(x, codes, absmax)) })
  }
  for (const [impl, k, runs] of impls) {
    rows.push({ name: "nf4 dequantize", impl, elements: n, bestMs: best(runs, () => k.nf4DequantizeInto(codes, absmax, out)) })
  }
  // double quantization runs on the absmax of n weights (n / 64 values); reported per weight
  for (const [impl, k, runs] of impls) {
    rows.push({ name: "double quantize (per weight)", impl, elements: n, bestMs: best(runs, () => k.nf4DoubleQuantize(absmax)) })
  }
  const hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }
  for (const [impl, k, runs] of impls) {
    const param = x.slice()
    const state = Native.adamw8bitInit(n)
    let step = 0
    rows.push({ name: "adamw 8-bit step", impl, elements: n, bestMs: best(runs, () => k.adamw8bitStep(param, grad, state, { ...hyper, step: ++step })) })
  }
  {
    const param = x.slice()
    const [m, v] = [new Float32Array(n), new Float32Array(n)]
    let step = 0
    rows.push({ name: "adamw fp32 step (reference optimizer)", impl: "reference", elements: n, bestMs: best(5, () => Native.adamwStep(param, grad, m, v, { ...hyper, step: ++step })) })
  }

  const rate = (r: Row) => r.elements / (r.bestMs / 1000)
  const fmt = (perSecond: number) => `${(perSecond / 1e6).toFixed(perSecond < 1e8 ? 1 : 0)} M/s`
  const lines = [
    `## Native kernels (n = ${n.toLocaleString("en-US")}, one thread, best of 5 kernel / 2 reference runs)`,
    "",
    "| operation | implementation | ms | elements/s | kernel speed-up |",
    "|---|---|---:|---:|---:|"
  ]
  for (const r of rows) {
    const ref = rows.find((o) => o.name === r.name && o.impl === "reference")
    const speedup = r.impl === "kernel" && ref !== undefined ? `${(ref.bestMs / r.bestMs).toFixed(1)}x` : ""
    lines.push(`| ${r.name} | ${r.impl} | ${r.bestMs.toFixed(1)} | ${fmt(rate(r))} | ${speedup} |`)
  }
  const adam8 = rows.find((r) => r.name === "adamw 8-bit step" && r.impl === "kernel")
  const adam32 = rows.find((r) => r.name.startsWith("adamw fp32"))
  if (adam8 !== undefined && adam32 !== undefined) {
    lines.push("", `8-bit AdamW kernel vs float32 AdamW: ${(adam32.bestMs / adam8.bestMs).toFixed(2)}x the speed, 2.03 vs 8 bytes of state per parameter.`)
  }
  return lines.join("\n")
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const log2 = Number(process.argv[2] ?? 22)
  const cpu = os.cpus()[0]?.model ?? "unknown CPU"
  console.log(`Node ${process.version}, ${os.platform()} ${os.arch()}, ${cpu}, ${os.cpus().length} cores, ftcore ${addonBuildId().slice(0, 19)}\n`)
  console.log(kernelTable(2 ** log2))
}
