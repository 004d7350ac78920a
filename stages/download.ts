/**
 * download: the dataset file and the base model directory.
 *
 * Today: a local dataset file (checked against `dataset.sha256` when given) and
 * the `tiny` model, a deterministic Qwen3-architecture checkpoint written here
 * (or a local model directory, copied). Hub and https sources, resume and
 * retries arrive with issue #3; until then they fail with a clear message.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Stage, StageError } from "../engine/index.ts"
import { parseBytes } from "../engine/Units.ts"
import { Rng } from "./lib/rng.ts"
import * as Safetensors from "./lib/safetensors.ts"
import { ByteSize, withDefault } from "./lib/schema.ts"

export const DatasetParams = Schema.Struct({
  source: Schema.String,
  sha256: Schema.optionalKey(Schema.String.check(Schema.isPattern(/^[0-9a-f]{64}$/)))
})

export const ModelParams = Schema.Struct({
  source: withDefault(Schema.String, "tiny"),
  /** tiny model only: decoder layers (2–4) */
  layers: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 2, maximum: 4 })), 2),
  seed: withDefault(Schema.Int, 0),
  /** size the planner assumes before a remote model is downloaded */
  expectedSize: Schema.optionalKey(ByteSize)
})

const isRemote = (s: string) => /^(hf|https?):\/\//.test(s)

/** The tiny Qwen3: hidden 256, intermediate 768, 4 heads of 64, 2 KV heads, the real vocabulary. */
export const tinyConfig = (layers: number) => ({
  architectures: ["Qwen3ForCausalLM"],
  model_type: "qwen3",
  hidden_size: 256,
  intermediate_size: 768,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 64,
  num_hidden_layers: layers,
  vocab_size: 151936,
  max_position_embeddings: 40960,
  rope_theta: 5000000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
  hidden_act: "silu",
  attention_bias: false,
  attention_dropout: 0,
  torch_dtype: "bfloat16",
  bos_token_id: 151643,
  eos_token_id: 151645
})

const tinyTensors = (layers: number): Array<{ name: string; shape: [number] | [number, number] }> => {
  const t: Array<{ name: string; shape: [number] | [number, number] }> = [{ name: "model.embed_tokens.weight", shape: [151936, 256] }]
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`
    t.push(
      { name: `${p}.input_layernorm.weight`, shape: [256] },
      { name: `${p}.self_attn.q_proj.weight`, shape: [256, 256] },
      { name: `${p}.self_attn.k_proj.weight`, shape: [128, 256] },
      { name: `${p}.self_attn.v_proj.weight`, shape: [128, 256] },
      { name: `${p}.self_attn.o_proj.weight`, shape: [256, 256] },
      { name: `${p}.self_attn.q_norm.weight`, shape: [64] },
      { name: `${p}.self_attn.k_norm.weight`, shape: [64] },
      { name: `${p}.post_attention_layernorm.weight`, shape: [256] },
      { name: `${p}.mlp.gate_proj.weight`, shape: [768, 256] },
      { name: `${p}.mlp.up_proj.weight`, shape: [768, 256] },
      { name: `${p}.mlp.down_proj.weight`, shape: [256, 768] }
    )
  }
  t.push({ name: "model.norm.weight", shape: [256] })
  return t
}

export const tinyBytes = (layers: number): number =>
  tinyTensors(layers).reduce((a, t) => a + 2 * t.shape.reduce((x, y) => x * y, 1), 0) + 4096

const writeTiny = (dir: string, layers: number, seed: number) => {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(tinyConfig(layers), null, 2) + "\n")
  fs.writeFileSync(
    path.join(dir, "generation_config.json"),
    JSON.stringify({ bos_token_id: 151643, eos_token_id: [151645, 151643], pad_token_id: 151643, do_sample: false }, null, 2) + "\n"
  )
  const rng = new Rng(seed)
  const tensors = tinyTensors(layers).map(({ name, shape }) => {
    const n = shape.reduce((x, y) => x * y, 1)
    const x = new Float32Array(n)
    if (shape.length === 1) x.fill(1)
    else for (let i = 0; i < n; i++) x[i] = rng.normal() * 0.02
    const bits = Safetensors.toBf16(x)
    return { name, dtype: "BF16" as const, shape, data: new Uint8Array(bits.buffer) }
  })
  Safetensors.write(path.join(dir, "model.safetensors"), tensors, { format: "pt" })
}

const sha256File = (file: string): string => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

export const download = Stage.make({
  name: "download",
  description: "fetch the dataset and the base model",
  module: import.meta.url,
  params: { dataset: DatasetParams, model: ModelParams },
  outputs: { dataset: Stage.file("dataset.csv"), model: Stage.dir("model") },
  deps: (p) => (isRemote(p.dataset.source) ? [] : [p.dataset.source]),
  resources: { memoryMB: 512 },
  estimate: ({ params, inputSizes }) => ({
    bytes: {
      dataset: inputSizes[params.dataset.source] ?? 20_000_000,
      model:
        params.model.source === "tiny"
          ? tinyBytes(params.model.layers)
          : (parseBytes(params.model.expectedSize) ?? 0)
    },
    seconds: params.model.source === "tiny" ? 2 : 600
  }),
  run: (ctx) =>
    Effect.gen(function* () {
      const { dataset, model } = ctx.params
      if (isRemote(dataset.source)) return yield* new StageError({ message: `dataset.source ${dataset.source}: remote sources arrive with issue #3; use a local file` })
      const src = path.resolve(ctx.workspace, dataset.source)
      if (dataset.sha256 !== undefined) {
        const got = sha256File(src)
        if (got !== dataset.sha256) return yield* new StageError({ message: `${dataset.source}: sha256 ${got} does not match dataset.sha256 ${dataset.sha256}` })
      }
      fs.copyFileSync(src, ctx.outputs.dataset)
      yield* ctx.log(`dataset: ${dataset.source} (${fs.statSync(src).size} bytes)`)
      if (model.source === "tiny") {
        yield* ctx.log(`model: tiny Qwen3, ${model.layers} layers, seed ${model.seed}`)
        writeTiny(ctx.outputs.model, model.layers, model.seed)
      } else if (isRemote(model.source)) {
        return yield* new StageError({ message: `model.source ${model.source}: hub downloads arrive with issue #3; use tiny or a local directory` })
      } else {
        fs.cpSync(path.resolve(ctx.workspace, model.source), ctx.outputs.model, { recursive: true })
      }
    })
})
