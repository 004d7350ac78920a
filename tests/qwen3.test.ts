/**
 * Golden test of the native Qwen3 forward/backward, in the way of llm.c: an
 * independent PyTorch implementation (tests/golden/qwen3_ref.py, Debian's
 * python3-torch) computes logits, loss and LoRA gradients for a batch of the
 * tiny model with a random adapter; ours must match in fp32 within 1e-4
 * relative (logits, loss) and 1e-3 relative per gradient tensor (relative L2
 * norm of the difference). Both sides accumulate in fp32 in different orders,
 * so exact equality is not expected; these bounds are ~100× the differences
 * seen. It fails, rather than skips, under CI=true when torch is missing.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { createRequire } from "node:module"
import { addonPath, qwen3ForwardBackward } from "../native/index.ts"
import { PROJECTIONS } from "../native/qwen3.ts"
import { CheckpointError, loadAdapter, loadQwen3, loraName } from "../stages/lib/checkpoint.ts"
import { writeTiny } from "../stages/download/tiny.ts"
import { Rng } from "../stages/lib/rng.ts"
import * as Safetensors from "../stages/lib/safetensors.ts"
import { relL2, REPO } from "./helpers.ts"

const PYTHON = "/usr/bin/python3"
const hasTorch = spawnSync(PYTHON, ["-c", "import torch"]).status === 0
if (!hasTorch && process.env["CI"] === "true") throw new Error("python3-torch is required under CI=true (.ci/run installs it)")


const fixture = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qwen3-golden-"))
  const model = path.join(dir, "model")
  writeTiny(model, 2, 7)
  const adapter = path.join(dir, "adapter")
  fs.mkdirSync(adapter)
  const { config } = loadQwen3(model)
  const r = 4
  const rng = new Rng(11)
  const HD = config.heads * config.headDim
  const KD = config.kvHeads * config.headDim
  const io = { q_proj: [256, HD], k_proj: [256, KD], v_proj: [256, KD], o_proj: [HD, 256], gate_proj: [256, 768], up_proj: [256, 768], down_proj: [768, 256] } as const
  const tensors: Array<Safetensors.Tensor> = []
  for (let l = 0; l < config.layers; l++)
    for (const j of PROJECTIONS) {
      const [inF, outF] = io[j]
      // B non-zero so that gradients reach A too
      const A = Float32Array.from({ length: r * inF }, () => (rng.next() * 2 - 1) / Math.sqrt(inF))
      const B = Float32Array.from({ length: outF * r }, () => rng.normal() * 0.05)
      tensors.push({ name: loraName(l, j, "A"), dtype: "F32", shape: [r, inF], data: new Uint8Array(A.buffer) })
      tensors.push({ name: loraName(l, j, "B"), dtype: "F32", shape: [outF, r], data: new Uint8Array(B.buffer) })
    }
  Safetensors.write(path.join(adapter, "adapter_model.safetensors"), tensors)
  fs.writeFileSync(path.join(adapter, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r, lora_alpha: 8, target_modules: [...PROJECTIONS] }))
  const T = 12
  const ids = [Array.from({ length: T }, (_, i) => (i * 7919 + 13) % 151669), Array.from({ length: T }, (_, i) => (i * 104729 + 5) % 151669)]
  const mask = [Array.from({ length: T }, (_, i) => (i >= 4 ? 1 : 0)), Array.from({ length: T }, (_, i) => (i % 3 === 0 ? 0 : 1))]
  fs.writeFileSync(path.join(dir, "batch.json"), JSON.stringify({ ids, mask }))
  return { dir, model, adapter, ids, mask, T }
}

describe("native Qwen3 forward/backward", () => {
  it.skipIf(!hasTorch)("matches the PyTorch reference: logits, loss and LoRA gradients", () => {
    const f = fixture()
    const ref = spawnSync(PYTHON, [path.join(REPO, "tests", "golden", "qwen3_ref.py"), f.model, f.adapter, path.join(f.dir, "batch.json"), path.join(f.dir, "ref")], { encoding: "utf8" })
    expect(ref.status, ref.stderr).toBe(0)
    const manifest = JSON.parse(fs.readFileSync(path.join(f.dir, "ref", "manifest.json"), "utf8")) as {
      loss: number
      logits: { file: string }
      grads: Record<string, { file: string }>
    }
    const readF32 = (file: string) => {
      const b = fs.readFileSync(path.join(f.dir, "ref", file))
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))
    }
    const { config, weights } = loadQwen3(f.model)
    const lora = loadAdapter(f.adapter, config)
    const logits = new Float32Array(2 * f.T * config.vocab)
    const out = qwen3ForwardBackward(config, weights, lora, Int32Array.from(f.ids.flat()), Uint8Array.from(f.mask.flat()), 2, f.T, true, logits)
    expect(Math.abs(out.loss - manifest.loss) / manifest.loss).toBeLessThan(1e-4)
    expect(relL2(logits, readF32(manifest.logits.file))).toBeLessThan(1e-4)
    let k = 0
    for (let l = 0; l < config.layers; l++)
      for (const j of PROJECTIONS) {
        const p = lora.proj[k++]!
        for (const [which, ours] of [["A", p.dA], ["B", p.dB]] as const) {
          const name = loraName(l, j, which)
          const theirs = readF32(manifest.grads[name]!.file)
          if (process.env["GOLDEN_DEBUG"]) console.log(name.replace("base_model.model.model.", ""), relL2(ours, theirs).toExponential(2))
          else expect(relL2(ours, theirs), name).toBeLessThan(1e-3)
        }
      }
  }, 120_000)

  it("agrees with finite differences through every projection of every layer", () => {
    const f = fixture()
    const { config, weights } = loadQwen3(f.model)
    const lora = loadAdapter(f.adapter, config)
    const ids = Int32Array.from(f.ids.flat())
    const mask = Uint8Array.from(f.mask.flat())
    qwen3ForwardBackward(config, weights, lora, ids, mask, 2, f.T, true)
    const loss = () => qwen3ForwardBackward(config, weights, lora, ids, mask, 2, f.T, false).loss
    // central differences in fp32: eps large enough that the loss change (~1e-4)
    // stands well above fp32 rounding of a loss near 12 (~1e-6)
    const eps = 1e-2
    let checked = 0
    lora.proj.forEach((p, k) => {
      for (const [param, grad] of [[p!.A, p!.dA], [p!.B, p!.dB]] as const) {
        // the element with the largest gradient: its difference is the best resolved
        let at = 0
        for (let i = 1; i < grad.length; i++) if (Math.abs(grad[i]!) > Math.abs(grad[at]!)) at = i
        const old = param[at]!
        param[at] = old + eps
        const up = loss()
        param[at] = old - eps
        const down = loss()
        param[at] = old
        const numeric = (up - down) / (2 * eps)
        expect(Math.abs(numeric - grad[at]!), `proj ${k} element ${at}: numeric ${numeric}, analytic ${grad[at]}`).toBeLessThan(0.05 * Math.abs(grad[at]!) + 2e-4)
        checked++
      }
    })
    expect(checked).toBe(config.layers * 7 * 2)
  }, 120_000)

  it("applies LoRA dropout in training only, from its seed: fast path equal to the reference, scaled by 1/(1-p)", () => {
    const f = fixture()
    const { config, weights } = loadQwen3(f.model)
    const ids = Int32Array.from(f.ids.flat())
    const mask = Uint8Array.from(f.mask.flat())
    const ref = (createRequire(import.meta.url)(addonPath) as { qwen3ForwardBackwardRef: typeof qwen3ForwardBackward }).qwen3ForwardBackwardRef
    const run = (fb: typeof qwen3ForwardBackward, dropout: number, seed: number, backward = true) => {
      const lora = { ...loadAdapter(f.adapter, config), dropout, seed }
      const loss = fb(config, weights, lora, ids, mask, 2, f.T, backward).loss
      return { loss, dA: lora.proj[0]!.dA, dB: lora.proj[0]!.dB }
    }
    const none = run(qwen3ForwardBackward, 0, 1)
    const a = run(qwen3ForwardBackward, 0.3, 1)
    const again = run(qwen3ForwardBackward, 0.3, 1)
    const other = run(qwen3ForwardBackward, 0.3, 2)
    expect(a.loss).not.toBe(none.loss)
    expect(again.loss).toBe(a.loss)
    expect(Array.from(again.dA)).toEqual(Array.from(a.dA))
    expect(other.loss).not.toBe(a.loss)
    // evaluation (no backward) never drops
    expect(run(qwen3ForwardBackward, 0.3, 1, false).loss).toBe(run(qwen3ForwardBackward, 0, 1, false).loss)
    const r = run(ref, 0.3, 1)
    expect(Math.abs(r.loss - a.loss) / a.loss).toBeLessThan(1e-5)
    expect(relL2(a.dA, r.dA)).toBeLessThan(1e-4)
    expect(relL2(a.dB, r.dB)).toBeLessThan(1e-4)
  }, 120_000)

  it("gives the same bytes with activation checkpointing (layers recomputed in backward)", () => {
    const f = fixture()
    const { config, weights } = loadQwen3(f.model)
    const ids = Int32Array.from(f.ids.flat())
    const mask = Uint8Array.from(f.mask.flat())
    const run = (activationCheckpointing: boolean) => {
      const lora = { ...loadAdapter(f.adapter, config), dropout: 0.1, seed: 3 }
      const loss = qwen3ForwardBackward({ ...config, activationCheckpointing }, weights, lora, ids, mask, 2, f.T, true).loss
      return { loss, grads: lora.proj.flatMap((p) => [Buffer.from(p!.dA.buffer), Buffer.from(p!.dB.buffer)]) }
    }
    const plain = run(false)
    const recomputed = run(true)
    expect(recomputed.loss).toBe(plain.loss)
    recomputed.grads.forEach((g, i) => expect(g.equals(plain.grads[i]!)).toBe(true))
  }, 120_000)

  it("refuses a checkpoint whose shapes disagree with its config, naming the tensor", () => {
    const f = fixture()
    const cfg = JSON.parse(fs.readFileSync(path.join(f.model, "config.json"), "utf8"))
    fs.writeFileSync(path.join(f.model, "config.json"), JSON.stringify({ ...cfg, intermediate_size: 512 }))
    expect(() => loadQwen3(f.model)).toThrow(CheckpointError)
    expect(() => loadQwen3(f.model)).toThrow(/model\.safetensors: model\.layers\.0\.mlp\.gate_proj\.weight: shape \[768,256\] does not match the config's \[512,256\]/)
    fs.writeFileSync(path.join(f.model, "model.safetensors"), Buffer.from([1, 2, 3]))
    fs.writeFileSync(path.join(f.model, "config.json"), JSON.stringify(cfg))
    expect(() => loadQwen3(f.model)).toThrow(/bad safetensors header length/)
  })
})
