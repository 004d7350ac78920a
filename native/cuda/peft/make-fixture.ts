/**
 * Writes native/cuda/peft/fixture/: a micro Qwen3 checkpoint (the tiny model's shapes with a
 * 2,048-token vocabulary, so the whole fixture is ~5 MB and travels to a GPU machine), a LoRA
 * adapter written by our own writer (stages/lib/checkpoint.ts writeAdapter, as the train stage
 * writes it) with non-zero B, a batch of ids and loss masks, and what our CPU backend computes
 * for them: the logits, the loss and every LoRA gradient (raw little-endian fp32).
 *
 * check.py then loads the checkpoint with transformers and the adapter with peft, and compares
 * their logits and their autograd LoRA gradients with ours: the proof that the adapter is
 * PEFT-compatible and that our gradients are PyTorch's. tests/peft-fixture.test.ts regenerates
 * the fixture and checks it equals the committed one, so it cannot drift from the code.
 *
 *   node native/cuda/peft/make-fixture.ts [out dir]
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { qwen3ForwardBackward } from "../../index.ts"
import { PROJECTIONS } from "../../qwen3.ts"
import { loadAdapter, loadQwen3, loraName, writeAdapter } from "../../../stages/lib/checkpoint.ts"
import { tinyConfig } from "../../../stages/download/tiny.ts"
import { Rng } from "../../../stages/lib/rng.ts"
import * as Safetensors from "../../../stages/lib/safetensors.ts"

const VOCAB = 2048
const LAYERS = 2
const R = 4

export const makeFixture = (out: string): void => {
  fs.rmSync(out, { recursive: true, force: true })
  const model = path.join(out, "model")
  fs.mkdirSync(model, { recursive: true })
  const config = { ...tinyConfig(LAYERS), vocab_size: VOCAB, bos_token_id: 0, eos_token_id: 1 }
  fs.writeFileSync(path.join(model, "config.json"), JSON.stringify(config, null, 2) + "\n")
  const rng = new Rng(2026)
  const shapes: Array<[string, Array<number>]> = [["model.embed_tokens.weight", [VOCAB, 256]]]
  for (let i = 0; i < LAYERS; i++) {
    const p = `model.layers.${i}`
    shapes.push(
      [`${p}.input_layernorm.weight`, [256]],
      [`${p}.self_attn.q_proj.weight`, [256, 256]],
      [`${p}.self_attn.k_proj.weight`, [128, 256]],
      [`${p}.self_attn.v_proj.weight`, [128, 256]],
      [`${p}.self_attn.o_proj.weight`, [256, 256]],
      [`${p}.self_attn.q_norm.weight`, [64]],
      [`${p}.self_attn.k_norm.weight`, [64]],
      [`${p}.post_attention_layernorm.weight`, [256]],
      [`${p}.mlp.gate_proj.weight`, [768, 256]],
      [`${p}.mlp.up_proj.weight`, [768, 256]],
      [`${p}.mlp.down_proj.weight`, [256, 768]]
    )
  }
  shapes.push(["model.norm.weight", [256]])
  const tensors = shapes.map(([name, shape]): Safetensors.Tensor => {
    const n = shape.reduce((a, b) => a * b, 1)
    // norms near 1 but not exactly (a norm weight of 1 everywhere would hide a missing multiply)
    const x = Float32Array.from({ length: n }, () => (shape.length === 1 ? 1 + rng.normal() * 0.1 : rng.normal() * (name.includes("embed") ? 0.05 : 0.02)))
    // bf16, as the tiny and the real model ship: both sides widen the same values to fp32
    const bits = Safetensors.toBf16(x)
    return { name, dtype: "BF16", shape, data: new Uint8Array(bits.buffer) }
  })
  Safetensors.write(path.join(model, "model.safetensors"), tensors, { format: "pt" })

  const { config: c, weights } = loadQwen3(model)
  // an adapter as the train stage writes it, with B non-zero so that A's gradients are non-zero
  const empty = loadAdapterShapes(c)
  for (const p of empty.proj) {
    if (!p) continue
    for (let i = 0; i < p.A.length; i++) p.A[i] = (rng.next() * 2 - 1) / 16
    for (let i = 0; i < p.B.length; i++) p.B[i] = rng.normal() * 0.05
  }
  const adapter = path.join(out, "adapter")
  writeAdapter(adapter, c, { r: R, alpha: 8, dropout: 0, targets: [...PROJECTIONS] }, empty, "micro-qwen3")
  const lora = loadAdapter(adapter, c)

  const T = 16
  const ids = [Array.from({ length: T }, (_, i) => (i * 7919 + 13) % VOCAB), Array.from({ length: T }, (_, i) => (i * 104729 + 5) % VOCAB)]
  const mask = [Array.from({ length: T }, (_, i) => (i >= 5 ? 1 : 0)), Array.from({ length: T }, (_, i) => (i % 3 === 0 ? 0 : 1))]
  fs.writeFileSync(path.join(out, "batch.json"), JSON.stringify({ ids, mask }) + "\n")
  const logits = new Float32Array(2 * T * c.vocab)
  const result = qwen3ForwardBackward(c, weights, lora, Int32Array.from(ids.flat()), Uint8Array.from(mask.flat()), 2, T, true, logits)
  const ours = path.join(out, "ours")
  fs.mkdirSync(ours)
  const write = (file: string, a: Float32Array) => fs.writeFileSync(path.join(ours, file), new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
  write("logits.f32", logits)
  const grads: Record<string, string> = {}
  let k = 0
  for (let l = 0; l < c.layers; l++)
    for (const j of PROJECTIONS) {
      const p = lora.proj[k++]!
      for (const [which, g] of [["A", p.dA], ["B", p.dB]] as const) {
        const file = `grad-${l}-${j}-${which}.f32`
        write(file, g)
        grads[loraName(l, j, which)] = file
      }
    }
  fs.writeFileSync(path.join(ours, "manifest.json"), JSON.stringify({ loss: result.loss, logits: "logits.f32", shape: [2, T, c.vocab], grads }, null, 2) + "\n")
}

/** Zero LoRA tensors of the right shapes (rank R on every projection). */
const loadAdapterShapes = (c: ReturnType<typeof loadQwen3>["config"]) => {
  const dir = fs.mkdtempSync(path.join(process.env["TMPDIR"] ?? "/tmp", "peft-shapes-"))
  try {
    const tensors: Array<Safetensors.Tensor> = []
    const io: Record<string, [number, number]> = {
      q_proj: [c.hidden, c.heads * c.headDim], k_proj: [c.hidden, c.kvHeads * c.headDim], v_proj: [c.hidden, c.kvHeads * c.headDim],
      o_proj: [c.heads * c.headDim, c.hidden], gate_proj: [c.hidden, c.intermediate], up_proj: [c.hidden, c.intermediate], down_proj: [c.intermediate, c.hidden]
    }
    for (let l = 0; l < c.layers; l++)
      for (const j of PROJECTIONS) {
        const [inF, outF] = io[j]!
        tensors.push({ name: loraName(l, j, "A"), dtype: "F32", shape: [R, inF], data: new Uint8Array(R * inF * 4) })
        tensors.push({ name: loraName(l, j, "B"), dtype: "F32", shape: [outF, R], data: new Uint8Array(outF * R * 4) })
      }
    Safetensors.write(path.join(dir, "adapter_model.safetensors"), tensors)
    fs.writeFileSync(path.join(dir, "adapter_config.json"), JSON.stringify({ r: R, lora_alpha: 8, target_modules: [...PROJECTIONS] }))
    return loadAdapter(dir, c)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) makeFixture(process.argv[2] ?? path.join(import.meta.dirname, "fixture"))
