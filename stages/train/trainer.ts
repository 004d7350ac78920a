/**
 * The QLoRA training loop, shared by every backend: the backend supplies
 * `qwen3ForwardBackward` (and kernels); this file owns everything else.
 *
 *   base      the frozen projection weights go through NF4 with double-quantized
 *             absmax (bitsandbytes layout) and back, so the model trains against
 *             exactly the 4-bit base QLoRA uses; embeddings and norms stay as loaded
 *   adapter   LoRA on `lora.targets`: A Kaiming-uniform (bound 1/sqrt(in), PEFT's
 *             init), B zero, scale alpha / r
 *   data      the tokenize stage's sequences, shuffled per epoch from (seed, epoch),
 *             batches padded to their longest sequence (padding is masked out)
 *   step      gradient accumulation over `gradAccum` micro-batches, clipping by
 *             global norm, linear warmup then cosine (or linear / constant) decay,
 *             8-bit AdamW (fp32 state under 4096 elements), decoupled weight decay
 *   scaler    dynamic loss scaling: a step with a non-finite gradient is skipped and
 *             the scale halved; after `growthInterval` good steps it doubles, up to the
 *             backend's `maxScale`. fp32 (the CPU backend) and bf16 (CUDA on sm_80+)
 *             need no scaling: scale 1, at most 1, so it only guards against inf/nan;
 *             the CUDA backend's fp16 step starts at 2^16 (backend.ts)
 *   backend   where micro-batches become a loss and gradients (backend.ts): the CPU or
 *             a GPU; everything above stays here, on the host, for both, except that a
 *             backend with a `deviceOptimizer` (CUDA) runs the gradients' norm, clipping
 *             and AdamW where the gradients are, with the state in the host's format:
 *             the host's copies are refreshed for checkpoints and the best adapter
 *   state     checkpoints every `checkpointEvery` steps (keeping the last
 *             `keepCheckpoints`) hold the adapter, the optimizer state, the scaler,
 *             the step and the best adapter so far; the data position is a function
 *             of the step. Training N steps in one go or k steps, a kill, and a
 *             resume to N give the same adapter bit for bit.
 *
 * LoRA dropout (`lora.dropout`) is applied to the adapters' inputs in training
 * steps, with a mask drawn from (seed, micro-step), never in evaluation.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Native from "../../native/index.ts"
import { loraSlots, PROJECTIONS, projectionShape, type LoraTensors, type Qwen3Config, type Qwen3Weights } from "../../native/qwen3.ts"
import { Rng } from "../lib/rng.ts"
import type * as Format from "../tokenize/format.ts"
import { cpuBackend, type Backend } from "./backend.ts"
import type { LoraConfig, TrainConfig, TrainEvent } from "./protocol.ts"

export type { LoraConfig, TrainConfig, TrainEvent } from "./protocol.ts"

// ---------------------------------------------------------------- the base

/** One projection weight through NF4 + double quantization and back: the value QLoRA computes with. */
export const quantizeProjection = (x: Float32Array): Float32Array => {
  const q = Native.nf4Quantize(x)
  const absmax = Native.nf4DoubleDequantize(Native.nf4DoubleQuantize(q.absmax))
  return Native.nf4Dequantize(q.codes, absmax, q.n)
}

/**
 * The 4-bit base: every projection weight through NF4 + double quantization and back. Workers
 * rather read with `loadQwen3With(dir, quantizeProjection)`, which never holds both copies.
 */
export const quantizeBase = (w: Qwen3Weights): Qwen3Weights => ({
  ...w,
  layers: w.layers.map((l) => ({ ...l, w: l.w.map(quantizeProjection) }))
})

