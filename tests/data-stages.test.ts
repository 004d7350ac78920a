/** toolcalls and tokenize on real data: tool calls never invent arguments; our ids equal the reference tokenizer's. */
import { Template } from "@huggingface/jinja"
import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { parse } from "../stages/lib/csv.ts"
import { bundledTokenizerDir, CHAT_TEMPLATE } from "../stages/lib/qwen3.ts"
import { conversationFor, mappingFor, validateMapping, type Row, type ToolcallsParams } from "../stages/toolcalls.ts"
import { CATALOGUE, toolSchema } from "../stages/toolcalls/catalogue.ts"
import { loadEncoder, MIN_SEQ_LEN, pack } from "../stages/tokenize.ts"
import * as Format from "../stages/tokenize/format.ts"
import { REPO } from "./helpers.ts"

const params: ToolcallsParams = { distractors: 3, seed: 42, systemPrompt: "You are a support assistant.", tools: {} }
const mapping = mappingFor(params)
const template = new Template(CHAT_TEMPLATE)
const render = (row: Row) => {
  const c = conversationFor(row, params, mapping)
  return { ...c, text: template.render({ messages: c.messages, tools: c.tools.length ? c.tools.map(toolSchema) : undefined, add_generation_prompt: false }) }
}

const sampleRows = (): Array<Row> => {
  const [, ...records] = parse(fs.readFileSync(path.join(REPO, "data", "bitext-sample.csv"), "utf8"))
  return records.map((r) => ({ line: r.line, instruction: r.fields[1]!, category: r.fields[2]!, intent: r.fields[3]!, response: r.fields[4]! }))
}

describe("toolcalls", () => {
  const row = (intent: string, instruction: string, entities: Record<string, string>): Row => ({ line: 7, intent, category: "X", instruction, response: "Here is what I found.", entities })

  it("calls the intent's tool with arguments found verbatim in the user's turn", () => {
    const c = render(row("track_order", "where is my order #17628484 ?", { "Order Number": "#17628484" }))
    expect(c.kind).toBe("call")
    expect(c.text).toContain('<|im_start|>assistant\n<tool_call>\n{"name": "track_order", "arguments": {"order_number": "#17628484"}}\n</tool_call><|im_end|>')
    expect(c.text).toContain("<|im_start|>user\n<tool_response>\n{")
    expect(c.text.endsWith("<|im_start|>assistant\nHere is what I found.<|im_end|>\n")).toBe(true)
    expect(c.text).not.toContain("<think>")
    expect(c.tools).toHaveLength(4)
    expect(c.tools.map((t) => t.name)).toContain("track_order")
  })

  it("asks instead of calling when a required argument was not given, and never invents one", () => {
    const noNumber = render(row("get_refund", "I want my money back", {}))
    expect(noNumber.kind).toBe("clarify")
    expect(noNumber.text).not.toContain("assistant\n<tool_call>")
    // the value exists in the row, but only in the response: the user did not say it
    const onlyInResponse = render(row("get_refund", "refund please", { "Order Number": "#555" }))
    expect(onlyInResponse.kind).toBe("clarify")
  })

  it("takes enumerated arguments from the intent's mapping and answers without a tool when mapped to none", () => {
    expect(render(row("check_refund_policy", "what is your refund policy", {})).messages[2]!.tool_calls?.[0]?.function).toEqual({ name: "get_policy", arguments: { topic: "refund" } })
    const custom = mappingFor({ ...params, tools: { review: null } })
    const c = conversationFor(row("review", "great service", {}), params, custom)
    expect(c.kind).toBe("answer")
    expect(c.tools.map((t) => t.name)).not.toContain("create_ticket")
    expect(c.tools).toHaveLength(3)
  })

  it("refuses a mapping that names an unknown tool or an argument outside its enum", () => {
    expect(validateMapping(mappingFor({ ...params, tools: { review: { tool: "nope" } } }))).toMatch(/toolcalls\.tools\.review: no tool named nope/)
    expect(validateMapping(mappingFor({ ...params, tools: { review: { tool: "get_policy", args: { topic: "weather" } } } }))).toMatch(/weather is not one of/)
    expect(validateMapping(mapping)).toBeUndefined()
  })

  it("covers every intent of the dataset, deterministically", () => {
    const rows = sampleRows()
    for (const r of rows) expect(mapping, r.intent).toHaveProperty(r.intent)
    expect(render(rows[0]!).text).toBe(render(rows[0]!).text)
    const other = conversationFor(rows[0]!, { ...params, seed: 7 }, mapping)
    expect(other.tools.map((t) => t.name)).not.toEqual(conversationFor(rows[0]!, params, mapping).tools.map((t) => t.name))
  })

  it("keeps the system turn a few hundred tokens, not the whole catalogue", async () => {
    const { encoder } = await loadEncoder(bundledTokenizerDir())
    const all = template.render({ messages: [{ role: "system", content: "x" }], tools: CATALOGUE.map(toolSchema) })
    const subset = render(row("track_order", "order #1", { "Order Number": "#1" }))
    const [whole, one] = await encoder.encodeAll([all, subset.text])
    expect(whole!.ids.length).toBeGreaterThan(1500)
    expect(one!.ids.length).toBeLessThan(600)
  })
})

