/**
 * One row becomes one conversation, of one of these shapes:
 *
 *   call            user → call → result → answer from the result
 *   clarify         user (no value for a required argument) → the assistant asks
 *   clarify-call    … → the user gives it → call → result → answer        (multi-turn)
 *   confirm-call    user asks how to cancel/delete → the assistant offers to do it
 *                   → the user agrees → call → result → answer             (multi-turn)
 *   confirm-declined … → the user declines → the how-to answer             (multi-turn)
 *   parallel        user names two orders → two calls → two results → one answer
 *   no-tool         only irrelevant tools offered → the dataset's own answer
 *   out-of-scope    a request no support tool serves → a polite refusal
 *
 * Any call may return an error (not found, not allowed) that the answer
 * states. The shape is a pure function of (seed, row line); fractions are in
 * the params. A shape that cannot be made grounded (a dataset answer quoting
 * something the conversation does not hold) is not chosen for that row.
 */
import { hash32, Rng } from "../lib/rng.ts"
import { CLOSERS, openers, parallelOpeners, say } from "./answers.ts"
import { byName, CATALOGUE, type ErrorKind, type ToolSpec } from "./catalogue.ts"
import { candidatesIn, idsFor, pickId, type Candidates } from "./extract.ts"
import { contextOf, ungrounded } from "./facts.ts"
import { type Company, type Result, World } from "./world.ts"

export type Shape = "call" | "clarify" | "clarify-call" | "confirm-call" | "confirm-declined" | "parallel" | "no-tool" | "out-of-scope"
export const SHAPES: ReadonlyArray<Shape> = ["call", "clarify", "clarify-call", "confirm-call", "confirm-declined", "parallel", "no-tool", "out-of-scope"]

export interface ToolCall {
  readonly type: "function"
  readonly function: { readonly name: string; readonly arguments: Readonly<Record<string, string>> }
}

export interface Message {
  readonly role: "system" | "user" | "assistant" | "tool"
  readonly content: string
  readonly tool_calls?: ReadonlyArray<ToolCall>
}

export interface Row {
  readonly line: number
  readonly intent: string
  readonly category: string
  readonly instruction: string
  readonly response: string
  readonly entities?: Readonly<Record<string, string>>
  readonly company?: Company
}

export type Mapping = Readonly<Record<string, { readonly tool: string; readonly args?: Readonly<Record<string, string>> } | null>>

export interface Mix {
  /** fraction of rows answered without a tool, only irrelevant tools offered */
  readonly noTool: number
  /** fraction of rows replaced by an out-of-scope request */
  readonly outOfScope: number
  /** of rows naming one order or invoice, the fraction that name a second one (parallel calls) */
  readonly parallel: number
  /** fraction of calls that return an error */
  readonly errors: number
  /** fraction of clarifications the user answers (the rest end at the question) */
  readonly followUp: number
  /** of offers to cancel or delete, the fraction the user declines */
  readonly decline: number
}

export interface DialogueParams {
  readonly seed: number
  readonly distractors: number
  readonly minDistractors: number
  readonly systemPrompt: string
  readonly mix: Mix
}

export interface Dialogue {
  readonly shape: Shape
  /** the intent's tool (none for out-of-scope and unmapped intents) */
  readonly tool: string | null
  readonly messages: ReadonlyArray<Message>
  readonly tools: ReadonlyArray<ToolSpec>
}

/** A company for rows that come without one (a hand-written test row). */
export const DEFAULT_COMPANY: Company = {
  name: "Summit Goods",
  website: "https://www.summitgoods.com",
  phone: "+1-800-555-0134",
  email: "support@summitgoods.com",
  hours: "Monday to Friday, 9:00 AM - 6:00 PM ET",
  country: "United States"
}

export const SYSTEM_SLOTS = ["company", "website", "phone", "email", "hours"] as const
export const renderSystem = (template: string, c: Company): string =>
  template.replace(/\{(company|website|phone|email|hours)\}/g, (_, k: string) => (k === "company" ? c.name : c[k as keyof Company]))

