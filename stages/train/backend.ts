/**
 * Where the training loop's arithmetic runs: the CPU backend (the native core's fp32
 * forward/backward on the host) or the CUDA backend (native/cuda/step.cuh: the NF4 base, the
 * activations and the LoRA gradients on the GPU, fp16 or bf16 operands with fp32 accumulation).
 *
 * The loop (trainer.ts) is the same for both: it owns the schedule, the loss scaler, evaluation
 * and checkpoints, and (on the host for the CPU backend; refreshed from the device for the CUDA
 * backend) the LoRA weights and the 8-bit AdamW state, so a checkpoint is the same files
 * whichever backend wrote it. The CPU backend only turns
 * micro-batches into a loss and gradients:
 *
 *   zeroGrads → trainMicro × gradAccum → collectGrads (unscaled, into lora.dA/dB) → optimizer
 *   on the host → loraChanged
 *
 * The CUDA backend also runs the optimizer where the gradients are (`deviceOptimizer`):
 *
 *   zeroGrads → trainMicro × gradAccum → unscale (the norm) → step (clip, AdamW)
 *
 * with the host's copies of the weights and the AdamW state (the same formats) refreshed by
 * `pull` for checkpoints and the best adapter, and set by `loraChanged` + `push` at the start.
 *
 * The CUDA backend in fp16 trains with dynamic loss scaling (fp16 gradients would underflow
 * without it): PyTorch's GradScaler's defaults, 2^16 to start, doubled after 2000 good steps. In
 * bf16 (fp32's exponent range) and on the CPU (fp32) the scale is 1 and never above: the scaler
 * only guards against inf/nan (the step is skipped, the scale halved, and regrown to 1 after
 * 200 good steps).
 */
import * as Native from "../../native/index.ts"
import type { LayerWeights, LoraTensors, Qwen3Config, Qwen3Weights } from "../../native/qwen3.ts"

/** A padded batch of token ids and their loss mask, [batch, seqLen]. */
export interface BatchLike {
  readonly ids: Int32Array
  readonly mask: Uint8Array
  readonly batch: number
  readonly seqLen: number
}

export interface Backend {
  /** the loss scaler's start, growth interval (steps) and ceiling */
  readonly scaler: { readonly initial: number; readonly growthInterval: number; readonly maxScale: number }
  /** a line for the log: the device and what it holds */
  readonly describe: string
  zeroGrads(lora: LoraTensors): void
  /** one training micro-batch (dropout on); scale x d(loss)/d(LoRA) accumulates; returns the loss */
  trainMicro(lora: LoraTensors, b: BatchLike, dropout: number, seed: number, scale: number): number
  /** the step's accumulated gradients, divided by `scale`, into lora's dA/dB */
  collectGrads(lora: LoraTensors, scale: number): void
  /** the host's LoRA weights changed (start, resume, and an optimizer step on the host) */
  loraChanged(lora: LoraTensors): void
  /** forward only: the mean loss and the positions it counts */
  evaluate(lora: LoraTensors, b: BatchLike): { loss: number; counted: number }
  /** frees what the backend holds (device memory) */
  close(): void
  /** where the optimizer runs on the device (CUDA): the loop asks it instead of running AdamW on the host */
  readonly deviceOptimizer?: DeviceOptimizer
}

/**
 * The optimizer step on the device: the LoRA masters, their gradients and the AdamW state stay
 * there; the host's copies (which checkpoints and the best adapter are made of) are refreshed by
 * `pull` when the loop needs them. The state has the host's format (adamw8bitInit), so a
 * checkpoint is the same files whichever side ran the optimizer.
 */
export interface DeviceOptimizer {
  /** the host's optimizer state to the device (start, resume; the weights go by loraChanged) */
  push(lora: LoraTensors, opt: ReadonlyArray<Native.AdamW8bitState>): void
  /** the device's LoRA weights (and with opt, the optimizer state) into the host's arrays */
  pull(lora: LoraTensors, opt?: ReadonlyArray<Native.AdamW8bitState>): void
  /** the step's gradients = (g x factor) / divisor, in place; the sum of their squares (NaN: one is not finite) */
  unscale(factor: number, divisor: number): number
  /** gradients x clip, then AdamW on every tensor */
  step(clip: number, hyper: Native.AdamWHyper): void
}

/** The CPU backend: the frozen base dequantized to fp32 (`quantizeBase`), gradients straight into lora. */
export const cpuBackend = (config: Qwen3Config, weights: Qwen3Weights, activationCheckpointing: boolean): Backend => {
  const runConfig = { ...config, activationCheckpointing }
  return {
    scaler: { initial: 1, growthInterval: 200, maxScale: 1 },
    describe: `cpu, ${Native.threads()} threads, fp32`,
    zeroGrads: (lora) => {
      for (const p of lora.proj) {
        p?.dA.fill(0)
        p?.dB.fill(0)
      }
    },
    trainMicro: (lora, b, dropout, seed) =>
      Native.qwen3ForwardBackward(runConfig, weights, { ...lora, dropout, seed }, b.ids, b.mask, b.batch, b.seqLen, true).loss,
    collectGrads: () => {},
    loraChanged: () => {},
    evaluate: (lora, b) => Native.qwen3ForwardBackward(config, weights, lora, b.ids, b.mask, b.batch, b.seqLen, false),
    close: () => {}
  }
}

