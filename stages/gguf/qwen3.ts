/**
 * A Hugging Face Qwen3 checkpoint as GGUF files that llama.cpp loads: the `qwen3` architecture's
 * metadata, the tokenizer (`gpt2` BPE with the `qwen2` pre-tokenizer), the chat template, and the
 * tensors under llama.cpp's names, each in the type the file's mixture gives it.
 *
 * Facts used (llama.cpp's GGUF conventions, gguf-py's constants):
 * - names: model.embed_tokens → token_embd, model.norm → output_norm, lm_head → output,
 *   layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj, self_attn.{q,k}_norm,
 *   post_attention_layernorm, mlp.{gate,up,down}_proj} → blk.N.{attn_norm, attn_{q,k,v,output},
 *   attn_{q,k}_norm, ffn_norm, ffn_{gate,up,down}}; Qwen3 uses NeoX-style RoPE, so Q and K are
 *   stored as they are (no permutation).
 * - dimensions are innermost first: a [out, in] matrix is written as [in, out], same bytes.
 * - the token list covers every row of the embedding (151,936 for Qwen3; the tokenizer has
 *   151,669): ids without a token get "[PAD<id>]" typed UNUSED, because llama.cpp refuses a
 *   vocabulary shorter than token_embd. Types: 1 normal, 3 control (special added tokens),
 *   4 user-defined (added tokens that are not special, such as <tool_call>), 5 unused.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { readConfig, locateTensors } from "../lib/checkpoint.ts"
import type { Qwen3Config } from "../../native/qwen3.ts"
import { bundledTokenizerDir, CHAT_TEMPLATE, chatTemplateOf } from "../lib/qwen3.ts"
import { readElements } from "../lib/safetensors.ts"
import type * as Safetensors from "../lib/safetensors.ts"

/** values per piece when a tensor is read, converted and quantized in row ranges */
const CHUNK_VALUES = 1 << 24
import { ggufQuantize } from "../../native/index.ts"
import { bool, f32, GgmlType, i32s, layout, str, strings, type TensorSpec, u32, type Value, writeGguf } from "./format.ts"
import { chooseTypes, type FileType, LLAMA_FTYPE } from "./mixture.ts"

const TOKEN_NORMAL = 1
const TOKEN_CONTROL = 3
const TOKEN_USER_DEFINED = 4
const TOKEN_UNUSED = 5

export class GgufError extends Error {}

interface HfTokenizer {
  readonly model: { readonly type: string; readonly vocab: Record<string, number>; readonly merges: ReadonlyArray<string | readonly [string, string]> }
  readonly added_tokens: ReadonlyArray<{ readonly id: number; readonly content: string; readonly special: boolean }>
}

