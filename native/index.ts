/**
 * The native QLoRA core seen from TypeScript: loads `native/build/Release/ftcore.node` (built by
 * `npm run build:native`) and wraps its kernels in typed functions.
 *
 * - The addon is loaded on first use, so importing this module (e.g. for `buildInputs`) never
 *   needs a build; a missing build is an Error saying which command makes it.
 * - A leaf: it imports nothing of the project. What the pipeline keys on (a digest of the
 *   build inputs) is computed outside, in stages/lib/addon.ts.
 * - Typed arrays cross into C++ without copies. The plain functions allocate their outputs; the
 *   `...Into` variants write into buffers the caller reuses.
 * - `kernels` and `reference` have the same type: the fast C++ kernels and the plain scalar C++
 *   references they are tested against (tests/native.test.ts) and benchmarked against
 *   (bench/kernels.ts). The top-level functions are the kernels.
 * - Formats are those of bitsandbytes, described in native/src/*.h: NF4 in blocks of 64 with
 *   element 2j in the high nibble, double quantization in blocks of 256 with the signed dynamic
 *   map, 8-bit AdamW with blockwise (256) dynamic-map moments, float32 moments under 4096 elements.
 */
import * as fs from "node:fs"
import type { LoraTensors, Qwen3Config, Qwen3Weights } from "./qwen3.ts"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The directory of this file: native/. */
export const nativeDir = path.dirname(fileURLToPath(import.meta.url))
export const addonPath = path.join(nativeDir, "build", "Release", "ftcore.node")

// ---- the addon's raw interface (native/src/addon.cpp) --------------------------------------------

interface RawKernels {
  nf4Quantize(x: Float32Array, codes: Uint8Array, absmax: Float32Array): void
  nf4Dequantize(codes: Uint8Array, absmax: Float32Array, out: Float32Array): void
  doubleQuantize(absmax: Float32Array, q: Uint8Array, scales: Float32Array): number
  doubleDequantize(q: Uint8Array, scales: Float32Array, offset: number, out: Float32Array): void
  adamw8bitStep(
    param: Float32Array,
    grad: Float32Array,
    mCodes: Uint8Array,
    vCodes: Uint8Array,
    mAbsmax: Float32Array,
    vAbsmax: Float32Array,
    hyper: AdamWHyper
  ): void
  dynamicEncode(signed: boolean, x: Float32Array, codes: Uint8Array): void
}

interface Addon {
  readonly napiVersion: number
  readonly nf4Codebook: Float32Array
  readonly blocks: { readonly nf4: number; readonly doubleQuant: number; readonly adamw8bit: number }
  readonly adamw8bitMinQuantized: number
  dynamicMap(signed: boolean): Float32Array
  adamwStep(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, hyper: AdamWHyper): void
  adamw8bitInit(mCodes: Uint8Array, vCodes: Uint8Array, mAbsmax: Float32Array, vAbsmax: Float32Array): void
  readonly kernel: RawKernels
  readonly reference: RawKernels
  readonly qwen3ForwardBackward: Qwen3ForwardBackward
  qwen3Generate(config: Qwen3Config, weights: Qwen3Weights, lora: LoraTensors, prompt: Int32Array, maxNew: number, stops: Int32Array, out: Int32Array): number
  ggufQuantize(type: number, x: Float32Array, out: Uint8Array): void
  ggufDequantize(type: number, q: Uint8Array, out: Float32Array): void
  /** sets the pool size (n > 0) and returns the size in use; 0 only asks */
  qwen3SetThreads(n: number): number
}

/** The signature of the native Qwen3 forward/backward (see `qwen3ForwardBackward` below). */
export type Qwen3ForwardBackward = (
  config: Qwen3Config,
  weights: Qwen3Weights,
  lora: LoraTensors,
  ids: Int32Array,
  mask: Uint8Array,
  batch: number,
  seqLen: number,
  backward: boolean,
  logits?: Float32Array
) => { loss: number; counted: number }

