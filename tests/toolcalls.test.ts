/**
 * toolcalls: conversations that teach the right behaviour.
 *
 * Unit cases for each shape and for argument extraction; the validator caught
 * on crafted bad conversations, one per reason; and, on the bundled sample and
 * on rows written apart from it (tests/fixtures/bitext-unseen.csv: other
 * phrasings, identifier formats and placeholder kinds), the targets
 * measured by checks written here, independently of the stage's validator.
 */
import { Template } from "@huggingface/jinja"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { processCsv } from "../stages/entities/process.ts"
import type { OutputRow } from "../stages/entities/replace.ts"
import { CHAT_TEMPLATE } from "../stages/lib/qwen3.ts"
import { conversationOf, dialogueParams, emptyStats, finishStats, mappingFor, type Stats, ToolcallsParams, validateParams } from "../stages/toolcalls.ts"
import { byName, CATALOGUE } from "../stages/toolcalls/catalogue.ts"
import { type Dialogue, dialogueFor, type Message, type Row } from "../stages/toolcalls/dialogue.ts"
import { candidatesIn } from "../stages/toolcalls/extract.ts"
import { check } from "../stages/toolcalls/validate.ts"
import { REPO } from "./helpers.ts"

const decode = (o: object = {}) => Schema.decodeUnknownSync(ToolcallsParams)(o)
const params = decode()
const mapping = mappingFor(params)
const dp = dialogueParams(params)
const row = (intent: string, instruction: string, entities: Record<string, string> = {}, line = 7, response = "Here is what I found."): Row => ({ line, intent, category: "X", instruction, response, entities })
const callsOf = (d: { messages: ReadonlyArray<Message> }) => d.messages.flatMap((m) => (m.tool_calls ?? []).map((c) => `${c.function.name}(${JSON.stringify(c.function.arguments)})`))
/** the conversation of a row under the first line (of 200) that gives it `shape` */
const withShape = (r: Row, shape: string, o: object = {}): Dialogue => {
  const p = dialogueParams(decode(o))
  for (let line = 1; line < 200; line++) {
    const d = dialogueFor({ ...r, line }, p, mapping)
    if (d.shape === shape) return d
  }
  throw new Error(`no line gives ${shape}`)
}

const rowsOf = (file: string): Array<OutputRow> => {
  const out = processCsv(fs.readFileSync(path.join(REPO, file), "utf8"), { seed: 42, unknownKinds: "infer", maxBadFraction: 0.01 } as never)
  if (out._tag !== "ok") throw new Error(out.message)
  return out.rows as Array<OutputRow>
}

describe("arguments come from the user's words", () => {
  it.each([
    ["getting invoice #85632", "#85632", "invoice"],
    ["I need help to cancel purchase370795561790", "370795561790", "order"],
    ["modify order732201349959", "732201349959", "order"],
    ["download invoice INV-2024-00917", "INV-2024-00917", "invoice"],
    ["could you cancel order no. 55120934 for me", "55120934", "order"],
    ["cancelling order ORD-21332325", "ORD-21332325", "order"],
    ["where is package 1Z8X7Y6W5V43210987", "1Z8X7Y6W5V43210987", "tracking"],
    ["my gift card GC-79734904 doesn't work", "GC-79734904", "other"]
  ])("%s → %s (%s)", (text, value, label) => {
    expect(candidatesIn(text).ids.map((i) => [i.value, i.label])).toEqual([[value, label]])
  })

  it("reads no identifier in amounts, years, phone numbers or plain counts", () => {
    for (const t of ["a refund of $2,616.00", "invoices from 2023", "call +1-800-406-0733", "I bought 3 items 2 weeks ago", "a refund of €12345.00"]) expect(candidatesIn(t).ids, t).toEqual([])
  })

  it("calls with identifiers the user typed as plain text, and with tiers, cities and countries", () => {
    expect(callsOf(withShape(row("get_invoice", "getting invoice #85632"), "call"))).toEqual(['get_invoice({"invoice_number":"#85632"})'])
    expect(callsOf(withShape(row("check_invoice", "I want assistance to look for invoice #85632"), "call"))).toEqual(['check_invoice({"invoice_number":"#85632"})'])
    expect(callsOf(withShape(row("delete_account", "delete a standard account"), "call"))).toEqual(['delete_account({"account_type":"standard"})'])
    expect(callsOf(withShape(row("set_up_shipping_address", "add a shipping address in Lyon France"), "call"))).toEqual(['add_shipping_address({"city":"Lyon","country":"France"})'])
    expect(callsOf(withShape(row("newsletter_subscription", "I need to cancel my damn newsletter subscription"), "call"))).toEqual(['manage_newsletter({"action":"unsubscribe"})'])
    expect(callsOf(withShape(row("newsletter_subscription", "can ya help me receive the newsletter"), "call"))).toEqual(['manage_newsletter({"action":"subscribe"})'])
  })

  it("asks only when the user gave no candidate, and never takes a value the user did not write", () => {
    const asked = withShape(row("get_refund", "refund please", { "Order Number": "#555" }), "clarify")
    expect(asked.messages).toHaveLength(3)
    expect(asked.messages[2]!.content).toMatch(/order number/i)
    // the value exists in the row, but only in the response: the call uses what the user then gives
    const followed = withShape(row("get_refund", "refund please", { "Order Number": "#55512345" }), "clarify-call")
    const given = followed.messages[3]!.content
    const arg = followed.messages[4]!.tool_calls![0]!.function.arguments["order_number"]!
    expect(given).toContain(arg)
    expect(arg).not.toBe("#55512345")
    // a gift card code is not an order number
    const d = withShape(row("payment_issue", "my gift card GC-79734904 doesn't work"), "call")
    expect(callsOf(d)).toEqual(['report_payment_issue({})'])
  })
})

