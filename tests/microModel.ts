/**
 * A real, very small Qwen3 checkpoint for tests that move model files around
 * (downloads, local model directories): a valid config, real safetensors with
 * every tensor the config implies at its shape, a chat template. Its weights
 * are random bytes (every bit pattern is a bf16 number); nothing trains on it.
 * The vocabulary is large enough that the embedding is ~1 MB, so transfers
 * can be dropped half-way and resumed.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Safetensors from "../stages/lib/safetensors.ts"

export interface MicroOptions {
  readonly layers?: number
  readonly vocab?: number
  /** split the weights over this many shards with an index (default: one model.safetensors) */
  readonly shards?: number
}

const HIDDEN = 64
const HEADS = 4
const KV = 2
const HEAD_DIM = 16
const INTER = 128

export const microConfig = (layers: number, vocab: number) => ({
  architectures: ["Qwen3ForCausalLM"],
  model_type: "qwen3",
  hidden_size: HIDDEN,
  intermediate_size: INTER,
  num_attention_heads: HEADS,
  num_key_value_heads: KV,
  head_dim: HEAD_DIM,
  num_hidden_layers: layers,
  vocab_size: vocab,
  rope_theta: 5000000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16"
})

/** Tensor names and shapes of the micro model, written out by hand (independent of stages/lib/modelcheck.ts). */
const tensors = (layers: number, vocab: number): Array<[string, Array<number>]> => {
  const t: Array<[string, Array<number>]> = [["model.embed_tokens.weight", [vocab, HIDDEN]]]
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`
    t.push(
      [`${p}.input_layernorm.weight`, [HIDDEN]],
      [`${p}.self_attn.q_proj.weight`, [HEADS * HEAD_DIM, HIDDEN]],
      [`${p}.self_attn.k_proj.weight`, [KV * HEAD_DIM, HIDDEN]],
      [`${p}.self_attn.v_proj.weight`, [KV * HEAD_DIM, HIDDEN]],
      [`${p}.self_attn.o_proj.weight`, [HIDDEN, HEADS * HEAD_DIM]],
      [`${p}.self_attn.q_norm.weight`, [HEAD_DIM]],
      [`${p}.self_attn.k_norm.weight`, [HEAD_DIM]],
      [`${p}.post_attention_layernorm.weight`, [HIDDEN]],
      [`${p}.mlp.gate_proj.weight`, [INTER, HIDDEN]],
      [`${p}.mlp.up_proj.weight`, [INTER, HIDDEN]],
      [`${p}.mlp.down_proj.weight`, [HIDDEN, INTER]]
    )
  }
  t.push(["model.norm.weight", [HIDDEN]])
  return t
}

const safetensorsBytes = (list: Array<[string, Array<number>]>): Buffer => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "micro-")), "m.safetensors")
  Safetensors.write(
    file,
    list.map(([name, shape]) => ({ name, dtype: "BF16" as const, shape, data: randomBytes(2 * shape.reduce((a, b) => a * b, 1)) })),
    { format: "pt" }
  )
  const bytes = fs.readFileSync(file)
  fs.rmSync(path.dirname(file), { recursive: true, force: true })
  return bytes
}

/** The files of a micro Qwen3 model directory, name → content. */
export const microModel = (o: MicroOptions = {}): Record<string, Buffer> => {
  const layers = o.layers ?? 1
  const vocab = o.vocab ?? 8192
  const files: Record<string, Buffer> = {
    "config.json": Buffer.from(JSON.stringify(microConfig(layers, vocab), null, 2)),
    "tokenizer.json": Buffer.from('{"version":"1.0","model":{"type":"BPE","vocab":{},"merges":[]},"added_tokens":[]}'),
    "tokenizer_config.json": Buffer.from(JSON.stringify({ chat_template: "{% for m in messages %}{{ m.content }}{% endfor %}", eos_token: "<|im_end|>" }))
  }
  const all = tensors(layers, vocab)
  const shards = o.shards ?? 1
  if (shards === 1) {
    files["model.safetensors"] = safetensorsBytes(all)
    return files
  }
  const per = Math.ceil(all.length / shards)
  const weightMap: Record<string, string> = {}
  let total = 0
  for (let s = 0; s < shards; s++) {
    const name = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`
    const part = all.slice(s * per, (s + 1) * per)
    files[name] = safetensorsBytes(part)
    total += files[name].length
    for (const [t] of part) weightMap[t] = name
  }
  files["model.safetensors.index.json"] = Buffer.from(JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2))
  return files
}

/** Writes the files into a directory. */
export const writeFiles = (dir: string, files: Readonly<Record<string, Buffer | string>>): string => {
  for (const [name, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
    fs.writeFileSync(path.join(dir, name), body)
  }
  return dir
}

/** The JSON header of safetensors bytes. */
export const safetensorsHeader = (b: Buffer) =>
  JSON.parse(b.subarray(8, 8 + Number(b.readBigUInt64LE(0))).toString()) as Record<string, { dtype: string; shape: Array<number>; data_offsets: [number, number] }>

/** The same bytes with another header (for damaging a checkpoint on purpose). */
export const withSafetensorsHeader = (b: Buffer, header: object): Buffer => {
  let json = JSON.stringify(header)
  json += " ".repeat((8 - (json.length % 8)) % 8)
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(json.length))
  return Buffer.concat([len, Buffer.from(json), b.subarray(8 + Number(b.readBigUInt64LE(0)))])
}