let loaded: Addon | undefined

/** The addon, loaded once; throws an Error naming the build command when it is missing. */
export const addon = (): Addon => {
  if (loaded !== undefined) return loaded
  if (!fs.existsSync(addonPath)) {
    throw new Error(`native addon not built: ${addonPath} is missing; run \`npm run build:native\` (needs cmake and a C++17 compiler)`)
  }
  loaded = createRequire(import.meta.url)(addonPath) as Addon
  return loaded
}

// ---- the CUDA backend (native/src/addon_cuda.cpp) --------------------------------------------------

/** A GPU the CUDA runtime sees. */
export interface CudaDevice {
  readonly index: number
  readonly name: string
  /** "7.5" for a T4, "8.0" for an A100, "9.0" for an H100 */
  readonly computeCapability: string
  readonly totalBytes: number
  readonly freeBytes: number
}

/** The frozen base as the CUDA trainer takes it: NF4 projections (codes + plain absmax), fp32 rest. */
export interface CudaBase {
  readonly embed: Float32Array
  readonly finalNorm: Float32Array
  readonly layers: ReadonlyArray<{
    readonly inputNorm: Float32Array
    readonly postNorm: Float32Array
    readonly qNorm: Float32Array
    readonly kNorm: Float32Array
    /** per projection, in PROJECTIONS order */
    readonly codes: ReadonlyArray<Uint8Array>
    readonly absmax: ReadonlyArray<Float32Array>
  }>
}

type LoraSlots = ReadonlyArray<{ readonly A: Float32Array; readonly B: Float32Array } | null>
type GradSlots = ReadonlyArray<{ readonly dA: Float32Array; readonly dB: Float32Array } | null>
type StateSlots = ReadonlyArray<{ readonly A: AdamW8bitState; readonly B: AdamW8bitState } | null>

/** The operand type of the GPU's products (accumulation is fp32 either way). */
export type CudaPrecision = "fp16" | "bf16"

/** The QLoRA step on a GPU (native/cuda/step.cuh): the base and every buffer live on the device. */
export interface CudaTrainer {
  /** fp32 LoRA weights to the device (null: no adapter on that projection), 16-bit copies refreshed */
  setLora(proj: LoraSlots): void
  zeroGrads(): void
  /** one micro-batch; with backward, lossScale x d(loss)/d(LoRA) accumulates on the device */
  step(ids: Int32Array, mask: Uint8Array, batch: number, seqLen: number, backward: boolean, lossScale: number, dropout: number, seed: number): { loss: number; counted: number }
  /** the accumulated gradients times factor into dA/dB (null slots skipped) */
  getGrads(proj: GradSlots, factor: number): void
  /** the optimizer on the device: each adapted tensor's AdamW state (adamw8bitInit's format) to the device */
  setOptimizerState(proj: StateSlots): void
  /** ... and back into those arrays */
  getOptimizerState(proj: StateSlots): void
  /** the device's fp32 LoRA masters into A/B (null slots skipped) */
  getLora(proj: LoraSlots): void
  /** the gradients = (g x factor) / divisor in place (fp32 roundings, as the host loop's); their sum of squares (NaN when one is not finite) */
  unscaleGrads(factor: number, divisor: number): number
  /** gradients x clip, AdamW on every adapted tensor, the 16-bit copies refreshed */
  optimizerStep(clip: number, hyper: AdamWHyper): void
  bytes(): { weights: number; lora: number; activations: number; head: number; workspace: number; optimizer: number }
  /** frees the device memory now */
  close(): void
}

interface CudaModule {
  cudaDevices(): ReadonlyArray<CudaDevice>
  /** precision: the products' operand type, fp16 (sm_75+) or bf16 (sm_80+: refused elsewhere, saying why) */
  CudaTrainer: new (config: Qwen3Config, base: CudaBase, rank: number, scale: number, maxBatch: number, maxSeqLen: number, precision?: CudaPrecision) => CudaTrainer
}

