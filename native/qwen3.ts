/**
 * Loading a Qwen3 checkpoint and a PEFT adapter for the native core, and the
 * typed face of `qwen3ForwardBackward`.
 *
 * The checkpoint is a Hugging Face directory: config.json (Qwen3ForCausalLM)
 * and model.safetensors, or shards listed in model.safetensors.index.json;
 * bf16, fp16 or fp32. Every problem is one clear error naming the file and
 * tensor: a bad header length, an unknown dtype, a shape that disagrees with
 * the config, a missing tensor.
 */
import * as fs from "node:fs"
import * as path from "node:path"

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

export const PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const
export type Projection = (typeof PROJECTIONS)[number]
const MODULE: Record<Projection, string> = { q_proj: "self_attn", k_proj: "self_attn", v_proj: "self_attn", o_proj: "self_attn", gate_proj: "mlp", up_proj: "mlp", down_proj: "mlp" }

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

export class CheckpointError extends Error {}

export const readConfig = (dir: string): Qwen3Config => {
  const file = path.join(dir, "config.json")
  let raw: Record<string, unknown>
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>
  } catch (e) {
    throw new CheckpointError(`${file}: ${(e as Error).message}`)
  }
  const arch = raw["architectures"]
  if (!Array.isArray(arch) || !arch.includes("Qwen3ForCausalLM")) throw new CheckpointError(`${file}: architectures must include Qwen3ForCausalLM`)
  const num = (k: string, fallback?: number): number => {
    const v = raw[k] ?? fallback
    if (typeof v !== "number" || !Number.isFinite(v)) throw new CheckpointError(`${file}: ${k}: expected a number`)
    return v
  }
  const heads = num("num_attention_heads")
  return {
    hidden: num("hidden_size"),
    intermediate: num("intermediate_size"),
    heads,
    kvHeads: num("num_key_value_heads"),
    headDim: num("head_dim", num("hidden_size") / heads),
    layers: num("num_hidden_layers"),
    vocab: num("vocab_size"),
    ropeTheta: num("rope_theta"),
    rmsEps: num("rms_norm_eps"),
    tied: raw["tie_word_embeddings"] === true
  }
}

const bf16ToF32 = (b: Uint16Array): Float32Array => {
  const u = new Uint32Array(b.length)
  for (let i = 0; i < b.length; i++) u[i] = b[i]! << 16
  return new Float32Array(u.buffer)
}
const f16ToF32 = (h: Uint16Array): Float32Array => {
  const out = new Float32Array(h.length)
  for (let i = 0; i < h.length; i++) {
    const x = h[i]!
    const s = x & 0x8000 ? -1 : 1
    const e = (x >> 10) & 0x1f
    const m = x & 0x3ff
    out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15)
  }
  return out
}

interface TensorEntry {
  readonly file: string
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
  readonly start: number
  readonly end: number
}

/** Tensor name → where it lives, over one file or every shard. */
export const indexTensors = (dir: string): Map<string, TensorEntry> => {
  const index = path.join(dir, "model.safetensors.index.json")
  const files = fs.existsSync(index)
    ? [...new Set(Object.values((JSON.parse(fs.readFileSync(index, "utf8")) as { weight_map: Record<string, string> }).weight_map))]
    : ["model.safetensors"]
  return indexFiles(files.map((f) => path.join(dir, f)))
}

/** Tensor name → where it lives, over the given safetensors files. */
export const indexFiles = (files: ReadonlyArray<string>): Map<string, TensorEntry> => {
  const out = new Map<string, TensorEntry>()
  for (const file of files) {
    if (!fs.existsSync(file)) throw new CheckpointError(`${file}: missing`)
    const fd = fs.openSync(file, "r")
    try {
      const size = fs.fstatSync(fd).size
      const len = Buffer.alloc(8)
      fs.readSync(fd, len, 0, 8, 0)
      const n = Number(len.readBigUInt64LE())
      if (size < 8 || n <= 1 || 8 + n > size) throw new CheckpointError(`${file}: bad safetensors header length ${n} (file is ${size} bytes)`)
      const buf = Buffer.alloc(n)
      fs.readSync(fd, buf, 0, n, 8)
      let header: Record<string, { dtype: string; shape: Array<number>; data_offsets: [number, number] }>
      try {
        header = JSON.parse(buf.toString("utf8"))
      } catch {
        throw new CheckpointError(`${file}: the safetensors header is not JSON`)
      }
      for (const [name, t] of Object.entries(header)) {
        if (name === "__metadata__") continue
        const [a, b] = t.data_offsets
        if (8 + n + b > size) throw new CheckpointError(`${file}: ${name}: data past the end of the file`)
        out.set(name, { file, dtype: t.dtype, shape: t.shape, start: 8 + n + a, end: 8 + n + b })
      }
    } finally {
      fs.closeSync(fd)
    }
  }
  return out
}