const HOW = /\b(how (do|can|could|would|should|to|i)|where (do|can|could) i|what (do|should|would) i (need|have) to do|what('s| is) the (process|procedure|way)|steps to|show me how|tell me how|explain how|help me understand|i (don't|dont|do not) know (how|what)|is it possible to|information (about|on) how|want to know how|need to know how)\b/i

/**
 * A plain request to act: "I want to cancel …", "please delete …", "can you …", "cancel order …".
 * A destructive tool acts at once only on such a request that is not also a question about how, a
 * problem report or a request for information ("problem with account deletions", "question about
 * canceling order #…", "I can no longer afford purchase #…"): those get an offer first.
 */
const REQUEST =
  /\b(i |i'd |i would )?(really |just )?(want|wanna|need|would like|'d like|wish|must|have to|have got to|got to|gotta|trying to|try to|tried to|intend to|plan to)\b|\b(please|pls|plz)\b|\b(can|could|would|will) (you|u)\b|\bcan ?u\b|\b(help|assist) me\b|^\s*(cancel|delete|remove|close|terminate|unsubscribe|switch|upgrade|downgrade|stop)\b/i
const NOT_A_REQUEST = /\b(information|info|questions?|problems?|issues?|trouble|errors?|tell me about|know about|possible|can i|could i|may i|where to|where do|where can)\b/i
export const plainRequest = (text: string): boolean => REQUEST.test(text) && !NOT_A_REQUEST.test(text) && !HOW.test(text)

const title = (w: string) => w.charAt(0).toUpperCase() + w.slice(1)

const YES = ["Yes, please.", "Yes, go ahead.", "Please do.", "Sure, go ahead.", "Yes please, do it for me.", "OK, yes."]
const NO = ["No, thanks. I just wanted to know how to do it myself.", "No, please just tell me how.", "Not yet, I only wanted to know the steps.", "No need, just explain how it works."]

const OFFER: Readonly<Record<string, ReadonlyArray<(a: Readonly<Record<string, string>>) => string>>> = {
  cancel_order: [
    (a) => `I can cancel order ${a["order_number"]} for you right now. Would you like me to go ahead?`,
    (a) => `I can take care of that for you: shall I cancel order ${a["order_number"]}?`,
    (a) => `Would you like me to cancel order ${a["order_number"]} for you now?`
  ],
  switch_account: [
    (a) => `I can switch your account to the ${title(a["account_type"] ?? "")} plan for you now. Would you like me to go ahead?`,
    (a) => `Shall I move your account to ${title(a["account_type"] ?? "")} for you right away?`
  ],
  manage_newsletter: [
    () => "I can unsubscribe you from our newsletter right now. Would you like me to do that?",
    () => "Shall I cancel your newsletter subscription for you now?"
  ],
  delete_account: [
    () => "I can close your account for you right away. Would you like me to go ahead?",
    () => "I can start the account deletion for you now. Shall I proceed?",
    () => "Would you like me to delete your account for you now? You would keep a short window to restore it."
  ]
}

const OUT_OF_SCOPE: ReadonlyArray<readonly [string, string]> = [
  ["What's the weather going to be like this weekend?", "weather forecasts"],
  ["Can you write me a poem about the sea?", "writing poems"],
  ["Who won the football match last night?", "sports results"],
  ["Can you help me with my math homework?", "homework"],
  ["Which stocks should I buy right now?", "investment advice"],
  ["Can you recommend a good restaurant nearby?", "restaurant recommendations"],
  ["Translate 'good morning' into Japanese for me.", "translations"],
  ["Tell me a joke.", "jokes"],
  ["My car's engine light is on. What should I do?", "car repairs"],
  ["Can you book me a flight to Paris?", "travel bookings"],
  ["What's a good recipe for lasagna?", "recipes"],
  ["I have a headache, which medicine should I take?", "medical advice"],
  ["Can you explain quantum physics to me?", "physics lessons"],
  ["Write a cover letter for my job application.", "job applications"],
  ["Help me plan a birthday party.", "party planning"],
  ["Can you do my tax return?", "tax questions"],
  ["What's the meaning of life?", "philosophy"],
  ["Can you find me a date for Saturday?", "dating"],
  ["How do I fix a leaking kitchen tap?", "home repairs"],
  ["Can you summarize today's news for me?", "the news"],
  ["Give me tips to lose weight fast.", "diet advice"],
  ["Which laptop should I buy for gaming?", "shopping advice for other stores"],
  ["Can you write some Python code for my school project?", "programming help"],
  ["What's the best way to learn the guitar?", "music lessons"]
]
const OOS_PREFIX = ["", "", "Hey, ", "Hi! ", "Quick question: ", "Hello. "]
const possessive = (name: string) => (name.endsWith("s") ? `${name}'` : `${name}'s`)
const OOS_ANSWER: ReadonlyArray<(company: string, topic: string) => string> = [
  (c, t) => `I'm sorry, but I can't help with ${t}. I'm ${possessive(c)} support assistant, so I can help with your orders, deliveries, refunds, invoices and account. Is there anything there I can do for you?`,
  (c, t) => `That's outside what I can do: I only handle ${c} customer support (orders, shipping, refunds, invoices and accounts), not ${t}. Can I help you with any of those?`,
  (c, t) => `Sorry, I can't help with ${t}. As ${possessive(c)} support assistant I can look up orders, refunds and invoices or help with your account. What can I do for you?`
]