/**
 * The CUDA backend, or why there is none: ftcore.node has it where nvcc was found at build time.
 * FT_CUDA_ADDON names another module with the same binding instead: the CPU simulator's build
 * (native/cuda/sim/addon.sh), with which the tests drive this path on machines without a GPU.
 */
export const cuda = (): CudaModule | string => {
  const override = process.env["FT_CUDA_ADDON"]
  const mod = (override ? createRequire(import.meta.url)(path.resolve(override)) : addon()) as Partial<CudaModule>
  if (typeof mod.cudaDevices !== "function" || typeof mod.CudaTrainer !== "function") {
    return "this build of the native core has no CUDA backend (nvcc was not found when it was built: install the CUDA toolkit and run `npm run build:native`)"
  }
  return mod as CudaModule
}

/** Threads the native core computes with (FT_THREADS, else the core count). */
export const threads = (): number => addon().qwen3SetThreads(0)

// ---- public types -----------------------------------------------------------------------------

/** An NF4 tensor of n values: codes [ceil(n/2)] (element 2j in the high nibble), absmax [ceil(n/64)]. */
export interface Nf4Tensor {
  readonly n: number
  readonly codes: Uint8Array
  readonly absmax: Float32Array
}

/** Double-quantized absmax values: q [n] signed dynamic-map codes, scales [ceil(n/256)], offset (their mean). */
export interface DoubleQuantized {
  readonly q: Uint8Array
  readonly scales: Float32Array
  readonly offset: number
}

/** AdamW hyper-parameters of one step; `step` is t, counting from 1. Numbers are used as float32. */
export interface AdamWHyper {
  readonly lr: number
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  readonly step: number
}

/**
 * The optimizer state of one tensor, made by `adamw8bitInit(n)`: blockwise 8-bit moments
 * (codes [n], absmax [ceil(n/256)] each), or float32 moments [n] for tensors under 4096 elements.
 */
export type AdamW8bitState =
  | {
      readonly kind: "8bit"
      readonly n: number
      readonly mCodes: Uint8Array
      readonly vCodes: Uint8Array
      readonly mAbsmax: Float32Array
      readonly vAbsmax: Float32Array
    }
  | { readonly kind: "fp32"; readonly n: number; readonly m: Float32Array; readonly v: Float32Array }

/** One implementation of the kernels: `kernels` (fast) or `reference` (plain scalar). */
export interface Kernels {
  nf4Quantize(x: Float32Array): Nf4Tensor
  nf4QuantizeInto(x: Float32Array, codes: Uint8Array, absmax: Float32Array): void
  nf4Dequantize(codes: Uint8Array, absmax: Float32Array, n: number): Float32Array
  nf4DequantizeInto(codes: Uint8Array, absmax: Float32Array, out: Float32Array): void
  nf4DoubleQuantize(absmax: Float32Array): DoubleQuantized
  nf4DoubleDequantize(dq: DoubleQuantized): Float32Array
  /** Updates param and state in place. */
  adamw8bitStep(param: Float32Array, grad: Float32Array, state: AdamW8bitState, hyper: AdamWHyper): void
  /** The codes of the dynamic-map values nearest to each x (x used as it is, not scaled). */
  dynamicEncode(signed: boolean, x: Float32Array): Uint8Array
}

// ---- sizes --------------------------------------------------------------------------------------

export const NF4_BLOCK = 64
export const DOUBLE_QUANT_BLOCK = 256
export const ADAMW8BIT_BLOCK = 256
/** Tensors with fewer elements keep float32 AdamW state (bitsandbytes' min_8bit_size). */
export const ADAMW8BIT_MIN_QUANTIZED = 4096

const blocks = (n: number, size: number): number => Math.ceil(n / size)

// ---- the functions ------------------------------------------------------------------------------

