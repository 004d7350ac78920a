/**
 * Greedy decoding with a KV cache (the eval stage's generation): each token it picks is the
 * argmax of the full forward pass over everything before it, with and without an adapter.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { qwen3ForwardBackward, qwen3Generate } from "../native/index.ts"
import { loraSlots, type LoraTensors } from "../native/qwen3.ts"
import { writeTiny } from "../stages/download/tiny.ts"
import { loadQwen3 } from "../stages/lib/checkpoint.ts"
import { Rng } from "../stages/lib/rng.ts"

describe("greedy decoding with a KV cache", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gen-"))
  writeTiny(dir, 2, 21)
  const { config, weights } = loadQwen3(dir)
  fs.rmSync(dir, { recursive: true, force: true })
  const rng = new Rng(8)
  const adapter: LoraTensors = {
    rank: 4,
    scale: 2,
    proj: loraSlots(config, ["q_proj", "v_proj", "gate_proj", "down_proj"], (_l, _j, s) => ({
      A: Float32Array.from({ length: 4 * s.in }, () => rng.normal() * 0.1),
      B: Float32Array.from({ length: s.out * 4 }, () => rng.normal() * 0.1),
      dA: new Float32Array(4 * s.in), // the full forward pass checks their sizes; generation never reads them
      dB: new Float32Array(s.out * 4)
    }))
  }
  const none: LoraTensors = { rank: 1, scale: 0, proj: Array.from({ length: config.layers * 7 }, () => null) }
  const prompt = [151644, 872, 198, 40, 1366, 311, 9121, 1973, 671, 16, 17, 18, 151645, 198, 151644, 77091, 198]

  for (const [name, lora] of [["the base", none], ["an adapter", adapter]] as const)
    it(`picks the full forward pass's argmax at every step (${name})`, () => {
      const got = Array.from(qwen3Generate(config, weights, lora, prompt, 12, []))
      expect(got.length).toBe(12)
      const seq = [...prompt]
      for (const tok of got) {
        const T = seq.length
        const logits = new Float32Array(T * config.vocab)
        qwen3ForwardBackward(config, weights, lora, Int32Array.from(seq), new Uint8Array(T), 1, T, false, logits)
        const row = logits.subarray((T - 1) * config.vocab)
        let best = 0
        for (let v = 1; v < config.vocab; v++) if (row[v]! > row[best]!) best = v
        // the same token, or one whose logit ties the best within float rounding
        expect(row[best]! - row[tok]!, `step ${seq.length - prompt.length}`).toBeLessThan(1e-4)
        seq.push(tok)
      }
    })

  it("stops after a stop token, which it includes, and refuses tokens outside the vocabulary", () => {
    const free = Array.from(qwen3Generate(config, weights, none, prompt, 6, []))
    const stop = free[2]!
    const cut = Array.from(qwen3Generate(config, weights, none, prompt, 6, [stop]))
    expect(cut).toEqual(free.slice(0, free.indexOf(stop) + 1))
    expect(() => qwen3Generate(config, weights, none, [config.vocab], 2, [])).toThrow(/outside the vocabulary/)
  })
})
