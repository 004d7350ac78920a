/**
 * Checks a Qwen3 model directory the moment `download` reads it, so a broken
 * or mismatched checkpoint fails the first stage in a second with one line
 * naming the file and tensor, instead of the trainer hours later.
 *
 * What is checked, reading only headers (an 8 GB model costs a few kB of I/O):
 * - config.json: JSON, a Qwen3 architecture, positive whole sizes, heads a
 *   multiple of the KV heads, tied embeddings (the only layout train supports);
 * - tokenizer.json and a chat template (tokenizer_config.json's chat_template
 *   or chat_template.jinja), which the data stages need;
 * - the weights: model.safetensors, or every shard model.safetensors.index.json
 *   names; each header is valid (stages/lib/safetensors.ts: offsets inside the
 *   file, sizes that match the shapes), every tensor the config implies is
 *   present once, with the shape the config implies, in bf16, fp16 or fp32.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { checkpointTensors } from "./checkpoint.ts"
import { readHeader, SafetensorsError, type TensorInfo } from "./safetensors.ts"

const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/
const FLOAT = new Set(["BF16", "F16", "F32"])

class ModelError extends Error {}

const readJson = (file: string, label: string): Record<string, unknown> => {
  let text: string
  try {
    text = fs.readFileSync(file, "utf8")
  } catch (e) {
    throw new ModelError(`${label}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "missing" : `cannot be read (${(e as NodeJS.ErrnoException).code})`}`)
  }
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    throw new ModelError(`${label}: not valid JSON`)
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ModelError(`${label}: not a JSON object`)
  return v as Record<string, unknown>
}

const checkConfig = (dir: string, label: string) => {
  const file = `${label}/config.json`
  const raw = readJson(path.join(dir, "config.json"), file)
  const arch = raw["architectures"]
  if (raw["model_type"] !== "qwen3" && !(Array.isArray(arch) && arch.includes("Qwen3ForCausalLM")))
    throw new ModelError(`${file}: not a Qwen3 model (model_type ${JSON.stringify(raw["model_type"])}, architectures ${JSON.stringify(arch)})`)
  const whole = (k: string, fallback?: number): number => {
    const v = raw[k] ?? fallback
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) throw new ModelError(`${file}: ${k}: expected a positive whole number, got ${JSON.stringify(raw[k])}`)
    return v
  }
  const cfg = {
    hidden: whole("hidden_size"),
    intermediate: whole("intermediate_size"),
    heads: whole("num_attention_heads"),
    kvHeads: whole("num_key_value_heads"),
    layers: whole("num_hidden_layers"),
    vocab: whole("vocab_size"),
    headDim: 0
  }
  cfg.headDim = whole("head_dim", Number.isInteger(cfg.hidden / cfg.heads) ? cfg.hidden / cfg.heads : undefined)
  if (cfg.heads % cfg.kvHeads !== 0) throw new ModelError(`${file}: num_attention_heads ${cfg.heads} is not a multiple of num_key_value_heads ${cfg.kvHeads}`)
  for (const k of ["rope_theta", "rms_norm_eps"]) {
    const v = raw[k]
    if (typeof v !== "number" || !(v > 0)) throw new ModelError(`${file}: ${k}: expected a positive number, got ${JSON.stringify(v)}`)
  }
  if (raw["tie_word_embeddings"] !== true) throw new ModelError(`${file}: tie_word_embeddings must be true (untied output heads are not supported by train yet)`)
  return cfg
}

const checkTokenizer = (dir: string, label: string) => {
  if (!fs.statSync(path.join(dir, "tokenizer.json"), { throwIfNoEntry: false })?.isFile()) throw new ModelError(`${label}/tokenizer.json: missing`)
  if (fs.existsSync(path.join(dir, "chat_template.jinja"))) return
  const cfg = readJson(path.join(dir, "tokenizer_config.json"), `${label}/tokenizer_config.json`)
  if (typeof cfg["chat_template"] !== "string") throw new ModelError(`${label}/tokenizer_config.json: no chat_template (and no chat_template.jinja)`)
}

/** The weight files: model.safetensors, or the shards an index names. */
const weightFiles = (dir: string, label: string): Array<string> => {
  const index = path.join(dir, "model.safetensors.index.json")
  if (!fs.existsSync(index)) return ["model.safetensors"]
  const map = readJson(index, `${label}/model.safetensors.index.json`)["weight_map"]
  if (typeof map !== "object" || map === null || Array.isArray(map)) throw new ModelError(`${label}/model.safetensors.index.json: no weight_map`)
  const names = [...new Set(Object.values(map as Record<string, unknown>))]
  const bad = names.find((n) => typeof n !== "string" || !SAFE_NAME.test(n))
  if (bad !== undefined) throw new ModelError(`${label}/model.safetensors.index.json: weight_map names an unsafe file ${JSON.stringify(bad)}`)
  if (names.length === 0) throw new ModelError(`${label}/model.safetensors.index.json: weight_map is empty`)
  return (names as Array<string>).sort()
}

/**
 * Why the model directory cannot be trained on, as one line naming the file
 * (as `label/<file>`), or undefined when it is sound.
 */
export const modelProblem = (dir: string, label: string = dir): string | undefined => {
  try {
    const cfg = checkConfig(dir, label)
    checkTokenizer(dir, label)
    const want = checkpointTensors(cfg)
    const seen = new Map<string, { file: string; info: TensorInfo }>()
    for (const f of weightFiles(dir, label)) {
      let header: Record<string, TensorInfo>
      try {
        header = readHeader(path.join(dir, f)).header
      } catch (e) {
        if (e instanceof SafetensorsError) throw new ModelError(`${label}/${f}${e.message.slice(path.join(dir, f).length)}`)
        throw e
      }
      for (const [name, info] of Object.entries(header)) {
        const prev = seen.get(name)
        if (prev) throw new ModelError(`${label}/${f}: ${name} is also in ${prev.file}`)
        seen.set(name, { file: f, info })
      }
    }
    for (const [name, shape] of want) {
      const got = seen.get(name)
      if (!got) throw new ModelError(`${label}: tensor ${name} is missing (the config has ${cfg.layers} layers)`)
      const where = `${label}/${got.file}: ${name}`
      if (got.info.shape.length !== shape.length || got.info.shape.some((d, i) => d !== shape[i]))
        throw new ModelError(`${where}: shape [${got.info.shape.join(", ")}] does not match the config's [${shape.join(", ")}]`)
      if (!FLOAT.has(got.info.dtype)) throw new ModelError(`${where}: dtype ${got.info.dtype} is not supported (bf16, fp16 or fp32)`)
    }
    return undefined
  } catch (e) {
    if (e instanceof ModelError) return e.message
    throw e
  }
}