/** PEFT's count: `trainable params: … || all params: … || trainable%: …`. */
export const parameterCount = (c: Qwen3Config, lora: LoraConfig) => {
  let base = c.vocab * c.hidden + c.hidden // embedding (tied head) + final norm
  let trainable = 0
  for (const j of PROJECTIONS) {
    const s = projectionShape(c, j)
    base += c.layers * s.in * s.out
    if (lora.targets.includes(j)) trainable += c.layers * lora.r * (s.in + s.out)
  }
  base += c.layers * (2 * c.hidden + 2 * c.headDim) // norms
  const all = base + trainable
  const fmt = (n: number) => n.toLocaleString("en-US")
  return { trainable, all, line: `trainable params: ${fmt(trainable)} || all params: ${fmt(all)} || trainable%: ${((100 * trainable) / all).toFixed(4)}` }
}

// ---------------------------------------------------------------- the adapter

/** LoRA as PEFT initialises it: A Kaiming-uniform (bound 1/sqrt(in)), B zero, scale alpha / r. */
export const initLora = (c: Qwen3Config, lora: LoraConfig, seed: number): LoraTensors => {
  const rng = new Rng(seed ^ 0x10a)
  const proj = loraSlots(c, lora.targets, (_l, _j, s) => {
    const bound = 1 / Math.sqrt(s.in)
    const A = new Float32Array(lora.r * s.in)
    for (let i = 0; i < A.length; i++) A[i] = (rng.next() * 2 - 1) * bound
    return { A, B: new Float32Array(s.out * lora.r), dA: new Float32Array(A.length), dB: new Float32Array(s.out * lora.r) }
  })
  return { rank: lora.r, scale: lora.alpha / lora.r, proj }
}

// ---------------------------------------------------------------- data

export interface Batch {
  readonly ids: Int32Array
  readonly mask: Uint8Array
  readonly batch: number
  readonly seqLen: number
  readonly tokens: number
}

export const PAD = 151643

/** The padding id for a model: Qwen3's <|endoftext|>, or the last id of a smaller vocabulary (padding is masked out either way). */
export const padFor = (c: Qwen3Config): number => (PAD < c.vocab ? PAD : c.vocab - 1)

export const makeBatch = (data: Format.Tokenized, seqIdx: ReadonlyArray<number>, pad: number = PAD): Batch => {
  const off = data.sequenceOffsets
  const lens = seqIdx.map((s) => off[s + 1]! - off[s]!)
  const T = Math.max(2, ...lens)
  const ids = new Int32Array(seqIdx.length * T).fill(pad)
  const mask = new Uint8Array(seqIdx.length * T)
  seqIdx.forEach((s, b) => {
    ids.set(data.ids.subarray(off[s]!, off[s + 1]!), b * T)
    mask.set(data.mask.subarray(off[s]!, off[s + 1]!), b * T)
  })
  return { ids, mask, batch: seqIdx.length, seqLen: T, tokens: lens.reduce((a, b) => a + b, 0) }
}

/** The order of sequences in an epoch: a seeded shuffle, a function of (seed, epoch) only. */
export const epochOrder = (n: number, seed: number, epoch: number): Array<number> =>
  new Rng((seed * 7919 + epoch * 104729) >>> 0).shuffle(Array.from({ length: n }, (_, i) => i))

/** The micro-batch of a global micro-step: epochs concatenated, each in its own order. */
export const microBatchIndices = (n: number, batchSize: number, seed: number, micro: number): Array<number> => {
  const perEpoch = Math.ceil(n / batchSize)
  const epoch = Math.floor(micro / perEpoch)
  const order = epochOrder(n, seed, epoch)
  const start = (micro % perEpoch) * batchSize
  return order.slice(start, start + batchSize)
}

// ---------------------------------------------------------------- schedule and scaler

export const learningRate = (t: TrainConfig, step: number, total: number): number => {
  if (t.warmupSteps > 0 && step < t.warmupSteps) return (t.lr * (step + 1)) / t.warmupSteps
  if (t.scheduler === "constant") return t.lr
  const progress = Math.min(1, (step - t.warmupSteps) / Math.max(1, total - t.warmupSteps))
  return t.scheduler === "linear" ? t.lr * (1 - progress) : t.lr * 0.5 * (1 + Math.cos(Math.PI * progress))
}

export interface ScalerState {
  scale: number
  goodSteps: number
  skipped: number
}

