/**
 * The tiny Qwen3 the demo trains: the architecture of Qwen3 at a size that
 * trains in seconds on a CPU (hidden 256, intermediate 768, 4 heads of 64, 2
 * KV heads, 2–4 layers), the real vocabulary and tokenizer, the Instruct
 * (non-thinking) chat template, and seeded random weights in bf16.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { writeTokenizerFiles } from "../lib/qwen3.ts"
import { Rng } from "../lib/rng.ts"
import * as Safetensors from "../lib/safetensors.ts"

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
  tinyTensors(layers).reduce((a, t) => a + 2 * t.shape.reduce((x, y) => x * y, 1), 0) + 11_500_000 // + tokenizer.json

export const writeTiny = (dir: string, layers: number, seed: number) => {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(tinyConfig(layers), null, 2) + "\n")
  fs.writeFileSync(
    path.join(dir, "generation_config.json"),
    JSON.stringify({ bos_token_id: 151643, eos_token_id: [151645, 151643], pad_token_id: 151643, do_sample: false }, null, 2) + "\n"
  )
  // the real Qwen3 tokenizer and the Instruct (non-thinking) chat template
  writeTokenizerFiles(dir)
  const rng = new Rng(seed)
  const tensors = tinyTensors(layers).map(({ name, shape }) => {
    const n = shape.reduce((x, y) => x * y, 1)
    const x = new Float32Array(n)
    if (shape.length === 1) x.fill(1)
    else {
      // The embedding doubles as the output head: with std 0.02 the logits of a width-256
      // model span ±0.3 and every distribution is near uniform; std 0.05 gives logits more of the
      // range a trained model's have, so a short demo run can show learning.
      const std = name === "model.embed_tokens.weight" ? 0.05 : 0.02
      for (let i = 0; i < n; i++) x[i] = rng.normal() * std
    }
    const bits = Safetensors.toBf16(x)
    return { name, dtype: "BF16" as const, shape, data: new Uint8Array(bits.buffer) }
  })
  Safetensors.write(path.join(dir, "model.safetensors"), tensors, { format: "pt" })
}