describe("the shapes", () => {
  it("a single call: the answer states the result's values", () => {
    const d = withShape(row("track_order", "where is my order #17628484 ?", { "Order Number": "#17628484" }), "call")
    const result = JSON.parse(d.messages[3]!.content) as Record<string, string>
    const answer = d.messages[4]!.content
    if (result["error"]) expect(answer).toMatch(/couldn't|no order|wasn't able/)
    else {
      expect(answer).toContain(result["estimated_delivery"])
      expect(answer).toContain(result["status"])
    }
    expect(d.tools.map((t) => t.name)).toContain("track_order")
  })

  it("an offer before a destructive action when the user asked how: accepted, or declined with the how-to", () => {
    const r = row("cancel_order", "how do i cancel order #31658052", { "Order Number": "#31658052" })
    const yes = withShape(r, "confirm-call")
    expect(yes.messages.map((m) => m.role)).toEqual(["system", "user", "assistant", "user", "assistant", "tool", "assistant"])
    expect(yes.messages[2]!.content).toMatch(/cancel order #31658052/)
    expect(yes.messages[2]!.tool_calls).toBeUndefined()
    const no = withShape({ ...r, response: "To cancel order #31658052, open 'My Orders' and choose 'Cancel'." }, "confirm-declined", { decline: 1 })
    expect(no.messages.at(-1)!.content).toBe("To cancel order #31658052, open 'My Orders' and choose 'Cancel'.")
    expect(callsOf(no)).toEqual([])
    // an order to act is not asked about
    expect(() => withShape(row("cancel_order", "cancel order #31658052 now", { "Order Number": "#31658052" }), "confirm-call")).toThrow(/no line/)
    // a problem report or a question is not an order to act
    for (const text of ["problem with canceling order #31658052", "I can no longer afford purchase #31658052", "question about canceling order #31658052"])
      expect(withShape(row("cancel_order", text, { "Order Number": "#31658052" }), "confirm-call").messages[2]!.tool_calls, text).toBeUndefined()
    const del = withShape(row("delete_account", "problem with standard acount deletions"), "confirm-call")
    expect(del.messages[2]!.content).toMatch(/\?$/)
    const unsub = withShape(row("newsletter_subscription", "tell me about unsubscribing to ur newsletter"), "confirm-call")
    expect(callsOf(unsub)).toEqual(['manage_newsletter({"action":"unsubscribe"})'])
    // subscribing needs no offer
    expect(() => withShape(row("newsletter_subscription", "tell me about signing up to ur newsletter"), "confirm-call")).toThrow(/no line/)
  })

  it("parallel calls: both orders the user named, each result stated", () => {
    const d = withShape(row("cancel_order", "pls cancel both my orders #4471229 and #4471230"), "parallel")
    expect(callsOf(d)).toEqual(['cancel_order({"order_number":"#4471229"})', 'cancel_order({"order_number":"#4471230"})'])
    expect(d.messages.filter((m) => m.role === "tool")).toHaveLength(2)
    const answer = d.messages.at(-1)!.content
    expect(answer).toContain("#4471229")
    expect(answer).toContain("#4471230")
  })

  it("error results: the answer says what went wrong and never claims success", () => {
    const d = withShape(row("cancel_order", "cancel order #31658052 now", { "Order Number": "#31658052" }), "call", { errors: 1 })
    const result = JSON.parse(d.messages[3]!.content) as Record<string, string>
    expect(["not_found", "not_allowed"]).toContain(result["error"])
    const answer = d.messages[4]!.content
    expect(answer).not.toMatch(/has been cancelled|is cancelled|I've cancelled/)
    if (result["error"] === "not_allowed") expect(answer).toContain(result["shipped_on"])
  })

  it("no tool: only tools unrelated to the request are offered, and the answer is the dataset's, grounded", () => {
    const d = withShape(row("track_order", "i have got to locate order #82980552", {}, 7, "You can see order #82980552 under 'Order History'."), "no-tool", { noTool: 1 })
    expect(d.tools.map((t) => t.group)).not.toContain("order-status")
    expect(d.messages.at(-1)!.content).toBe("You can see order #82980552 under 'Order History'.")
    // a response quoting what the conversation does not hold is never chosen as the answer
    const ungrounded = withShape(row("track_order", "where is my order", {}, 7, "Call +1-800-555-0199 for help."), "clarify", { noTool: 1, followUp: 0 })
    expect(ungrounded.messages.at(-1)!.content).not.toContain("555-0199")
  })

  it("out of scope: a refusal that names the company and offers what it can do", () => {
    const d = withShape(row("track_order", "where is my order"), "out-of-scope", { outOfScope: 1 })
    expect(callsOf(d)).toEqual([])
    expect(d.messages[2]!.content).toContain("Summit Goods")
  })

  it("offers confusable tools first, and a varying number of them", () => {
    const counts = new Set<number>()
    let withNeighbour = 0
    for (let line = 1; line <= 200; line++) {
      const d = dialogueFor(row("track_refund", "refund of order #12345678", {}, line), dp, mapping)
      if (d.shape === "out-of-scope" || d.shape === "no-tool") continue
      counts.add(d.tools.length)
      if (d.tools.some((t) => t.name === "get_refund")) withNeighbour++
    }
    expect(counts.size).toBeGreaterThanOrEqual(3)
    expect(withNeighbour).toBeGreaterThan(100)
  })

  it("refuses params that cannot work", () => {
    expect(validateParams(params, mappingFor({ ...params, tools: { review: { tool: "nope" } } }))).toMatch(/toolcalls\.tools\.review: no tool named nope/)
    expect(validateParams(params, mappingFor({ ...params, tools: { review: { tool: "get_policy", args: { topic: "weather" } } } }))).toMatch(/weather is not one of/)
    expect(validateParams({ ...params, minDistractors: 5, distractors: 2 }, mapping)).toMatch(/minDistractors 5 is above toolcalls\.distractors 2/)
    expect(validateParams({ ...params, systemPrompt: "Hi from {brand}" }, mapping)).toMatch(/unknown slot \{brand\}/)
    expect(validateParams(params, mapping)).toBeUndefined()
  })
})

describe("the validator catches each kind of wrong", () => {
  const system: Message = { role: "system", content: "You are the assistant of Summit Goods. Support phone: +1-800-555-0134" }
  const tools = [byName.get("track_order")!, byName.get("cancel_order")!]
  const call = (name: string, args: Record<string, string>): Message => ({ role: "assistant", content: "", tool_calls: [{ type: "function", function: { name, arguments: args } }] })
  const good: Array<Message> = [
    system,
    { role: "user", content: "where is order #12345678" },
    call("track_order", { order_number: "#12345678" }),
    { role: "tool", content: JSON.stringify({ order_number: "#12345678", status: "shipped", carrier: "UPS", estimated_delivery: "June 4, 2026" }) },
    { role: "assistant", content: "Order #12345678 has shipped with UPS; it should arrive by June 4, 2026." }
  ]
  const d = (messages: Array<Message>, shape: Dialogue["shape"] = "call"): Dialogue => ({ shape, tool: "track_order", messages, tools })
  const replace = (i: number, m: Message) => good.map((x, k) => (k === i ? m : x))

  it("keeps a good conversation", () => expect(check(d(good))).toBeUndefined())

  it.each([
    ["format", replace(2, call("get_refund", { order_number: "#12345678" })), "not offered"],
    ["format", replace(2, call("track_order", { order: "#12345678" })), "no argument order"],
    ["format", replace(2, call("track_order", {})), "required order_number missing"],
    ["format", replace(3, { role: "tool", content: "shipped" }), "not a JSON object"],
    ["leak", replace(1, { role: "user", content: "where is order #12345678 [[Order Number]]" }), "[["],
    ["leak", replace(4, { role: "assistant", content: "<think>hmm</think> Order #12345678 has shipped with UPS by June 4, 2026." }), "<think>"],
    ["leak", replace(4, { role: "assistant", content: "Order #12345678 VALUE123 has shipped with UPS by June 4, 2026." }), "VALUE123"],
    ["provenance", replace(2, call("track_order", { order_number: "#87654321" })), "#87654321 is in no user turn"],
    ["ungrounded", replace(4, { role: "assistant", content: "Order #12345678 has shipped with UPS by June 4, 2026. Questions? Call +1-800-555-0199." }), "+1-800-555-0199"],
    ["ungrounded", replace(4, { role: "assistant", content: "Order #12345678 has shipped with UPS by June 4, 2026; returns are free for 30 days." }), "30 days"],
    ["ungrounded", replace(4, { role: "assistant", content: "Order #12345678 has shipped with UPS by June 4, 2026. Visit https://www.summitgoods.com/returns." }), "summitgoods.com/returns"],
    ["ignores-result", replace(4, { role: "assistant", content: "Thank you for your patience with order #12345678." }), "states none of"],
    ["contradicts-result", replace(4, { role: "assistant", content: "Order #12345678 is out for delivery with UPS, arriving June 4, 2026." }), 'does not say "shipped"'],
    ["contradicts-result", replace(4, { role: "assistant", content: "Order #12345678 has shipped with UPS but is still processing; June 4, 2026." }), '"processing"'],
    ["contradicts-result", replace(4, { role: "assistant", content: "Unfortunately order #12345678 has shipped with UPS, June 4, 2026." }), "Unfortunately"]
  ])("%s: %#", (reason, messages, detail) => {
    const p = check(d(messages))
    expect(p?.reason).toBe(reason)
    expect(p?.detail).toContain(detail)
  })

  it("clarification: asking for what the user already wrote", () => {
    const p = check(d([system, { role: "user", content: "where is order #12345678" }, { role: "assistant", content: "Could you share the order number?" }], "clarify"))
    expect(p).toEqual({ reason: "clarification", detail: "asks for order_number though the user gave #12345678" })
  })

  it("an error result answered as a success", () => {
    const messages = [...good.slice(0, 3), { role: "tool", content: JSON.stringify({ error: "not_found", message: "No order with the number #12345678 was found." }) } as Message, { role: "assistant", content: "Order #12345678 has been cancelled." } as Message]
    expect(check(d(messages))?.reason).toBe("ignores-result")
  })
})

/** The targets, measured with checks written here rather than the stage's validator. */
const measure = (rows: ReadonlyArray<OutputRow>) => {
  const stats: Stats = emptyStats()
  const kept: Array<Dialogue & { readonly line: number }> = []
  for (const r of rows) {
    const d = conversationOf(r, dp, mapping, stats)
    if (d) kept.push({ ...d, line: r.line })
  }
  finishStats(stats)
  const problems: Array<string> = []
  let answersAfterResult = 0
  let statingAValue = 0
  for (const d of kept) {
    const ms = d.messages
    // 1. no clarification when the user's turn holds an identifier (# + digits, XX-digits, 5+ digits)
    if (d.shape === "clarify" || d.shape === "clarify-call") {
      const spec = byName.get(d.tool!)!
      const wantsId = spec.required.some((a) => spec.args[a]!.id !== undefined)
      const id = /#\w*\d|\b[A-Z]{2,4}-\d|\b\d{5,}\b/.exec(ms[1]!.content)
      if (wantsId && id && !/(tracking|gift|card|coupon)\W*\w*\W*$/i.test(ms[1]!.content.slice(0, id.index))) problems.push(`line ${d.line}: asks though the user wrote ${id[0]}`)
    }
    // 2. contact details and identifiers in assistant turns appear in the turns before
    let context = ""
    for (const m of ms) {
      if (m.role === "assistant") {
        for (const f of m.content.match(/https?:\/\/[^\s);]+[^\s).,;:]|[\w.+-]+@[\w-]+\.\w+|\+\d[\d -]{8,}\d|#\d{4,}|\b(?:INV|ORD)-[\d-]+\b|[$€£]\d[\d,]*\.\d\d/g) ?? [])
          if (!context.includes(f)) problems.push(`line ${d.line}: ${f} not in the context`)
      } else context += "\n" + m.content
    }
    // 3. the answer after results states a value of each result that is not an argument
    for (let i = 0; i < ms.length; i++) {
      if (!ms[i]!.tool_calls) continue
      const results = ms.slice(i + 1).filter((m, k, all) => m.role === "tool" && all.slice(0, k).every((x) => x.role === "tool"))
      const answer = ms[i + 1 + results.length]!.content
      const args = new Set(ms[i]!.tool_calls!.flatMap((c) => Object.values(c.function.arguments)))
      for (const r of results) {
        answersAfterResult++
        const values = JSON.stringify(JSON.parse(r.content)).match(/"[^"]*"|\d+/g)!.map((v) => v.replace(/^"|"$/g, "")).filter((v) => v.length > 1 && !args.has(v) && !/^[a-z_]+$/.test(v))
        const stated = values.some((v) => answer.includes(v))
        if (stated || /"error"/.test(r.content)) statingAValue++
        else problems.push(`line ${d.line}: the answer states nothing of ${r.content}`)
      }
    }
  }
  return { stats, kept, problems, answersAfterResult, statingAValue }
}

describe.each([
  ["the bundled sample", "data/bitext-sample.csv"],
  ["rows never seen (other phrasings, identifier formats and placeholder kinds)", "tests/fixtures/bitext-unseen.csv"]
])("on %s", (_, file) => {
  const rows = rowsOf(file)
  const m = measure(rows)

  it("drops nothing, and the checks written here find nothing wrong", () => {
    expect(m.stats.examples).toBe(rows.length)
    expect(m.problems).toEqual([])
    expect(m.statingAValue / m.answersAfterResult).toBeGreaterThanOrEqual(0.95)
  })

  it("has the shapes in the issue's proportions", () => {
    expect(m.stats.fractions.multiTurn).toBeGreaterThanOrEqual(0.05)
    expect(m.stats.fractions.noTool).toBeGreaterThanOrEqual(0.1)
    expect(m.stats.fractions.noTool).toBeLessThanOrEqual(0.2)
    if (rows.length > 500) {
      expect(m.stats.fractions.parallel).toBeGreaterThanOrEqual(0.01)
      expect(m.stats.toolsNeverCalled).toEqual([])
    } else expect(m.stats.shapes.parallel).toBeGreaterThanOrEqual(1)
  })

  it("cancels, deletes or unsubscribes only after a plain request or a yes to an offer", () => {
    const ASKING = /\b(how|problem|question|information|info|possible|can i|could i|afford|can't pay|cannot pay|issue|trouble)\b/i
    const YES_ANSWER = /^(yes|please do|sure|ok)\b/i
    for (const d of m.kept)
      d.messages.forEach((mm, i) => {
        for (const c of mm.tool_calls ?? []) {
          const name = c.function.name
          const destructive = ["cancel_order", "delete_account", "switch_account"].includes(name) || (name === "manage_newsletter" && c.function.arguments["action"] === "unsubscribe")
          if (!destructive) continue
          const lastUser = d.messages.slice(0, i).filter((x) => x.role === "user").at(-1)!.content
          const firstUser = d.messages.find((x) => x.role === "user")!.content
          expect(YES_ANSWER.test(lastUser) || !ASKING.test(firstUser), `line ${d.line}: ${firstUser} → ${name}`).toBe(true)
        }
      })
  })

  it("ends every assistant text with a sentence's end, and no link runs into the next sentence", () => {
    for (const d of m.kept)
      for (const mm of d.messages)
        if (mm.role === "assistant" && mm.content) {
          expect(mm.content.trim(), `line ${d.line}`).toMatch(/[.!?)"]$/)
          expect(mm.content, `line ${d.line}`).not.toMatch(/https?:\/\/\S*[^.\s] [A-Z]/)
        }
  })

  it("renders every conversation with the chat template, no placeholder or template token in any turn", () => {
    const template = new Template(CHAT_TEMPLATE)
    for (const d of m.kept) {
      const text = template.render({ messages: d.messages, tools: d.tools.map((t) => ({ type: "function", function: { name: t.name } })), add_generation_prompt: false })
      for (const mm of d.messages) expect(mm.content, `line ${d.line}`).not.toMatch(/\{\{|\}\}|\[\[|\]\]|VALUE\d|<\/?think>|<\|im_/)
      expect(text.split("<|im_start|>assistant").length - 1, `line ${d.line}`).toBe(d.messages.filter((x) => x.role === "assistant").length)
    }
  })
})

describe("every catalogue tool", () => {
  it("is mapped from an intent and has answers for what it returns", () => {
    const mapped = new Set(Object.values(mapping).map((x) => x?.tool))
    for (const t of CATALOGUE) expect(mapped.has(t.name), t.name).toBe(true)
  })
})