/** Dynamic loss scaling: skip and halve on a non-finite gradient, double after a run of good steps. */
export const scalerUpdate = (s: ScalerState, finite: boolean, growthInterval = 200, maxScale = 65536): boolean => {
  if (!finite) {
    s.scale = Math.max(s.scale / 2, 1 / 65536)
    s.goodSteps = 0
    s.skipped++
    return false
  }
  if (++s.goodSteps >= growthInterval) {
    s.scale = Math.min(s.scale * 2, maxScale)
    s.goodSteps = 0
  }
  return true
}

// ---------------------------------------------------------------- checkpoints

interface Checkpoint {
  readonly step: number
  readonly optStep: number
  readonly scaler: ScalerState
  readonly bestVal: number | null
}

const params = (t: LoraTensors): Array<Float32Array> => t.proj.flatMap((p) => (p ? [p.A, p.B] : []))
const grads = (t: LoraTensors): Array<Float32Array> => t.proj.flatMap((p) => (p ? [p.dA, p.dB] : []))

const writeArrays = (file: string, arrays: ReadonlyArray<ArrayBufferView>) =>
  fs.writeFileSync(file, Buffer.concat(arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))))

/** Reads a file of concatenated arrays, checking its size first; nothing is written into `arrays` on a mismatch. */
const readArrays = (file: string, arrays: ReadonlyArray<ArrayBufferView>): Buffer => {
  const buf = fs.readFileSync(file)
  const want = arrays.reduce((n, a) => n + a.byteLength, 0)
  if (buf.length !== want) throw new Error(`${path.basename(file)}: ${buf.length} bytes, expected ${want}`)
  return buf
}

const copyInto = (buf: Buffer, arrays: ReadonlyArray<ArrayBufferView>) => {
  let at = 0
  for (const a of arrays) {
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength).set(buf.subarray(at, at + a.byteLength))
    at += a.byteLength
  }
}

const isCheckpoint = (u: unknown): u is Checkpoint => {
  const c = u as Partial<Checkpoint> | null
  return (
    typeof c === "object" && c !== null && Number.isInteger(c.step) && Number.isInteger(c.optStep) && (c.bestVal === null || typeof c.bestVal === "number") &&
    typeof c.scaler === "object" && c.scaler !== null && typeof c.scaler.scale === "number" && Number.isInteger(c.scaler.goodSteps) && Number.isInteger(c.scaler.skipped)
  )
}

/**
 * Loads a checkpoint into the training state, all or nothing: every file is
 * read and checked before anything is copied, so a damaged checkpoint leaves
 * the state as it was. Throws a one-line reason.
 */
const loadCheckpoint = (dir: string, ps: ReadonlyArray<Float32Array>, best: ReadonlyArray<Float32Array>, opt: ReadonlyArray<ArrayBufferView>): Checkpoint => {
  let state: unknown
  try {
    state = JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8"))
  } catch (e) {
    throw new Error(`state.json: ${(e as Error).message}`)
  }
  if (!isCheckpoint(state)) throw new Error("state.json: not a checkpoint state")
  const bufs = [readArrays(path.join(dir, "lora.bin"), ps), readArrays(path.join(dir, "best.bin"), best), readArrays(path.join(dir, "optimizer.bin"), opt)] as const
  copyInto(bufs[0], ps)
  copyInto(bufs[1], best)
  copyInto(bufs[2], opt)
  return state
}

const optArrays = (states: ReadonlyArray<Native.AdamW8bitState>): Array<ArrayBufferView> =>
  states.flatMap((s) => (s.kind === "fp32" ? [s.m, s.v] : [s.mCodes, s.vCodes, s.mAbsmax, s.vAbsmax]))

const checkpointDirs = (scratch: string): Array<{ step: number; dir: string }> =>
  fs.existsSync(scratch)
    ? fs
        .readdirSync(scratch)
        .map((n) => /^ckpt-(\d+)$/.exec(n))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ step: Number(m[1]), dir: path.join(scratch, m[0]) }))
        .sort((a, b) => a.step - b.step)
    : []