const readTensor = (entries: Map<string, TensorEntry>, name: string, shape: ReadonlyArray<number>): Float32Array => {
  const e = entries.get(name)
  if (!e) throw new CheckpointError(`missing tensor ${name}`)
  if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i]))
    throw new CheckpointError(`${path.basename(e.file)}: ${name}: shape [${e.shape}] does not match the config's [${shape}]`)
  const bytes = e.end - e.start
  const buf = Buffer.allocUnsafe(bytes)
  const fd = fs.openSync(e.file, "r")
  try {
    fs.readSync(fd, buf, 0, bytes, e.start)
  } finally {
    fs.closeSync(fd)
  }
  const count = shape.reduce((a, b) => a * b, 1)
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + bytes)
  switch (e.dtype) {
    case "F32":
      if (bytes !== count * 4) break
      return new Float32Array(ab)
    case "BF16":
      if (bytes !== count * 2) break
      return bf16ToF32(new Uint16Array(ab))
    case "F16":
      if (bytes !== count * 2) break
      return f16ToF32(new Uint16Array(ab))
    default:
      throw new CheckpointError(`${path.basename(e.file)}: ${name}: dtype ${e.dtype} is not supported (bf16, fp16 or fp32)`)
  }
  throw new CheckpointError(`${path.basename(e.file)}: ${name}: ${bytes} bytes of data for ${count} ${e.dtype} values`)
}

export const loadQwen3 = (dir: string): { config: Qwen3Config; weights: Qwen3Weights } => {
  const c = readConfig(dir)
  const t = indexTensors(dir)
  const HD = c.heads * c.headDim
  const KD = c.kvHeads * c.headDim
  const dims: Record<Projection, [number, number]> = {
    q_proj: [HD, c.hidden], k_proj: [KD, c.hidden], v_proj: [KD, c.hidden], o_proj: [c.hidden, HD],
    gate_proj: [c.intermediate, c.hidden], up_proj: [c.intermediate, c.hidden], down_proj: [c.hidden, c.intermediate]
  }
  if (!c.tied) throw new CheckpointError(`${dir}/config.json: tie_word_embeddings false is not supported yet`)
  const layers = Array.from({ length: c.layers }, (_, i) => {
    const p = `model.layers.${i}`
    return {
      inputNorm: readTensor(t, `${p}.input_layernorm.weight`, [c.hidden]),
      postNorm: readTensor(t, `${p}.post_attention_layernorm.weight`, [c.hidden]),
      qNorm: readTensor(t, `${p}.self_attn.q_norm.weight`, [c.headDim]),
      kNorm: readTensor(t, `${p}.self_attn.k_norm.weight`, [c.headDim]),
      w: PROJECTIONS.map((j) => readTensor(t, `${p}.${MODULE[j]}.${j}.weight`, dims[j]))
    }
  })
  return {
    config: c,
    weights: { embed: readTensor(t, "model.embed_tokens.weight", [c.vocab, c.hidden]), finalNorm: readTensor(t, "model.norm.weight", [c.hidden]), layers }
  }
}

/** PEFT's tensor name of one LoRA matrix. */
export const loraName = (layer: number, proj: Projection, which: "A" | "B") => `base_model.model.model.layers.${layer}.${MODULE[proj]}.${proj}.lora_${which}.weight`

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

/** Reads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors). */
export const loadAdapter = (dir: string, c: Qwen3Config): LoraTensors => {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "adapter_config.json"), "utf8")) as { r: number; lora_alpha: number; target_modules: Array<string> }
  const file = path.join(dir, "adapter_model.safetensors")
  const t = indexFiles([file])
  const HD = c.heads * c.headDim
  const KD = c.kvHeads * c.headDim
  const io: Record<Projection, [number, number]> = {
    q_proj: [c.hidden, HD], k_proj: [c.hidden, KD], v_proj: [c.hidden, KD], o_proj: [HD, c.hidden],
    gate_proj: [c.hidden, c.intermediate], up_proj: [c.hidden, c.intermediate], down_proj: [c.intermediate, c.hidden]
  }
  const proj = []
  for (let l = 0; l < c.layers; l++)
    for (const j of PROJECTIONS) {
      if (!cfg.target_modules.includes(j)) {
        proj.push(null)
        continue
      }
      const [inF, outF] = io[j]
      const A = readTensor(t, loraName(l, j, "A"), [cfg.r, inF])
      const B = readTensor(t, loraName(l, j, "B"), [outF, cfg.r])
      proj.push({ A, B, dA: new Float32Array(A.length), dB: new Float32Array(B.length) })
    }
  return { rank: cfg.r, scale: cfg.lora_alpha / cfg.r, proj }
}