const userTurns = (messages: ReadonlyArray<Message>) => messages.filter((m) => m.role === "user").map((m) => m.content)

/** The acknowledgement that opens the dataset's response, when it is one and holds no fact the context lacks. */
export const acknowledgement = (response: string, context: ReadonlyArray<string>): string | undefined => {
  // the first sentence: up to a full stop or "!" that ends the sentence ("order no. 55120934" does not)
  const first = /^[^\n]*?[.!](?=\s+["'‘“(]?[A-Z]|\s*$)/.exec(response.trim())?.[0]
  if (first === undefined || first.length > 200 || first.includes("?") || first.includes(":")) return undefined
  if (!/^(I (understand|realize|realized|see|get|gather|hear|can see|completely understand|fully understand|totally understand|can understand|recognize|acknowledge|appreciate)|I've (noticed|realized|understood|taken note)|Thank you|Thanks|I'm (sorry|aware)|I apologize|We (understand|appreciate)|Got it|Ah, I see)\b/.test(first)) return undefined
  // a promise the answer may not keep
  if (/\b(follow|steps?|guide|process|below|walk you|here'?s how|let me|I'll|I will|assist you|help you|resolv|instruction)\w*/i.test(first)) return undefined
  // words that would read as the outcome of the lookup ("unable", "successfully")
  if (/\b(couldn'?t|could not|can'?t|cannot|unable|wasn'?t able|not possible|not eligible|unfortunately|successfully|cancell?ed|done)\b/i.test(first)) return undefined
  if (ungrounded(first, contextOf(context)).length > 0) return undefined
  return first + " "
}

/** A second identifier in the format of the first: its digits redrawn. */
const sibling = (id: string, rng: Rng): string => {
  let out = ""
  let first = true
  for (const ch of id) {
    if (/\d/.test(ch)) {
      out += String(first ? 1 + (rng.nextU32() % 9) : rng.nextU32() % 10)
      first = false
    } else out += ch
  }
  return out === id ? `${id}1` : out
}

/** A fresh identifier of a tool's kind, for a user answering a clarification. */
const freshId = (label: string | undefined, rng: Rng): string => {
  const digits = (n: number) => String(10 ** (n - 1) + (rng.nextU32() % (9 * 10 ** (n - 1))))
  if (label === "invoice") return rng.next() < 0.5 ? `INV-${digits(6)}` : `#${digits(5)}`
  return rng.next() < 0.75 ? `#${digits(8)}` : `ORD-${digits(8)}`
}

const offeredTools = (tool: ToolSpec | undefined, p: DialogueParams, rng: Rng, irrelevantOnly: boolean): Array<ToolSpec> => {
  const n = p.minDistractors + (rng.nextU32() % (p.distractors - p.minDistractors + 1))
  const others = CATALOGUE.filter((t) => t !== tool && !(irrelevantOnly && tool && t.group === tool.group))
  const near = tool && !irrelevantOnly ? others.filter((t) => t.group === tool.group) : []
  const far = others.filter((t) => !near.includes(t))
  const chosen: Array<ToolSpec> = []
  // confusable tools first: each same-group tool is offered with probability 0.7
  for (const t of near) if (chosen.length < n && rng.next() < 0.7) chosen.push(t)
  const pool = [...far]
  while (chosen.length < Math.max(irrelevantOnly ? 1 : 0, n) && pool.length > 0) chosen.push(pool.splice(rng.nextU32() % pool.length, 1)[0]!)
  if (tool && !irrelevantOnly) chosen.splice(rng.nextU32() % (chosen.length + 1), 0, tool)
  return rng.shuffle(chosen)
}

interface Found {
  readonly args: Record<string, string>
  /** required arguments the user's words hold no candidate for */
  readonly missing: ReadonlyArray<string>
}

/** Arguments from the mapping and the user's words; what is still missing. */
export const argumentsFrom = (tool: ToolSpec, fixed: Readonly<Record<string, string>>, c: Candidates, text: string): Found => {
  const args: Record<string, string> = { ...fixed }
  for (const [name, spec] of Object.entries(tool.args)) {
    if (args[name] !== undefined) continue
    if (spec.derive) args[name] = spec.derive(text)
    else if (spec.id) {
      const id = pickId(c, spec.id)
      if (id) args[name] = id.value
    } else if (spec.fromUser === "tier" && c.tiers[0]) args[name] = c.tiers[0]
    else if (spec.fromUser === "city" && c.cities[0]) args[name] = c.cities[0]
    else if (spec.fromUser === "country" && c.countries[0]) args[name] = c.countries[0]
  }
  return { args, missing: tool.required.filter((r) => args[r] === undefined) }
}

const currencyOf = (row: Row): string => row.entities?.["Currency Symbol"] ?? /[$€£]/.exec(row.instruction)?.[0] ?? /[$€£]/.exec(row.response)?.[0] ?? "$"

export const dialogueFor = (row: Row, p: DialogueParams, mapping: Mapping): Dialogue => {
  const rng = new Rng(p.seed ^ hash32(`${row.line}:${row.intent}`))
  const company = row.company ?? DEFAULT_COMPANY
  const world = new World(company, currencyOf(row), new Rng(p.seed ^ hash32(`world:${row.line}`)), /[$€£]\d[\d,]*(\.\d{2})?/.exec(row.instruction)?.[0])
  const system: Message = { role: "system", content: renderSystem(p.systemPrompt, company) }
  const user: Message = { role: "user", content: row.instruction }
  const m = mapping[row.intent]
  const tool = m ? byName.get(m.tool) : undefined
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[rng.nextU32() % xs.length]!
  const u = rng.next()

  if (u < p.mix.outOfScope) {
    const [ask, topic] = pick(OUT_OF_SCOPE)
    const tools = offeredTools(undefined, p, rng, true)
    return { shape: "out-of-scope", tool: null, tools, messages: [system, { role: "user", content: pick(OOS_PREFIX) + ask }, { role: "assistant", content: pick(OOS_ANSWER)(company.name, topic) }] }
  }
  const groundedResponse = ungrounded(row.response, contextOf([system.content, user.content])).length === 0
  if (!tool || (u < p.mix.outOfScope + p.mix.noTool && groundedResponse)) {
    return { shape: "no-tool", tool: tool?.name ?? null, tools: offeredTools(tool, p, rng, true), messages: [system, user, { role: "assistant", content: row.response }] }
  }

  const tools = offeredTools(tool, p, rng, false)
  const candidates = candidatesIn(row.instruction, row.entities)
  const found = argumentsFrom(tool, m?.args ?? {}, candidates, row.instruction)
  const messages: Array<Message> = [system, user]
  const call = (args: Readonly<Record<string, string>>): ToolCall => ({ type: "function", function: { name: tool.name, arguments: args } })
  const outcome = (args: Readonly<Record<string, string>>): Result => {
    const error: ErrorKind | undefined = tool.errors.length > 0 && rng.next() < p.mix.errors ? pick(tool.errors) : undefined
    return error ? tool.error(error, args, world) : tool.result(args, world)
  }
  const asksFirst = (args: Readonly<Record<string, string>>): boolean =>
    (typeof tool.destructive === "function" ? tool.destructive(args) : tool.destructive === true) && !plainRequest(row.instruction)
  const offer = (args: Readonly<Record<string, string>>): string => pick(OFFER[tool.name] ?? [() => "Would you like me to do that for you now?"])(args)
  const opener = (ctx: ReadonlyArray<string>) => acknowledgement(row.response, ctx) ?? pick(openers(tool.name))
  const finish = (shape: Shape, args: Readonly<Record<string, string>>): Dialogue => {
    const result = outcome(args)
    messages.push({ role: "assistant", content: "", tool_calls: [call(args)] }, { role: "tool", content: JSON.stringify(result) })
    const context = [system.content, ...userTurns(messages)]
    // the dataset's acknowledgement restates the first request: after "yes, go ahead" it would repeat itself
    const open = shape === "confirm-call" || asksFirst(args) ? pick(openers(tool.name)) : opener(context)
    // after "not found" the answer ends with its question, not a second one
    messages.push({ role: "assistant", content: open + say(tool, args, result, world) + (result["error"] === "not_found" ? "" : pick(CLOSERS)) })
    return { shape, tool: tool.name, tools, messages }
  }

  if (found.missing.length > 0) {
    const missing = found.missing[0]!
    const spec = tool.args[missing]!
    const asks = spec.ask ?? [`Could you please tell me the ${missing.replaceAll("_", " ")}?`]
    messages.push({ role: "assistant", content: pick(asks) })
    if (rng.next() >= p.mix.followUp) return { shape: "clarify", tool: tool.name, tools, messages }
    const value = spec.fromUser === "tier" ? pick(spec.enum ?? ["standard"]) : freshId(spec.id, rng)
    const gives = spec.give ?? ["{v}"]
    messages.push({ role: "user", content: pick(gives).replace("{v}", value) })
    const args = { ...found.args, [missing]: value }
    // "problem with canceling an order" → "which order?" → "#123": still not a request to cancel it
    if (asksFirst(args)) messages.push({ role: "assistant", content: offer(args) }, { role: "user", content: pick(YES) })
    return finish("clarify-call", args)
  }

  if (asksFirst(found.args)) {
    messages.push({ role: "assistant", content: offer(found.args) })
    if (rng.next() < p.mix.decline && groundedResponse) {
      messages.push({ role: "user", content: pick(NO) }, { role: "assistant", content: row.response })
      return { shape: "confirm-declined", tool: tool.name, tools, messages }
    }
    messages.push({ role: "user", content: pick(YES) })
    return finish("confirm-call", found.args)
  }

  // parallel calls: the user named several orders (or invoices), or, for a share of the rows
  // naming one, the user's turn names a second one in the same format
  const idArg = tool.required.filter((r) => tool.args[r]?.id !== undefined)
  const named = idArg.length === 1 ? idsFor(candidates, tool.args[idArg[0]!]!.id!).map((i) => i.value).slice(0, 3) : []
  let ids = named
  if (named.length === 1 && rng.next() < p.mix.parallel) {
    const first = named[0]!
    const second = sibling(first, rng)
    const at = row.instruction.indexOf(first)
    messages[1] = { role: "user", content: row.instruction.slice(0, at + first.length) + ` and ${second}` + row.instruction.slice(at + first.length) }
    ids = [first, second]
  }
  if (ids.length >= 2) {
    const argSets = ids.map((id) => ({ ...found.args, [idArg[0]!]: id }))
    const results = argSets.map(outcome)
    messages.push({ role: "assistant", content: "", tool_calls: argSets.map(call) }, ...results.map((r): Message => ({ role: "tool", content: JSON.stringify(r) })))
    const asks = results.some((r) => r["error"] === "not_found")
    const body = argSets.map((a, i) => say(tool, a, results[i]!, world)).join(" ")
    messages.push({ role: "assistant", content: pick(parallelOpeners(tool.name)) + body + (asks ? "" : pick(CLOSERS)) })
    return { shape: "parallel", tool: tool.name, tools, messages }
  }
  return finish("call", found.args)
}