/** The tokenizer's metadata: tokens padded to `vocab` rows, their types, merges, special ids. */
export const tokenizerMetadata = (modelDir: string, vocab: number, template?: string): Array<readonly [string, Value]> => {
  const file = path.join(modelDir, "tokenizer.json")
  let tok: HfTokenizer
  try {
    tok = JSON.parse(fs.readFileSync(file, "utf8")) as HfTokenizer
  } catch (e) {
    throw new GgufError(`${file}: ${(e as Error).message}`)
  }
  if (tok.model?.type !== "BPE") throw new GgufError(`${file}: model.type is ${String(tok.model?.type)}; only BPE (Qwen's byte-level BPE) is written`)
  const tokens: Array<string | undefined> = new Array(vocab)
  const types = new Array<number>(vocab).fill(TOKEN_UNUSED)
  for (const [t, id] of Object.entries(tok.model.vocab)) {
    if (id >= vocab) throw new GgufError(`${file}: token ${JSON.stringify(t)} has id ${id}, beyond the embedding's ${vocab} rows`)
    tokens[id] = t
    types[id] = TOKEN_NORMAL
  }
  const specials = new Map<string, number>()
  for (const a of tok.added_tokens) {
    if (a.id >= vocab) throw new GgufError(`${file}: added token ${JSON.stringify(a.content)} has id ${a.id}, beyond the embedding's ${vocab} rows`)
    tokens[a.id] = a.content
    types[a.id] = a.special ? TOKEN_CONTROL : TOKEN_USER_DEFINED
    specials.set(a.content, a.id)
  }
  const names = Array.from(tokens, (t, i) => t ?? `[PAD${i}]`)
  const merges = tok.model.merges.map((m) => (typeof m === "string" ? m : `${m[0]} ${m[1]}`))
  const config = readTokenizerConfig(modelDir)
  const id = (content: string | undefined, fallback: number): number => (content !== undefined ? (specials.get(content) ?? fallback) : fallback)
  const eos = id(config.eos, specials.get("<|im_end|>") ?? 151645)
  const pad = id(config.pad, specials.get("<|endoftext|>") ?? 151643)
  const bos = id(config.bos, specials.get("<|endoftext|>") ?? 151643)
  return [
    ["tokenizer.ggml.model", str("gpt2")],
    ["tokenizer.ggml.pre", str("qwen2")],
    ["tokenizer.ggml.tokens", strings(names)],
    ["tokenizer.ggml.token_type", i32s(types)],
    ["tokenizer.ggml.merges", strings(merges)],
    ["tokenizer.ggml.eos_token_id", u32(eos)],
    ["tokenizer.ggml.padding_token_id", u32(pad)],
    ["tokenizer.ggml.bos_token_id", u32(bos)],
    ["tokenizer.ggml.add_bos_token", bool(false)],
    ["tokenizer.chat_template", str(template ?? chatTemplateOf(modelDir))]
  ]
}

