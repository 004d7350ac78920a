/**
 * The fast Qwen3 forward/backward (native/src/qwen3.cpp with simd.h, threads.h, head.h) against
 * its plain scalar references, on every simd path this CPU has (scalar, AVX2+FMA, AVX-512):
 *
 * - the primitives (gemm with strided A, dot, axpy, exp) ≈ their *_ref on awkward sizes; the
 *   scalar gemm path = gemm_ref bit for bit (same chains, same roundings);
 * - qwen3ForwardBackward ≈ qwen3ForwardBackwardRef (loss and logits 1e-4, LoRA gradients 1e-3
 *   relative L2, the golden test's bounds) on a small model with awkward sizes and more rows
 *   than one head block;
 * - determinism: 1, 2 and 3 threads give bit-identical loss, logits and gradients, on the small
 *   model and on the tiny one (vocab 151,936).
 */
import { relL2 } from "./helpers.ts"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { addonPath, type Qwen3ForwardBackward } from "../native/index.ts"
import type { Qwen3Config, Qwen3Weights } from "../native/qwen3.ts"
import { loadQwen3 } from "../stages/lib/checkpoint.ts"
import { writeTiny } from "../stages/download/tiny.ts"
import { Rng } from "../stages/lib/rng.ts"

type Fb = Qwen3ForwardBackward
interface Raw {
  qwen3ForwardBackward: Fb
  qwen3ForwardBackwardRef: Fb
  qwen3SetThreads(n: number): number
  qwen3SetIsa(isa: string): string
  qwen3Simd: {
    gemm(M: number, N: number, K: number, A: Float32Array, rsA: number, csA: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number, acc: boolean): void
    gemmRef(M: number, N: number, K: number, A: Float32Array, rsA: number, csA: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number, acc: boolean): void
    dot(a: Float32Array, b: Float32Array): number
    dotRef(a: Float32Array, b: Float32Array): number
    axpy(y: Float32Array, alpha: number, x: Float32Array): void
    axpyRef(y: Float32Array, alpha: number, x: Float32Array): void
    exp(x: Float32Array): void
    expRef(x: Float32Array): void
  }
}
const raw = createRequire(import.meta.url)(addonPath) as Raw
const S = raw.qwen3Simd

// the simd paths this CPU runs (asking for more than it has gives the best it has)
const ISAS = [...new Set(["scalar", "avx2", "avx512"].map((i) => raw.qwen3SetIsa(i)))]
raw.qwen3SetIsa("best")
afterAll(() => {
  raw.qwen3SetIsa("best")
  raw.qwen3SetThreads(-1)
})

const normals = (rng: Rng, n: number, scale = 1) => Float32Array.from({ length: n }, () => rng.normal() * scale)

describe.each(ISAS)("simd primitives, %s path", (isa) => {
  it("gemm ≈ gemm_ref on awkward shapes, strided A, with and without accumulation", () => {
    raw.qwen3SetIsa(isa)
    const rng = new Rng(5)
    for (const [M, N, K] of [[1, 1, 1], [7, 5, 3], [13, 17, 9], [6, 16, 64], [12, 32, 33], [25, 47, 100], [37, 70, 5], [3, 129, 257]] as const)
      for (const transA of [false, true])
        for (const acc of [false, true]) {
          const ldb = N + 3
          const ldc = N + 1
          const A = normals(rng, M * K)
          const [rsA, csA] = transA ? [1, M] : [K, 1]
          const B = normals(rng, K * ldb)
          const C0 = normals(rng, M * ldc)
          const fast = C0.slice()
          const ref = C0.slice()
          S.gemm(M, N, K, A, rsA, csA, B, ldb, fast, ldc, acc)
          S.gemmRef(M, N, K, A, rsA, csA, B, ldb, ref, ldc, acc)
          for (let m = 0; m < M; m++)
            for (let n = N; n < ldc && m * ldc + n < fast.length; n++) expect(fast[m * ldc + n], "padding untouched").toBe(C0[m * ldc + n])
          if (isa === "scalar") expect(fast).toEqual(ref)
          else
            for (let i = 0; i < ref.length; i++) expect(Math.abs(fast[i]! - ref[i]!), `${M}x${N}x${K} [${i}]`).toBeLessThan(1e-5 * Math.sqrt(K) * 4)
        }
  })

  it("dot, axpy and exp ≈ their references on awkward lengths", () => {
    raw.qwen3SetIsa(isa)
    const rng = new Rng(6)
    for (const n of [0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 100, 255]) {
      const a = normals(rng, n)
      const b = normals(rng, n)
      expect(Math.abs(S.dot(a, b) - S.dotRef(a, b))).toBeLessThan(1e-5 * Math.sqrt(n + 1) * 4)
      const y1 = normals(rng, n)
      const y2 = y1.slice()
      S.axpy(y1, 0.37, a)
      S.axpyRef(y2, 0.37, a)
      for (let i = 0; i < n; i++) expect(Math.abs(y1[i]! - y2[i]!)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(y2[i]!)))
      const x1 = Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * 80)
      const x2 = x1.slice()
      S.exp(x1)
      S.expRef(x2)
      for (let i = 0; i < n; i++) expect(Math.abs(x1[i]! - x2[i]!) / x2[i]!).toBeLessThan(1e-6)
    }
  })
})

