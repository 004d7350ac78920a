/**
 * Hugging Face checkpoints and PEFT adapters on disk, read into (and written
 * from) the native core's types (native/qwen3.ts).
 *
 * A checkpoint is a directory: config.json (Qwen3ForCausalLM) and
 * model.safetensors, or the shards model.safetensors.index.json names; bf16,
 * fp16 or fp32. An adapter is adapter_config.json and adapter_model.safetensors
 * with PEFT's tensor names. Every problem is one error naming the file and the
 * tensor: a bad header, an unknown dtype, a shape that disagrees with the
 * config, a missing tensor.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { loraSlots, PROJECTIONS, projectionShape, type LayerWeights, type LoraTensors, type Projection, type Qwen3Config, type Qwen3Weights } from "../../native/qwen3.ts"
import * as Safetensors from "./safetensors.ts"

export class CheckpointError extends Error {}

/** The module a projection sits in, in Hugging Face's names. */
const MODULE: Record<Projection, "self_attn" | "mlp"> = {
  q_proj: "self_attn", k_proj: "self_attn", v_proj: "self_attn", o_proj: "self_attn", gate_proj: "mlp", up_proj: "mlp", down_proj: "mlp"
}

/** Hugging Face's name of a projection's weight. */
export const weightName = (layer: number, j: Projection) => `model.layers.${layer}.${MODULE[j]}.${j}.weight`

/** PEFT's tensor name of one LoRA matrix. */
export const loraName = (layer: number, j: Projection, which: "A" | "B") => `base_model.model.model.layers.${layer}.${MODULE[j]}.${j}.lora_${which}.weight`

/** Every tensor of a (tied) Qwen3 checkpoint with the shape its config implies. */
export const checkpointTensors = (c: Pick<Qwen3Config, "hidden" | "intermediate" | "heads" | "kvHeads" | "headDim" | "layers" | "vocab">): Map<string, ReadonlyArray<number>> => {
  const t = new Map<string, ReadonlyArray<number>>([
    ["model.embed_tokens.weight", [c.vocab, c.hidden]],
    ["model.norm.weight", [c.hidden]]
  ])
  for (let i = 0; i < c.layers; i++) {
    t.set(`model.layers.${i}.input_layernorm.weight`, [c.hidden])
    t.set(`model.layers.${i}.post_attention_layernorm.weight`, [c.hidden])
    t.set(`model.layers.${i}.self_attn.q_norm.weight`, [c.headDim])
    t.set(`model.layers.${i}.self_attn.k_norm.weight`, [c.headDim])
    for (const j of PROJECTIONS) {
      const s = projectionShape(c as Qwen3Config, j)
      t.set(weightName(i, j), [s.out, s.in])
    }
  }
  return t
}

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

/** Tensor name → where it lives, over model.safetensors or every shard of the index. */
export const locateTensors = (dir: string): Map<string, Safetensors.Located> => {
  const index = path.join(dir, "model.safetensors.index.json")
  let files = ["model.safetensors"]
  if (fs.existsSync(index)) {
    try {
      files = [...new Set(Object.values((JSON.parse(fs.readFileSync(index, "utf8")) as { weight_map: Record<string, string> }).weight_map))]
    } catch (e) {
      throw new CheckpointError(`${index}: ${(e as Error).message}`)
    }
  }
  try {
    return Safetensors.indexFiles(files.map((f) => path.join(dir, f)))
  } catch (e) {
    throw new CheckpointError((e as Error).message)
  }
}

/** Reads one tensor as fp32, checking its shape. */
const tensor = (t: ReadonlyMap<string, Safetensors.Located>, name: string, shape: ReadonlyArray<number>): Float32Array => {
  const e = t.get(name)
  if (!e) throw new CheckpointError(`missing tensor ${name}`)
  if (e.info.shape.length !== shape.length || e.info.shape.some((d, i) => d !== shape[i]))
    throw new CheckpointError(`${path.basename(e.file)}: ${name}: shape [${e.info.shape}] does not match the config's [${shape}]`)
  try {
    return Safetensors.readTensor(e)
  } catch (err) {
    throw new CheckpointError(`${path.basename(e.file)}: ${name}: ${(err as Error).message.replace(`${e.file}: `, "")}`)
  }
}

