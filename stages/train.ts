/**
 * train: QLoRA fine-tuning through the native addon (issue #4).
 *
 * Today this writes the adapter a run starts from, in the PEFT layout
 * (`adapter_config.json` + `adapter_model.safetensors`, lora_A Kaiming-uniform,
 * lora_B zero, so the adapter is a no-op), and records that no step was
 * trained. Its params, resources and estimates are the real ones the planner
 * needs; the training loop replaces the body with #4.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { Stage } from "../engine/index.ts"
import { Rng } from "./lib/rng.ts"
import * as Safetensors from "./lib/safetensors.ts"
import { withDefault } from "./lib/schema.ts"
import { download } from "./download.ts"
import { tokenize } from "./tokenize.ts"

export const LoraParams = Schema.Struct({
  r: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1024 })), 16),
  alpha: withDefault(Schema.Finite, 16),
  dropout: withDefault(Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 })), 0.05),
  targets: withDefault(Schema.Array(Schema.String), ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
})

export const TrainParams = Schema.Struct({
  device: withDefault(Schema.Literals(["cpu", "cuda"]), "cpu"),
  precision: withDefault(Schema.Literals(["fp32", "fp16"]), "fp32"),
  lr: withDefault(Schema.Finite, 1e-3),
  epochs: withDefault(Schema.Finite, 1),
  maxSteps: Schema.optionalKey(Schema.Int),
  batchSize: withDefault(Schema.Int, 2),
  gradAccum: withDefault(Schema.Int, 1),
  warmupSteps: withDefault(Schema.Int, 4),
  scheduler: withDefault(Schema.Literals(["cosine", "linear", "constant"]), "cosine"),
  weightDecay: withDefault(Schema.Finite, 0),
  maxGradNorm: withDefault(Schema.Finite, 1),
  seed: withDefault(Schema.Int, 42),
  evalEvery: withDefault(Schema.Int, 10),
  checkpointEvery: withDefault(Schema.Int, 10),
  keepCheckpoints: withDefault(Schema.Int, 2)
})

const PROJ_DIMS = (cfg: ModelConfig): Record<string, [number, number]> => {
  const h = cfg.hidden_size
  const hd = cfg.head_dim ?? h / cfg.num_attention_heads
  return {
    q_proj: [cfg.num_attention_heads * hd, h],
    k_proj: [cfg.num_key_value_heads * hd, h],
    v_proj: [cfg.num_key_value_heads * hd, h],
    o_proj: [h, cfg.num_attention_heads * hd],
    gate_proj: [cfg.intermediate_size, h],
    up_proj: [cfg.intermediate_size, h],
    down_proj: [h, cfg.intermediate_size]
  }
}

export interface ModelConfig {
  readonly hidden_size: number
  readonly intermediate_size: number
  readonly num_attention_heads: number
  readonly num_key_value_heads: number
  readonly head_dim?: number
  readonly num_hidden_layers: number
}

const module = (t: string) => (t.endsWith("_proj") && ["gate_proj", "up_proj", "down_proj"].includes(t) ? "mlp" : "self_attn")

/** Bytes per trainable parameter held on disk per checkpoint: fp32 weights + two 8-bit Adam moments. */
const CHECKPOINT_BYTES_PER_PARAM = 4 + 2

export const train = Stage.make({
  name: "train",
  description: "QLoRA fine-tuning (native trainer: #4)",
  module: import.meta.url,
  params: { train: TrainParams, lora: LoraParams },
  inputs: { train: tokenize.out.train, val: tokenize.out.val, model: download.out.model },
  outputs: { adapter: Stage.dir("adapter"), metrics: Stage.file("metrics.jsonl", { metrics: true }) },
  resources: { memoryMB: 2000 },
  estimate: ({ params, inputSizes }) => {
    // LoRA r=16 on all seven projections is 0.82% of Qwen3's parameters; the
    // base weights are bf16, so parameters ≈ model bytes / 2.
    const baseParams = (inputSizes["model"] ?? 0) / 2
    const loraParams = baseParams * 0.0082 * (params.lora.r / 16)
    const adapter = loraParams * 4
    const t = params.train
    const tokens = (inputSizes["train"] ?? 0) / 5
    const seq = 384
    const steps = t.maxSteps ?? Math.ceil((t.epochs * tokens) / (t.batchSize * t.gradAccum * seq))
    const tokensPerSecond = t.device === "cuda" ? 5200 : 150
    return {
      bytes: { adapter: Math.round(adapter), metrics: 200 * steps },
      scratchBytes: Math.round(t.keepCheckpoints * loraParams * CHECKPOINT_BYTES_PER_PARAM),
      seconds: (steps * t.batchSize * t.gradAccum * seq) / tokensPerSecond
    }
  },
  run: (ctx) =>
    Effect.gen(function* () {
      const { lora, train: t } = ctx.params
      const cfg = JSON.parse(fs.readFileSync(path.join(ctx.inputs.model, "config.json"), "utf8")) as ModelConfig
      const dims = PROJ_DIMS(cfg)
      const rng = new Rng(t.seed)
      const tensors: Array<Safetensors.Tensor> = []
      for (let layer = 0; layer < cfg.num_hidden_layers; layer++)
        for (const target of lora.targets) {
          const d = dims[target]
          if (!d) continue
          const [outF, inF] = d
          const prefix = `base_model.model.model.layers.${layer}.${module(target)}.${target}`
          // kaiming_uniform_(a=sqrt(5)) as PEFT initialises lora_A: bound = 1/sqrt(in_features)
          const bound = 1 / Math.sqrt(inF)
          const a = new Float32Array(lora.r * inF)
          for (let i = 0; i < a.length; i++) a[i] = (rng.next() * 2 - 1) * bound
          tensors.push({ name: `${prefix}.lora_A.weight`, dtype: "F32", shape: [lora.r, inF], data: new Uint8Array(a.buffer) })
          tensors.push({ name: `${prefix}.lora_B.weight`, dtype: "F32", shape: [outF, lora.r], data: new Uint8Array(new Float32Array(outF * lora.r).buffer) })
        }
      Safetensors.write(path.join(ctx.outputs.adapter, "adapter_model.safetensors"), tensors, { format: "pt" })
      fs.writeFileSync(
        path.join(ctx.outputs.adapter, "adapter_config.json"),
        JSON.stringify(
          {
            peft_type: "LORA",
            task_type: "CAUSAL_LM",
            base_model_name_or_path: null,
            r: lora.r,
            lora_alpha: lora.alpha,
            lora_dropout: lora.dropout,
            target_modules: lora.targets,
            bias: "none",
            fan_in_fan_out: false,
            inference_mode: true
          },
          null,
          2
        ) + "\n"
      )
      fs.writeFileSync(ctx.outputs.metrics, JSON.stringify({ step: 0, trained: false, note: "initial adapter; the native trainer arrives with #4" }) + "\n")
      yield* ctx.log(`initial PEFT adapter: ${tensors.length} tensors, r=${lora.r}`)
    })
})

export { PROJ_DIMS }
