/**
 * Writes a random Qwen3 of about 1 GB (hidden 1024, 22 layers, the real 151,936-token vocabulary,
 * bf16) and a rank-8 adapter on q/v, for the export benchmark. usage: make-model.ts DIR
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { loraSlots } from "../../native/qwen3.ts"
import { checkpointTensors, readConfig, writeAdapter } from "../../stages/lib/checkpoint.ts"
import { writeTokenizerFiles } from "../../stages/lib/qwen3.ts"
import * as Safetensors from "../../stages/lib/safetensors.ts"
import { Rng } from "../../stages/lib/rng.ts"

const dir = process.argv[2]!
const model = path.join(dir, "model")
fs.mkdirSync(model, { recursive: true })
const config = {
  architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 8, num_key_value_heads: 8,
  head_dim: 128, num_hidden_layers: 22, vocab_size: 151936, max_position_embeddings: 40960, rope_theta: 1000000, rms_norm_eps: 1e-6,
  tie_word_embeddings: true, hidden_act: "silu", torch_dtype: "bfloat16", bos_token_id: 151643, eos_token_id: 151645
}
fs.writeFileSync(path.join(model, "config.json"), JSON.stringify(config, null, 2) + "\n")
writeTokenizerFiles(model)
const c = readConfig(model)
const rng = new Rng(1)
const tensors = [...checkpointTensors(c)].map(([name, shape]) => {
  const n = shape.reduce((a, b) => a * b, 1)
  const x = new Float32Array(n)
  for (let i = 0; i < n; i++) x[i] = shape.length === 1 ? 1 : (rng.next() - 0.5) * 0.04
  const bits = Safetensors.toBf16(x)
  return { name, dtype: "BF16" as const, shape, data: new Uint8Array(bits.buffer) }
})
Safetensors.write(path.join(model, "model.safetensors"), tensors, { format: "pt" })
const proj = loraSlots(c, ["q_proj", "v_proj"], (_l, _j, s) => ({
  A: Float32Array.from({ length: 8 * s.in }, () => rng.normal() * 0.01),
  B: Float32Array.from({ length: s.out * 8 }, () => rng.normal() * 0.01),
  dA: new Float32Array(0),
  dB: new Float32Array(0)
}))
writeAdapter(path.join(dir, "adapter"), c, { r: 8, alpha: 16, dropout: 0, targets: ["q_proj", "v_proj"] }, { rank: 8, scale: 2, proj }, null)
console.log(fs.statSync(path.join(model, "model.safetensors")).size)