const saveCheckpoint = (scratch: string, keep: number, c: Checkpoint, lora: LoraTensors, best: ReadonlyArray<Float32Array>, opt: ReadonlyArray<Native.AdamW8bitState>) => {
  const dir = path.join(scratch, `ckpt-${c.step}`)
  const tmp = `${dir}.tmp-${process.pid}`
  fs.rmSync(tmp, { recursive: true, force: true })
  fs.mkdirSync(tmp, { recursive: true })
  writeArrays(path.join(tmp, "lora.bin"), params(lora))
  writeArrays(path.join(tmp, "best.bin"), best)
  writeArrays(path.join(tmp, "optimizer.bin"), optArrays(opt))
  fs.writeFileSync(path.join(tmp, "state.json"), JSON.stringify(c))
  fs.rmSync(dir, { recursive: true, force: true })
  fs.renameSync(tmp, dir) // a checkpoint is complete or absent
  const all = checkpointDirs(scratch)
  for (const old of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(old.dir, { recursive: true, force: true })
}

// ---------------------------------------------------------------- the loop

export interface TrainInput {
  readonly config: Qwen3Config
  /** the CPU backend's base (quantizeBase); unused when `backend` is given */
  readonly weights?: Qwen3Weights
  /** where the steps run (backend.ts); default the CPU backend over `weights` */
  readonly backend?: Backend
  readonly train: Format.Tokenized
  readonly val: Format.Tokenized
  readonly t: TrainConfig
  readonly lora: LoraConfig
  readonly scratch: string
  /** stop after this many steps in this process (tests of resume); the run is not done */
  readonly stopAfter?: number
  readonly onEvent: (e: TrainEvent) => void
}

export const validationLoss = (input: Pick<TrainInput, "config" | "val" | "t">, backend: Backend, lora: LoraTensors): number => {
  const n = Math.min(input.t.evalSamples, input.val.sequenceOffsets.length - 1)
  let sum = 0
  let count = 0
  for (let s = 0; s < n; s++) {
    const r = backend.evaluate(lora, makeBatch(input.val, [s], padFor(input.config)))
    sum += r.loss * r.counted
    count += r.counted
  }
  return count ? sum / count : NaN
}

/** The longest sequence of a tokenized file (what a backend that allocates up front must hold). */
export const longestSequence = (data: Format.Tokenized): number => {
  let n = 2
  const off = data.sequenceOffsets
  for (let s = 0; s + 1 < off.length; s++) n = Math.max(n, off[s + 1]! - off[s]!)
  return n
}

const missingWeights = (): never => {
  throw new Error("train: neither a backend nor the CPU backend's weights were given")
}

/** Trains (or resumes) and returns the adapter to keep: the best by validation loss. */
export const train = (input: TrainInput): { lora: LoraTensors; finished: boolean; bestVal: number | null } => {
  const { config, t } = input
  const nSeq = input.train.sequenceOffsets.length - 1
  if (nSeq === 0) throw new Error("no training sequences (every example was dropped by tokenize.maxSeqLen?)")
  const total = t.maxSteps ?? Math.max(1, Math.ceil((t.epochs * nSeq) / (t.batchSize * t.gradAccum)))
  const backend = input.backend ?? cpuBackend(config, input.weights ?? missingWeights(), t.activationCheckpointing === true)
  const lora = initLora(config, input.lora, t.seed)
  const ps = params(lora)
  const gs = grads(lora)
  const opt = ps.map((p) => Native.adamw8bitInit(p.length))
  const best = ps.map((p) => Float32Array.from(p))
  let ck: Checkpoint = { step: 0, optStep: 0, scaler: { scale: backend.scaler.initial, goodSteps: 0, skipped: 0 }, bestVal: null }
  // the newest checkpoint that loads; a damaged one (a checkpoint is derived state) is
  // said once, removed, and the one before it is tried
  let resumedFrom: number | null = null
  for (const c of checkpointDirs(input.scratch).reverse()) {
    try {
      ck = loadCheckpoint(c.dir, ps, best, optArrays(opt))
      resumedFrom = ck.step
      break
    } catch (e) {
      input.onEvent({ type: "warning", message: `checkpoint at step ${c.step} is damaged (${(e as Error).message}); it was removed` })
      fs.rmSync(c.dir, { recursive: true, force: true })
    }
  }
  const scaler = { ...ck.scaler }
  let optStep = ck.optStep
  let bestVal = ck.bestVal
  const device = backend.deviceOptimizer
  backend.loraChanged(lora)
  device?.push(lora, opt)
  input.onEvent({ type: "start", totalSteps: total, params: parameterCount(config, input.lora).line, resumedFrom, trainSequences: nSeq, device: backend.describe })
  const evaluate = (step: number) => {
    const v = validationLoss(input, backend, lora)
    const improved = bestVal === null || v < bestVal
    if (improved) {
      bestVal = v
      device?.pull(lora)
      ps.forEach((p, i) => best[i]!.set(p))
    }
    input.onEvent({ type: "eval", step, valLoss: v, best: improved })
  }
  if (ck.step === 0 && resumedFrom === null) evaluate(0) // the untrained adapter's validation loss
  let stepsHere = 0
  for (let step = ck.step; step < total; step++) {
    if (input.stopAfter !== undefined && stepsHere >= input.stopAfter) {
      device?.pull(lora)
      return { lora, finished: false, bestVal }
    }
    const started = performance.now()
    backend.zeroGrads(lora)
    let lossSum = 0
    let tokens = 0
    for (let a = 0; a < t.gradAccum; a++) {
      const b = makeBatch(input.train, microBatchIndices(nSeq, t.batchSize, t.seed, step * t.gradAccum + a), padFor(config))
      const micro = step * t.gradAccum + a
      lossSum += backend.trainMicro(lora, b, input.lora.dropout, (t.seed * 1_000_003 + micro) % 2 ** 52, scaler.scale)
      tokens += b.tokens
    }
    // mean over micro-batches, then the global norm in a fixed order
    let sq = 0
    if (device) sq = device.unscale(1 / scaler.scale, t.gradAccum)
    else {
      backend.collectGrads(lora, scaler.scale)
      for (const g of gs)
        for (let i = 0; i < g.length; i++) {
          g[i] = g[i]! / t.gradAccum
          sq += g[i]! * g[i]!
        }
    }
    const norm = Math.sqrt(sq)
    const finite = Number.isFinite(norm)
    const apply = scalerUpdate(scaler, finite, backend.scaler.growthInterval, backend.scaler.maxScale)
    const lr = learningRate(t, step, total)
    if (apply) {
      const c = t.maxGradNorm > 0 && norm > t.maxGradNorm ? t.maxGradNorm / (norm + 1e-6) : 1
      optStep++
      const hyper = { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: t.weightDecay, step: optStep }
      if (device) device.step(c, hyper)
      else {
        if (c !== 1) for (const g of gs) for (let i = 0; i < g.length; i++) g[i] = g[i]! * c
        ps.forEach((p, i) => Native.adamw8bitStep(p, gs[i]!, opt[i]!, hyper))
        backend.loraChanged(lora)
      }
    }
    const seconds = (performance.now() - started) / 1000
    input.onEvent({ type: "step", step: step + 1, loss: lossSum / t.gradAccum, lr, gradNorm: norm, tokens, tokensPerSecond: tokens / seconds, skipped: !apply, scale: scaler.scale })
    stepsHere++
    const done = step + 1 === total
    if ((step + 1) % t.evalEvery === 0 || done) evaluate(step + 1)
    if (!done && t.checkpointEvery > 0 && (step + 1) % t.checkpointEvery === 0) {
      device?.pull(lora, opt)
      saveCheckpoint(input.scratch, t.keepCheckpoints, { step: step + 1, optStep, scaler, bestVal }, lora, best, opt)
      input.onEvent({ type: "checkpoint", step: step + 1 })
    }
  }
  // keep the best adapter by validation loss
  ps.forEach((p, i) => p.set(best[i]!))
  input.onEvent({ type: "done", step: total, bestVal })
  return { lora, finished: true, bestVal }
}
