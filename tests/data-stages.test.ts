/** toolcalls and tokenize on real data: tool calls never invent arguments; our ids equal the reference tokenizer's. */
import { Template } from "@huggingface/jinja"
import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { parse } from "../stages/lib/csv.ts"
import { bundledTokenizerDir, CHAT_TEMPLATE } from "../stages/lib/qwen3.ts"
import { dialogueFor, type Row } from "../stages/toolcalls/dialogue.ts"
import { dialogueParams, mappingFor, ToolcallsParams } from "../stages/toolcalls.ts"
import { CATALOGUE, toolSchema } from "../stages/toolcalls/catalogue.ts"
import { loadEncoder, MIN_SEQ_LEN, pack } from "../stages/tokenize.ts"
import * as Format from "../stages/tokenize/format.ts"
import * as Schema from "effect/Schema"
import { REPO } from "./helpers.ts"

const params = Schema.decodeUnknownSync(ToolcallsParams)({})
const mapping = mappingFor(params)
const template = new Template(CHAT_TEMPLATE)
const render = (row: Row) => {
  const c = dialogueFor(row, dialogueParams(params), mapping)
  return { ...c, text: template.render({ messages: c.messages, tools: c.tools.length ? c.tools.map(toolSchema) : undefined, add_generation_prompt: false }) }
}

const sampleRows = (): Array<Row> => {
  const [, ...records] = parse(fs.readFileSync(path.join(REPO, "data", "bitext-sample.csv"), "utf8"))
  return records.map((r) => ({ line: r.line, instruction: r.fields[1]!, category: r.fields[2]!, intent: r.fields[3]!, response: r.fields[4]! }))
}

describe("the rendered conversation", () => {
  it("keeps the system turn a few hundred tokens, not the whole catalogue", async () => {
    const { encoder } = await loadEncoder(bundledTokenizerDir())
    const all = template.render({ messages: [{ role: "system", content: "x" }], tools: CATALOGUE.map(toolSchema) })
    const subset = render({ line: 7, intent: "track_order", category: "ORDER", instruction: "where is order #17628484", response: "ok", entities: { "Order Number": "#17628484" } })
    const [whole, one] = await encoder.encodeAll([all, subset.text])
    expect(whole!.ids.length).toBeGreaterThan(1500)
    expect(one!.ids.length).toBeLessThan(1000)
  })
})

describe("the chat template", () => {
  // Expected strings written out by hand from the Qwen3 chat format (DESIGN.md §4), not by the renderer.
  it("renders content null on a turn that only calls tools, and content that is a list, as empty: no crash", () => {
    const text = template.render({
      messages: [
        { role: "system", content: "S" },
        { role: "user", content: [{ type: "text", text: "ignored" }] },
        { role: "assistant", content: null, tool_calls: [{ type: "function", function: { name: "f", arguments: { a: 1 } } }, { name: "g", arguments: "{\"b\": 2}" }] },
        { role: "tool", content: "{\"ok\": true}" },
        { role: "tool", content: null },
        { role: "assistant", content: "done" }
      ],
      add_generation_prompt: true
    })
    expect(text).toBe(
      "<|im_start|>system\nS<|im_end|>\n" +
        "<|im_start|>user\n<|im_end|>\n" +
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": {\"b\": 2}}\n</tool_call><|im_end|>\n" +
        "<|im_start|>user\n<tool_response>\n{\"ok\": true}\n</tool_response>\n<tool_response>\n\n</tool_response><|im_end|>\n" +
        "<|im_start|>assistant\ndone<|im_end|>\n" +
        "<|im_start|>assistant\n"
    )
  })

  it("puts the tools in the system turn, and text before a call on its own line", () => {
    const text = template.render({
      messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "Let me check.", tool_calls: [{ function: { name: "f", arguments: {} } }] }],
      tools: [{ type: "function", function: { name: "f" } }]
    })
    expect(text).toBe(
      "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
        "{\"type\": \"function\", \"function\": {\"name\": \"f\"}}\n</tools>\n\n" +
        "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
        "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" +
        "<|im_start|>user\nhi<|im_end|>\n" +
        "<|im_start|>assistant\nLet me check.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call><|im_end|>\n"
    )
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