export const loadQwen3 = (dir: string): { config: Qwen3Config; weights: Qwen3Weights } => loadQwen3With(dir, (w) => w)

/**
 * loadQwen3 with each projection weight passed through `project` as it is read: a 4-bit copy
 * of the base (the CUDA trainer's) never holds all the fp32 projections at once.
 */
export const loadQwen3With = <W>(
  dir: string,
  /** also told which projection this is (counting from 1) of how many */
  project: (w: Float32Array, index: number, total: number) => W
): { config: Qwen3Config; weights: { embed: Float32Array; finalNorm: Float32Array; layers: Array<Omit<LayerWeights, "w"> & { w: Array<W> }> } } => {
  const c = readConfig(dir)
  if (!c.tied) throw new CheckpointError(`${dir}/config.json: tie_word_embeddings false is not supported yet`)
  const t = locateTensors(dir)
  const shapes = checkpointTensors(c)
  const read = (name: string) => tensor(t, name, shapes.get(name)!)
  const layers = Array.from({ length: c.layers }, (_, i) => ({
    inputNorm: read(`model.layers.${i}.input_layernorm.weight`),
    postNorm: read(`model.layers.${i}.post_attention_layernorm.weight`),
    qNorm: read(`model.layers.${i}.self_attn.q_norm.weight`),
    kNorm: read(`model.layers.${i}.self_attn.k_norm.weight`),
    w: PROJECTIONS.map((j, k) => project(read(weightName(i, j)), i * PROJECTIONS.length + k + 1, c.layers * PROJECTIONS.length))
  }))
  return { config: c, weights: { embed: read("model.embed_tokens.weight"), finalNorm: read("model.norm.weight"), layers } }
}

/** Reads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors). */
export const loadAdapter = (dir: string, c: Qwen3Config): LoraTensors => {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "adapter_config.json"), "utf8")) as { r: number; lora_alpha: number; target_modules: Array<string> }
  const t = Safetensors.indexFiles([path.join(dir, "adapter_model.safetensors")])
  const proj = loraSlots(c, cfg.target_modules, (l, j, s) => {
    const A = tensor(t, loraName(l, j, "A"), [cfg.r, s.in])
    const B = tensor(t, loraName(l, j, "B"), [s.out, cfg.r])
    return { A, B, dA: new Float32Array(A.length), dB: new Float32Array(B.length) }
  })
  return { rank: cfg.r, scale: cfg.lora_alpha / cfg.r, proj }
}

/** The LoRA settings an adapter records. */
export interface AdapterSettings {
  readonly r: number
  readonly alpha: number
  readonly dropout: number
  readonly targets: ReadonlyArray<string>
}

/** Writes a PEFT adapter directory: adapter_config.json + adapter_model.safetensors with PEFT's names. */
export const writeAdapter = (dir: string, c: Qwen3Config, lora: AdapterSettings, t: LoraTensors, base: string | null): void => {
  fs.mkdirSync(dir, { recursive: true })
  const tensors: Array<Safetensors.Tensor> = []
  let k = 0
  for (let l = 0; l < c.layers; l++)
    for (const j of PROJECTIONS) {
      const p = t.proj[k++]
      if (!p) continue
      const s = projectionShape(c, j)
      tensors.push({ name: loraName(l, j, "A"), dtype: "F32", shape: [lora.r, s.in], data: new Uint8Array(p.A.buffer, p.A.byteOffset, p.A.byteLength) })
      tensors.push({ name: loraName(l, j, "B"), dtype: "F32", shape: [s.out, lora.r], data: new Uint8Array(p.B.buffer, p.B.byteOffset, p.B.byteLength) })
    }
  Safetensors.write(path.join(dir, "adapter_model.safetensors"), tensors, { format: "pt" })
  const config = {
    peft_type: "LORA", task_type: "CAUSAL_LM", base_model_name_or_path: base, r: lora.r, lora_alpha: lora.alpha, lora_dropout: lora.dropout,
    target_modules: [...lora.targets], bias: "none", fan_in_fan_out: false, inference_mode: true, init_lora_weights: true
  }
  fs.writeFileSync(path.join(dir, "adapter_config.json"), JSON.stringify(config, null, 2) + "\n")
}