// a small model with awkward sizes: nothing a multiple of 8 or 16
const smallModel = () => {
  const c: Qwen3Config = { hidden: 40, intermediate: 72, heads: 3, kvHeads: 1, headDim: 10, layers: 2, vocab: 1003, ropeTheta: 10000, rmsEps: 1e-6, tied: true }
  const rng = new Rng(21)
  const HD = c.heads * c.headDim
  const KD = c.kvHeads * c.headDim
  const shapes: Array<[number, number]> = [[HD, c.hidden], [KD, c.hidden], [KD, c.hidden], [c.hidden, HD], [c.intermediate, c.hidden], [c.intermediate, c.hidden], [c.hidden, c.intermediate]]
  const norm = (n: number) => Float32Array.from({ length: n }, () => 1 + 0.1 * rng.normal())
  const weights: Qwen3Weights = {
    embed: normals(rng, c.vocab * c.hidden, 0.5),
    finalNorm: norm(c.hidden),
    layers: Array.from({ length: c.layers }, () => ({
      inputNorm: norm(c.hidden),
      postNorm: norm(c.hidden),
      qNorm: norm(c.headDim),
      kNorm: norm(c.headDim),
      w: shapes.map(([o, i]) => normals(rng, o * i, 1 / Math.sqrt(i)))
    }))
  }
  return { c, weights, lora: randomLora(c, 3, 22) }
}

const randomLora = (c: Qwen3Config, r: number, seed: number) => {
  const rng = new Rng(seed)
  const HD = c.heads * c.headDim
  const KD = c.kvHeads * c.headDim
  const io: Array<[number, number]> = [[c.hidden, HD], [c.hidden, KD], [c.hidden, KD], [HD, c.hidden], [c.hidden, c.intermediate], [c.hidden, c.intermediate], [c.intermediate, c.hidden]]
  const proj = []
  for (let l = 0; l < c.layers; l++)
    for (const [inF, outF] of io) proj.push({ A: normals(rng, r * inF, 1 / Math.sqrt(inF)), B: normals(rng, outF * r, 0.1) })
  return { rank: r, scale: 8 / r, proj }
}

const batchOf = (V: number, batch: number, T: number, seed: number) => {
  const rng = new Rng(seed)
  return {
    ids: Int32Array.from({ length: batch * T }, () => Math.floor(rng.next() * V)),
    mask: Uint8Array.from({ length: batch * T }, (_, i) => (i % 7 === 3 ? 0 : 1))
  }
}

const run = (
  fb: Fb,
  m: { c: Qwen3Config; weights: Qwen3Weights; lora: { rank: number; scale: number; proj: Array<{ A: Float32Array; B: Float32Array }> } },
  b: { ids: Int32Array; mask: Uint8Array },
  batch: number,
  T: number,
  withLogits: boolean
) => {
  const proj = m.lora.proj.map((p) => ({ ...p, dA: new Float32Array(p.A.length), dB: new Float32Array(p.B.length) }))
  const logits = withLogits ? new Float32Array(batch * T * m.c.vocab) : undefined
  const out = fb(m.c, m.weights, { rank: m.lora.rank, scale: m.lora.scale, proj }, b.ids, b.mask, batch, T, true, logits)
  return { ...out, logits, grads: proj.flatMap((p) => [p.dA, p.dB]) }
}

describe("fast forward/backward", () => {
  const small = smallModel()
  const batch = 2
  const T = 150 // 300 rows: more than one head block of 256
  const b = batchOf(small.c.vocab, batch, T, 23)
  raw.qwen3SetIsa("best")
  const ref = run(raw.qwen3ForwardBackwardRef, small, b, batch, T, true)

  it.each(ISAS)("≈ the scalar reference on a small awkward model (%s path)", (isa) => {
    raw.qwen3SetIsa(isa)
    raw.qwen3SetThreads(2)
    const fast = run(raw.qwen3ForwardBackward, small, b, batch, T, true)
    expect(fast.counted).toBe(ref.counted)
    expect(Math.abs(fast.loss - ref.loss) / ref.loss).toBeLessThan(1e-4)
    expect(relL2(fast.logits!, ref.logits!)).toBeLessThan(1e-4)
    fast.grads.forEach((g, i) => expect(relL2(g, ref.grads[i]!), `grad ${i}`).toBeLessThan(1e-3))
    // and the gradients are not trivially zero
    expect(fast.grads.every((g) => g.some((v) => v !== 0))).toBe(true)
  })

  it.each(ISAS)("gives bit-identical results on 1, 2 and 3 threads: small model (%s path)", (isa) => {
    raw.qwen3SetIsa(isa)
    const runs = [1, 2, 3].map((n) => {
      expect(raw.qwen3SetThreads(n)).toBe(n)
      return run(raw.qwen3ForwardBackward, small, b, batch, T, true)
    })
    for (const r of runs.slice(1)) {
      expect(r.loss).toBe(runs[0]!.loss)
      expect(r.logits).toEqual(runs[0]!.logits)
      r.grads.forEach((g, i) => expect(g, `grad ${i}`).toEqual(runs[0]!.grads[i]))
    }
  })

  it("gives bit-identical results on 1 and 2 threads: tiny model, vocab 151,936", () => {
    raw.qwen3SetIsa("best")
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qwen3-perf-"))
    writeTiny(dir, 2, 7)
    const { config, weights } = loadQwen3(dir)
    fs.rmSync(dir, { recursive: true, force: true })
    const m = { c: config, weights, lora: randomLora(config, 8, 31) }
    const tb = batchOf(151669, 2, 40, 32)
    const runs = [1, 2].map((n) => {
      raw.qwen3SetThreads(n)
      return run(raw.qwen3ForwardBackward, m, tb, 2, 40, false)
    })
    expect(runs[1]!.loss).toBe(runs[0]!.loss)
    expect(Number.isFinite(runs[0]!.loss)).toBe(true)
    runs[1]!.grads.forEach((g, i) => expect(g, `grad ${i}`).toEqual(runs[0]!.grads[i]))
  }, 60_000)
})
