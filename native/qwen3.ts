/**
 * The Qwen3 model as the native core sees it: the config, the weights in
 * fp32, the LoRA tensors, and the shape of each projection. Pure types and
 * arithmetic: importing this module never loads the addon, and it imports
 * nothing of the project (reading checkpoints from disk is
 * stages/lib/checkpoint.ts's job).
 */

export interface Qwen3Config {
  readonly hidden: number
  readonly intermediate: number
  readonly heads: number
  readonly kvHeads: number
  readonly headDim: number
  readonly layers: number
  readonly vocab: number
  readonly ropeTheta: number
  readonly rmsEps: number
  readonly tied: boolean
  /** keep only each layer's input in the forward pass and recompute the layer in backward */
  readonly activationCheckpointing?: boolean
}

/** The seven projections of a layer, in the order of `LayerWeights.w` and `LoraTensors.proj`. */
export const PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const
export type Projection = (typeof PROJECTIONS)[number]

/**
 * A projection's input and output features. Its weight W is [out, in] (row
 * major, as Hugging Face stores it), LoRA's A is [r, in] and B is [out, r].
 */
export const projectionShape = (c: Qwen3Config, j: Projection): { readonly in: number; readonly out: number } => {
  const q = c.heads * c.headDim
  const kv = c.kvHeads * c.headDim
  switch (j) {
    case "q_proj":
      return { in: c.hidden, out: q }
    case "k_proj":
    case "v_proj":
      return { in: c.hidden, out: kv }
    case "o_proj":
      return { in: q, out: c.hidden }
    case "gate_proj":
    case "up_proj":
      return { in: c.hidden, out: c.intermediate }
    case "down_proj":
      return { in: c.intermediate, out: c.hidden }
  }
}

export interface LayerWeights {
  readonly inputNorm: Float32Array
  readonly postNorm: Float32Array
  readonly qNorm: Float32Array
  readonly kNorm: Float32Array
  /** q, k, v, o, gate, up, down */
  readonly w: ReadonlyArray<Float32Array>
}
export interface Qwen3Weights {
  readonly embed: Float32Array
  readonly finalNorm: Float32Array
  readonly layers: ReadonlyArray<LayerWeights>
}

export interface LoraTensors {
  readonly rank: number
  readonly scale: number
  /** LoRA dropout probability, applied in training calls only (default 0) */
  readonly dropout?: number
  /** the dropout mask's stream; change it every micro-step */
  readonly seed?: number
  /** layers * 7 entries (q k v o gate up down), null where not adapted */
  readonly proj: ReadonlyArray<{ A: Float32Array; B: Float32Array; dA: Float32Array; dB: Float32Array } | null>
}

/**
 * One slot per (layer, projection) in the order of `LoraTensors.proj`: what
 * `f` makes for an adapted projection, null for the others.
 */
export const loraSlots = <A>(
  c: Qwen3Config,
  targets: ReadonlyArray<string>,
  f: (layer: number, j: Projection, shape: { readonly in: number; readonly out: number }) => A
): Array<A | null> => {
  const out: Array<A | null> = []
  for (let l = 0; l < c.layers; l++) for (const j of PROJECTIONS) out.push(targets.includes(j) ? f(l, j, projectionShape(c, j)) : null)
  return out
}