/** The base as read with each projection quantized to NF4 (`loadQwen3With(dir, nf4Quantize)`). */
export interface Nf4Weights {
  readonly embed: Float32Array
  readonly finalNorm: Float32Array
  readonly layers: ReadonlyArray<Omit<LayerWeights, "w"> & { readonly w: ReadonlyArray<Native.Nf4Tensor> }>
}

/** The base as the CUDA trainer takes it: NF4 codes and plain absmax per projection, the rest as loaded. */
export const cudaBase = (w: Nf4Weights): Native.CudaBase => ({
  embed: w.embed,
  finalNorm: w.finalNorm,
  layers: w.layers.map((l) => ({ inputNorm: l.inputNorm, postNorm: l.postNorm, qNorm: l.qNorm, kNorm: l.kNorm, codes: l.w.map((t) => t.codes), absmax: l.w.map((t) => t.absmax) }))
})

const GiB = 1024 ** 3
const size = (b: number) => (b >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / 1024 ** 2).toFixed(1)} MiB`)

/**
 * The CUDA backend on the first GPU: uploads the base and allocates every buffer for steps of up
 * to maxBatch x maxSeqLen tokens, once. Throws a one-line reason when there is no CUDA backend or
 * no usable GPU, or when the GPU cannot hold the run.
 */
export const cudaBackend = (
  config: Qwen3Config,
  base: Native.CudaBase,
  lora: { readonly r: number; readonly alpha: number },
  maxBatch: number,
  maxSeqLen: number,
  precision: Native.CudaPrecision = "fp16"
): Backend => {
  const mod = Native.cuda()
  if (typeof mod === "string") throw new Error(`train.device cuda: ${mod}`)
  let devices: ReadonlyArray<Native.CudaDevice>
  try {
    devices = mod.cudaDevices()
  } catch (e) {
    // "native/src/addon_cuda.cpp:257: cudaGetDeviceCount(&count): <CUDA's words> (hint: …)"
    throw new Error(`train.device cuda: no usable GPU: ${(e as Error).message.replace(/^\S+:\d+: \w+\([^)]*\): /, "")}`)
  }
  if (devices.length === 0) throw new Error("train.device cuda: no CUDA GPU is visible (CUDA_VISIBLE_DEVICES?); train.device: cpu runs without one")
  const gpu = devices[0]!
  let trainer: Native.CudaTrainer
  try {
    trainer = new mod.CudaTrainer(config, base, lora.r, lora.alpha / lora.r, maxBatch, maxSeqLen, precision)
  } catch (e) {
    // "native/cuda/step.cu:312: Trainer: bf16 operands: this GPU (sm_75) has no bf16 tensor cores; … (hint: …)"
    const m = /Trainer: bf16 operands: (.*?)(?: \(hint: [^)]*\))?$/.exec((e as Error).message)
    if (m) throw new Error(`train.precision bf16: ${m[1]}; train.precision: fp16 runs on every GPU from sm_75 (T4)`)
    throw e
  }
  const slots = (t: LoraTensors) => t.proj
  // the optimizer state, in the LoRA's slots: A's and B's of each adapted projection, in params() order
  const stateSlots = (t: LoraTensors, opt: ReadonlyArray<Native.AdamW8bitState>) => {
    let k = 0
    return t.proj.map((p) => (p ? { A: opt[k++]!, B: opt[k++]! } : null))
  }
  return {
    scaler: precision === "fp16" ? { initial: 65536, growthInterval: 2000, maxScale: 65536 } : { initial: 1, growthInterval: 200, maxScale: 1 },
    // read once the optimizer state is on the device (the loop's start event), so that it counts
    get describe() {
      const b = trainer.bytes()
      const held = b.weights + b.lora + b.activations + b.head + b.workspace + b.optimizer
      return (
        `cuda: ${gpu.name} (sm_${gpu.computeCapability.replace(".", "")}, ${size(gpu.totalBytes)}), ${precision} operands with fp32 accumulation; ` +
        `${size(held)} on the device for ${maxBatch} x ${maxSeqLen} tokens (base ${size(b.weights)}, LoRA ${size(b.lora)}, activations ${size(b.activations)}, ` +
        `head ${size(b.head)}, workspace ${size(b.workspace)}, AdamW ${size(b.optimizer)}); the optimizer step on the device`
      )
    },
    zeroGrads: () => trainer.zeroGrads(),
    trainMicro: (_lora, m, dropout, seed, scale) => trainer.step(m.ids, m.mask, m.batch, m.seqLen, true, scale, dropout, seed).loss,
    collectGrads: (t, scale) => trainer.getGrads(slots(t), 1 / scale),
    loraChanged: (t) => trainer.setLora(slots(t)),
    evaluate: (_lora, m) => trainer.step(m.ids, m.mask, m.batch, m.seqLen, false, 1, 0, 0),
    close: () => trainer.close(),
    deviceOptimizer: {
      push: (t, opt) => trainer.setOptimizerState(stateSlots(t, opt)),
      pull: (t, opt) => {
        trainer.getLora(slots(t))
        if (opt) trainer.getOptimizerState(stateSlots(t, opt))
      },
      unscale: (factor, divisor) => trainer.unscaleGrads(factor, divisor),
      step: (clip, hyper) => trainer.optimizerStep(clip, hyper)
    }
  }
}