describe("tokenize", () => {
  it("refuses no maxSeqLen a conversation could fit in: every sample row rendered bare is longer than MIN_SEQ_LEN", async () => {
    const { encoder } = await loadEncoder(bundledTokenizerDir())
    // the shortest conversation toolcalls can make of a row: no system prompt, no tools
    const bare = sampleRows().map((r) =>
      template.render({ messages: [{ role: "system", content: "" }, { role: "user", content: r.instruction }, { role: "assistant", content: r.response }], add_generation_prompt: false })
    )
    const shortest = Math.min(...(await encoder.encodeAll(bare)).map((e) => e.ids.length))
    expect(shortest).toBeGreaterThan(MIN_SEQ_LEN)
  })

  it("gives exactly the ids of the reference tokenizer on every sample row, and trains only on assistant turns", async () => {
    const dir = bundledTokenizerDir()
    const js = new JsTokenizer(JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")), JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")))
    const { encoder } = await loadEncoder(dir)
    const texts = sampleRows().map((r) => render(r).text)
    // a few edge cases: content that starts with a newline or spaces, unicode, empty content
    texts.push(
      template.render({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "\n\n  indented answer" }] }),
      template.render({ messages: [{ role: "user", content: "café  naïve 東京\n\n\n  x" }, { role: "assistant", content: " spaced\n\tand tabbed\r\n" }] }),
      template.render({ messages: [{ role: "user", content: "" }, { role: "assistant", content: "" }] })
    )
    const ours = await encoder.encodeAll(texts)
    texts.forEach((t, i) => {
      const ref = js.encode(t, { add_special_tokens: false }).ids
      expect(Array.from(ours[i]!.ids), `row ${i}`).toEqual(ref)
      // the trained tokens decode to the assistant turns' content, each closed by <|im_end|>
      const trained = Array.from(ours[i]!.ids).filter((_, k) => ours[i]!.mask[k] === 1)
      // (a leading newline run of the content merges with the header's newline into one
      // token, which belongs to the header: that whitespace is not trained on)
      const expected = [...t.matchAll(/<\|im_start\|>assistant\n(?:\n*)([\s\S]*?<\|im_end\|>)/g)].map((m) => m[1]).join("")
      expect(js.decode(trained, { skip_special_tokens: false }), `row ${i}`).toBe(expected)
    })
  }, 120_000)

  it("writes and reads the binary format, and packs in order", () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "tok-")), "t.bin")
    const t: Format.Tokenized = {
      header: { format: 1, tokenizer: { digest: "d", vocabSize: 10, modelVocabSize: 12 }, special: { imEnd: 9 }, maxSeqLen: 8, packing: true, tokens: 5, examples: 2, sequences: 1 },
      ids: Uint32Array.from([1, 2, 3, 4, 5]),
      mask: Uint8Array.from([0, 1, 1, 0, 1]),
      exampleOffsets: Uint32Array.from([0, 3, 5]),
      sequenceOffsets: Uint32Array.from([0, 5])
    }
    Format.write(file, t)
    const back = Format.read(file)
    expect(back).toEqual(t)
    expect(pack([3, 2, 4, 8, 1], 8)).toEqual([0, 5, 9, 17, 18])
  })
})