const makeKernels = (raw: () => RawKernels): Kernels => {
  const nf4QuantizeInto = (x: Float32Array, codes: Uint8Array, absmax: Float32Array): void =>
    raw().nf4Quantize(x, codes, absmax)
  const nf4DequantizeInto = (codes: Uint8Array, absmax: Float32Array, out: Float32Array): void =>
    raw().nf4Dequantize(codes, absmax, out)
  return {
    nf4QuantizeInto,
    nf4DequantizeInto,
    nf4Quantize: (x) => {
      const codes = new Uint8Array(Math.ceil(x.length / 2))
      const absmax = new Float32Array(blocks(x.length, NF4_BLOCK))
      nf4QuantizeInto(x, codes, absmax)
      return { n: x.length, codes, absmax }
    },
    nf4Dequantize: (codes, absmax, n) => {
      const out = new Float32Array(n)
      nf4DequantizeInto(codes, absmax, out)
      return out
    },
    nf4DoubleQuantize: (absmax) => {
      const q = new Uint8Array(absmax.length)
      const scales = new Float32Array(blocks(absmax.length, DOUBLE_QUANT_BLOCK))
      const offset = raw().doubleQuantize(absmax, q, scales)
      return { q, scales, offset }
    },
    nf4DoubleDequantize: ({ q, scales, offset }) => {
      const out = new Float32Array(q.length)
      raw().doubleDequantize(q, scales, offset, out)
      return out
    },
    adamw8bitStep: (param, grad, state, hyper) => {
      if (param.length !== state.n) {
        throw new Error(`adamw8bitStep: param has ${param.length} elements but the state was made for ${state.n}`)
      }
      if (state.kind === "fp32") addon().adamwStep(param, grad, state.m, state.v, hyper)
      else raw().adamw8bitStep(param, grad, state.mCodes, state.vCodes, state.mAbsmax, state.vAbsmax, hyper)
    },
    dynamicEncode: (signed, x) => {
      const codes = new Uint8Array(x.length)
      raw().dynamicEncode(signed, x, codes)
      return codes
    }
  }
}

/** The C++ kernels. */
export const kernels: Kernels = makeKernels(() => addon().kernel)
/** The plain scalar C++ references of the same functions. */
export const reference: Kernels = makeKernels(() => addon().reference)

export const {
  nf4Quantize,
  nf4QuantizeInto,
  nf4Dequantize,
  nf4DequantizeInto,
  nf4DoubleQuantize,
  nf4DoubleDequantize,
  adamw8bitStep
} = kernels

/** Fresh AdamW state for a tensor of n elements (moments zero). */
export const adamw8bitInit = (n: number): AdamW8bitState => {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`adamw8bitInit: n is ${n}, expected an integer >= 0`)
  if (n < ADAMW8BIT_MIN_QUANTIZED) return { kind: "fp32", n, m: new Float32Array(n), v: new Float32Array(n) }
  const state = {
    kind: "8bit" as const,
    n,
    mCodes: new Uint8Array(n),
    vCodes: new Uint8Array(n),
    mAbsmax: new Float32Array(blocks(n, ADAMW8BIT_BLOCK)),
    vAbsmax: new Float32Array(blocks(n, ADAMW8BIT_BLOCK))
  }
  addon().adamw8bitInit(state.mCodes, state.vCodes, state.mAbsmax, state.vAbsmax)
  return state
}

/** AdamW with float32 moments m, v [n] (the reference optimizer; also the path of small tensors). */
export const adamwStep = (param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, hyper: AdamWHyper): void =>
  addon().adamwStep(param, grad, m, v, hyper)

/** The 256 values of the signed (first moment, double quantization) or unsigned (second moment) dynamic map. */
export const dynamicMap = (signed: boolean): Float32Array => addon().dynamicMap(signed)

/** The NF4 codebook as the addon uses it (16 values, -1 to 1). */
export const nf4Codebook = (): Float32Array => addon().nf4Codebook.slice()

// ---- build identity -------------------------------------------------------------------------------