const readTokenizerConfig = (dir: string): { eos?: string; pad?: string; bos?: string } => {
  const file = path.join(dir, "tokenizer_config.json")
  if (!fs.existsSync(file)) return {}
  const raw = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>
  const content = (v: unknown): string | undefined => (typeof v === "string" ? v : v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string" ? (v as { content: string }).content : undefined)
  const out: { eos?: string; pad?: string; bos?: string } = {}
  const eos = content(raw["eos_token"])
  const pad = content(raw["pad_token"])
  const bos = content(raw["bos_token"])
  if (eos !== undefined) out.eos = eos
  if (pad !== undefined) out.pad = pad
  if (bos !== undefined) out.bos = bos
  return out
}

const PROJ: ReadonlyArray<readonly [string, string]> = [
  ["input_layernorm", "attn_norm"],
  ["self_attn.q_proj", "attn_q"],
  ["self_attn.k_proj", "attn_k"],
  ["self_attn.v_proj", "attn_v"],
  ["self_attn.o_proj", "attn_output"],
  ["self_attn.q_norm", "attn_q_norm"],
  ["self_attn.k_norm", "attn_k_norm"],
  ["post_attention_layernorm", "ffn_norm"],
  ["mlp.gate_proj", "ffn_gate"],
  ["mlp.up_proj", "ffn_up"],
  ["mlp.down_proj", "ffn_down"]
]

/** One tensor of the file: its GGUF name and dimensions, and where its fp32 values come from. */
export interface Source {
  readonly name: string
  readonly hf: string
  readonly dims: ReadonlyArray<number>
}

/** The tensors of a Qwen3 checkpoint in file order, with GGUF names and dimensions (innermost first). */
export const sources = (modelDir: string): { readonly sources: Array<Source>; readonly located: Map<string, Safetensors.Located> } => {
  const c = readConfig(modelDir)
  const located = locateTensors(modelDir)
  const out: Array<Source> = []
  const add = (name: string, hf: string) => {
    const t = located.get(hf)
    if (!t) throw new GgufError(`${modelDir}: missing tensor ${hf}`)
    out.push({ name, hf, dims: [...t.info.shape].reverse() })
  }
  add("token_embd.weight", "model.embed_tokens.weight")
  for (let l = 0; l < c.layers; l++) for (const [hf, g] of PROJ) add(`blk.${l}.${g}.weight`, `model.layers.${l}.${hf}.weight`)
  add("output_norm.weight", "model.norm.weight")
  if (!c.tied) add("output.weight", "lm_head.weight")
  return { sources: out, located }
}

/** What the GGUF metadata and tensor list need of a model: its config.json, read or stated. */
export interface ModelFacts extends Qwen3Config {
  readonly contextLength: number
}

/** The facts from config.json's fields (as the params state them). */
export const factsFromConfig = (raw: {
  readonly hidden_size: number
  readonly intermediate_size: number
  readonly num_attention_heads: number
  readonly num_key_value_heads: number
  readonly head_dim?: number
  readonly num_hidden_layers: number
  readonly vocab_size: number
  readonly tie_word_embeddings: boolean
  readonly max_position_embeddings: number
  readonly rope_theta: number
  readonly rms_norm_eps: number
}): ModelFacts => ({
  hidden: raw.hidden_size,
  intermediate: raw.intermediate_size,
  heads: raw.num_attention_heads,
  kvHeads: raw.num_key_value_heads,
  headDim: raw.head_dim ?? raw.hidden_size / raw.num_attention_heads,
  layers: raw.num_hidden_layers,
  vocab: raw.vocab_size,
  ropeTheta: raw.rope_theta,
  rmsEps: raw.rms_norm_eps,
  tied: raw.tie_word_embeddings,
  contextLength: raw.max_position_embeddings
})

/** Parameters of a model of these facts. */
export const parameterCount = (c: ModelFacts): number => tensorsOf(c).reduce((a, t) => a + t.dims.reduce((x, y) => x * y, 1), 0)

export const factsOf = (modelDir: string): ModelFacts => {
  const raw = JSON.parse(fs.readFileSync(path.join(modelDir, "config.json"), "utf8")) as Record<string, unknown>
  return { ...readConfig(modelDir), contextLength: typeof raw["max_position_embeddings"] === "number" ? raw["max_position_embeddings"] : 40960 }
}

/** The architecture's metadata. */
export const modelMetadata = (c: ModelFacts, fileType: FileType, name: string): Array<readonly [string, Value]> => [
  ["general.architecture", str("qwen3")],
  ["general.type", str("model")],
  ["general.name", str(name)],
  ["general.file_type", u32(LLAMA_FTYPE[fileType])],
  ["general.quantization_version", u32(2)],
  ["general.alignment", u32(32)],
  ["qwen3.block_count", u32(c.layers)],
  ["qwen3.context_length", u32(c.contextLength)],
  ["qwen3.embedding_length", u32(c.hidden)],
  ["qwen3.feed_forward_length", u32(c.intermediate)],
  ["qwen3.attention.head_count", u32(c.heads)],
  ["qwen3.attention.head_count_kv", u32(c.kvHeads)],
  ["qwen3.attention.key_length", u32(c.headDim)],
  ["qwen3.attention.value_length", u32(c.headDim)],
  ["qwen3.rope.freq_base", f32(c.ropeTheta)],
  ["qwen3.attention.layer_norm_rms_epsilon", f32(c.rmsEps)]
]

/** The tensors of a Qwen3 model of these facts, in file order, with GGUF names and dimensions. */
export const tensorsOf = (c: ModelFacts): Array<{ readonly name: string; readonly dims: ReadonlyArray<number> }> => {
  const q = c.heads * c.headDim
  const kv = c.kvHeads * c.headDim
  const dims: Record<string, ReadonlyArray<number>> = {
    attn_norm: [c.hidden], attn_q: [c.hidden, q], attn_k: [c.hidden, kv], attn_v: [c.hidden, kv], attn_output: [q, c.hidden],
    attn_q_norm: [c.headDim], attn_k_norm: [c.headDim], ffn_norm: [c.hidden], ffn_gate: [c.hidden, c.intermediate], ffn_up: [c.hidden, c.intermediate],
    ffn_down: [c.intermediate, c.hidden]
  }
  const out: Array<{ readonly name: string; readonly dims: ReadonlyArray<number> }> = [{ name: "token_embd.weight", dims: [c.hidden, c.vocab] }]
  for (let l = 0; l < c.layers; l++) for (const [, g] of PROJ) out.push({ name: `blk.${l}.${g}.weight`, dims: dims[g]! })
  out.push({ name: "output_norm.weight", dims: [c.hidden] })
  if (!c.tied) out.push({ name: "output.weight", dims: [c.hidden, c.vocab] })
  return out
}

const bundledTokenizer = new Map<number, Array<readonly [string, Value]>>()

/**
 * The exact size of a GGUF file for a model of these facts, before the model exists: the
 * tensors from the facts, the tokenizer metadata from the bundled Qwen3 tokenizer (the same
 * vocabulary and merges every Qwen3 model ships). Exact up to the chat template's length, which
 * is the Instruct-2507 template of stages/lib/qwen3.ts here and the model's own in the file.
 */
export const plannedBytes = (c: ModelFacts, fileType: FileType, name: string): number => {
  let tok = bundledTokenizer.get(c.vocab)
  if (!tok) bundledTokenizer.set(c.vocab, (tok = tokenizerMetadata(bundledTokenizerDir(), c.vocab, CHAT_TEMPLATE)))
  const tensors = tensorsOf(c)
  const types = chooseTypes(fileType, tensors, c.layers)
  return layout([...modelMetadata(c, fileType, name), ...tok], tensors.map((t, i) => ({ ...t, type: types[i]! }))).total
}

export interface GgufPlan {
  readonly fileType: FileType
  readonly file: string
  readonly bytes: number
  /** ggml type per tensor, in file order */
  readonly types: ReadonlyArray<GgmlType>
}

/** The file's metadata and tensors (each producing its bytes when asked), and its exact size. */
/** Reads `count` values of a tensor from `start`: the model's own values, or merged ones (stages/gguf.ts with `gguf.from: adapter`). */
export type TensorReader = (hf: string, loc: Safetensors.Located, start: number, count: number) => Float32Array

const readStored: TensorReader = (_hf, loc, start, count) => readElements(loc, start, count)

export const planQwen3Gguf = (modelDir: string, fileType: FileType, name: string, read: TensorReader = readStored) => {
  const c = factsOf(modelDir)
  const { sources: src, located } = sources(modelDir)
  const expected = tensorsOf(c)
  src.forEach((s, i) => {
    if (s.name !== expected[i]?.name || s.dims.join() !== expected[i]!.dims.join())
      throw new GgufError(`${modelDir}: ${s.hf} has shape [${[...s.dims].reverse()}], config.json implies [${[...(expected[i]?.dims ?? [])].reverse()}]`)
  })
  const types = chooseTypes(fileType, src, c.layers)
  const metadata = [...modelMetadata(c, fileType, name), ...tokenizerMetadata(modelDir, c.vocab)]
  const tensors: Array<TensorSpec> = src.map((s, i) => ({
    name: s.name,
    dims: s.dims,
    type: types[i]!,
    // whole rows at a time, ~16M values a piece: quantized blocks never span rows, so the pieces
    // are the bytes of the whole tensor, and memory holds a piece, not the embedding
    *chunks() {
      const loc = located.get(s.hf)!
      const type = types[i]!
      const rowLen = s.dims[0]!
      const rows = s.dims.slice(1).reduce((a, b) => a * b, 1)
      const step = Math.max(1, Math.floor(CHUNK_VALUES / rowLen))
      for (let r = 0; r < rows; r += step) {
        const values = read(s.hf, loc, r * rowLen, Math.min(step, rows - r) * rowLen)
        yield type === GgmlType.F32 ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength) : ggufQuantize(type, values)
      }
    }
  }))
  return { metadata, tensors, types, bytes: layout(metadata, tensors).total }
}

/** Writes `file` (atomically) in one go; the stage writes tensor by tensor with openGguf instead. */
export const writeQwen3Gguf = (modelDir: string, fileType: FileType, file: string, name: string): GgufPlan => {
  const p = planQwen3Gguf(modelDir, fileType, name)
  const bytes = writeGguf(file, p.metadata, p.tensors)
  return { fileType, file, bytes, types: p.types }
}
