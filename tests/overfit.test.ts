/**
 * Overfit, end to end through the native trainer: a handful of tool-call
 * conversations rendered with the chat template, tokenized with the real
 * tokenizer, trained on the tiny model until it memorises them; then greedy
 * decoding from the generation prompt must reproduce each tool call exactly,
 * tool name and arguments (the argument is copied from the user's text).
 */
import { Template } from "@huggingface/jinja"
import { Tokenizer } from "@huggingface/tokenizers"
import * as fs from "node:fs"
import { PROJECTIONS } from "../native/qwen3.ts"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import * as Native from "../native/index.ts"
import { loadQwen3 } from "../stages/lib/checkpoint.ts"
import * as Trainer from "../stages/train/trainer.ts"
import { writeTiny } from "../stages/download/tiny.ts"
import { bundledTokenizerDir, CHAT_TEMPLATE, SPECIAL } from "../stages/lib/qwen3.ts"
import { loadEncoder } from "../stages/tokenize.ts"
import type * as Format from "../stages/tokenize/format.ts"
import { byName, toolSchema } from "../stages/toolcalls/catalogue.ts"

const CASES = [
  { user: "where is order #17628484", tool: "track_order", number: "#17628484" },
  { user: "track purchase #55512034 please", tool: "track_order", number: "#55512034" },
  { user: "I want to cancel order #90021177", tool: "cancel_order", number: "#90021177" }
]

describe("overfitting a few conversations", () => {
  it("reproduces their tool calls exactly by greedy decoding", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "overfit-"))
    writeTiny(path.join(dir, "model"), 2, 3)
    const { config, weights } = loadQwen3(path.join(dir, "model"))
    const base = Trainer.quantizeBase(weights)
    const template = new Template(CHAT_TEMPLATE)
    const tools = [toolSchema(byName.get("track_order")!), toolSchema(byName.get("cancel_order")!)]
    const call = (c: (typeof CASES)[number]) => ({ role: "assistant", content: "", tool_calls: [{ type: "function", function: { name: c.tool, arguments: { order_number: c.number } } }] })
    const { encoder } = await loadEncoder(bundledTokenizerDir())
    const full = await encoder.encodeAll(CASES.map((c) => template.render({ messages: [{ role: "user", content: c.user }, call(c)], tools })))
    const prompts = await encoder.encodeAll(CASES.map((c) => template.render({ messages: [{ role: "user", content: c.user }], tools, add_generation_prompt: true })))
    const offsets = [0]
    for (const e of full) offsets.push(offsets.at(-1)! + e.ids.length)
    const ids = new Uint32Array(offsets.at(-1)!)
    const mask = new Uint8Array(offsets.at(-1)!)
    full.forEach((e, i) => (ids.set(e.ids, offsets[i]!), mask.set(e.mask, offsets[i]!)))
    const data = { ids, mask, exampleOffsets: Uint32Array.from(offsets), sequenceOffsets: Uint32Array.from(offsets) } as unknown as Format.Tokenized
    const losses: Array<number> = []
    const { lora } = Trainer.train({
      config,
      weights: base,
      train: data,
      val: data,
      t: { lr: 1e-2, epochs: 1, maxSteps: 80, batchSize: 3, gradAccum: 1, warmupSteps: 5, scheduler: "cosine", weightDecay: 0, maxGradNorm: 1, seed: 1, evalEvery: 1000, evalSamples: 1, checkpointEvery: 0, keepCheckpoints: 1, activationCheckpointing: false },
      lora: { r: 16, alpha: 32, dropout: 0, targets: [...PROJECTIONS] },
      scratch: path.join(dir, "scratch"),
      onEvent: (e) => void (e.type === "step" && losses.push(e.loss))
    })
    expect(losses.at(-1)!).toBeLessThan(losses[0]! / 5)
    const dirTok = bundledTokenizerDir()
    const js = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dirTok, "tokenizer.json"), "utf8")), JSON.parse(fs.readFileSync(path.join(dirTok, "tokenizer_config.json"), "utf8")))
    // greedy decoding with the KV cache (tests/generate.test.ts: the full forward pass's argmax at every step)
    CASES.forEach((c, i) => {
      const generated = Native.qwen3Generate(config, base, lora, prompts[i]!.ids, 48, [SPECIAL.imEnd])
      const text = js.decode(Array.from(generated), { skip_special_tokens: false })
      expect(text).toBe(`<tool_call>\n{"name": "${c.tool}", "arguments": {"order_number": "${c.number}"}}\n</tool_call><|im_end|>`)
    })
  }, 300_000)
})