/**
 * Files whose bytes decide the binary: CMakeLists.txt, kernels.cmake, package.json (Node-API
 * version), src/, and the CUDA backend's sources in cuda/ (linked into the addon where nvcc is;
 * not its tests, simulator or GPU-check tooling).
 */
export const buildInputs = (dir: string = nativeDir): ReadonlyArray<string> => {
  const src = fs
    .readdirSync(path.join(dir, "src"), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join("/"))
  const cuda = fs.existsSync(path.join(dir, "cuda"))
    ? fs
        .readdirSync(path.join(dir, "cuda"), { withFileTypes: true })
        .filter((e) => e.isFile() && /\.(cu|cuh|h|cpp)$|^CMakeLists\.txt$/.test(e.name))
        .map((e) => `cuda/${e.name}`)
    : []
  return ["CMakeLists.txt", "kernels.cmake", "package.json", ...src, ...cuda].sort()
}

/** The version of a package the build uses (cmake-js, node-addon-api, node-api-headers). */
export const packageVersion = (name: string): string =>
  (createRequire(import.meta.url)(`${name}/package.json`) as { version: string }).version

/** The packages whose versions decide the binary besides its sources. */
export const BUILD_PACKAGES = ["cmake-js", "node-addon-api", "node-api-headers"] as const

/**
 * Forward (and backward) of the Qwen3 decoder with LoRA over `batch` sequences of `seqLen`
 * tokens: returns the mean cross-entropy over positions whose next token has mask 1, and
 * accumulates the LoRA gradients into `lora.proj[*].dA/dB`. `logits` [batch*seqLen*vocab],
 * when given, receives the full logits (tests only).
 */
export const qwen3ForwardBackward: Qwen3ForwardBackward = (config, weights, lora, ids, mask, batch, seqLen, backward, logits) =>
  addon().qwen3ForwardBackward(config, weights, lora, ids, mask, batch, seqLen, backward, logits)

// ---- GGUF quantizers (native/src/gguf_quant.h) -------------------------------------------------

/** [values, bytes] per block of the ggml types the core writes: F32 0, F16 1, Q8_0 8, Q4_K 12, Q5_K 13, Q6_K 14 */
export const GGUF_BLOCKS: Readonly<Record<number, readonly [number, number]>> = { 0: [1, 4], 1: [1, 2], 8: [32, 34], 12: [256, 144], 13: [256, 176], 14: [256, 210] }

const ggufBytes = (type: number, n: number): number => {
  const b = GGUF_BLOCKS[type]
  if (!b) throw new Error(`ggml type ${type} is not one the core writes`)
  if (n % b[0] !== 0) throw new Error(`${n} values are not whole blocks of ${b[0]}`)
  return (n / b[0]) * b[1]
}

/** Quantizes x into ggml type `type`, byte-identical to ggml's quantizer (no importance matrix). */
export const ggufQuantize = (type: number, x: Float32Array): Uint8Array => {
  const out = new Uint8Array(ggufBytes(type, x.length))
  addon().ggufQuantize(type, x, out)
  return out
}

/** The values of n quantized values of ggml type `type`. */
export const ggufDequantize = (type: number, q: Uint8Array, n: number): Float32Array => {
  const out = new Float32Array(n)
  if (q.length !== ggufBytes(type, n)) throw new Error(`${q.length} bytes do not hold ${n} values of ggml type ${type}`)
  addon().ggufDequantize(type, q, out)
  return out
}

/**
 * Greedy decoding with a KV cache (native/src/qwen3.h `generate`): up to `maxNew` tokens after
 * `prompt`, stopping after one of `stops` (included in the result).
 */
export const qwen3Generate = (config: Qwen3Config, weights: Qwen3Weights, lora: LoraTensors, prompt: ArrayLike<number>, maxNew: number, stops: ReadonlyArray<number>): Int32Array => {
  const out = new Int32Array(maxNew)
  const n = addon().qwen3Generate(config, weights, lora, Int32Array.from(prompt), maxNew, Int32Array.from(stops), out)
  return out.subarray(0, n)
}
