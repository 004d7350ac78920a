/**
 * Scoring what the model generates at each assistant turn of a validation conversation, given
 * the turns before it, against the turn the data holds. What a customer-support bot must get
 * right, measured per turn and summed per intent and overall:
 *
 * - decision: call a tool, ask (a question the user answers in the next turn: a missing value,
 *   an offer to act), or answer without a tool;
 * - on calls: the tool names (as a multiset), arguments exactly (per call and per argument),
 *   `<tool_call>` JSON that parses, calls valid against the offered tools' schemas (name offered,
 *   required present, enums respected, nothing unknown), and string arguments that are not in
 *   any user turn (invented identifiers);
 * - clarification precision and recall (asking when the data asks);
 * - after a tool result: whether the answer states a value of the result that is not an argument;
 * - leaks (`{{…}}`, `[[…]]`, `VALUE123`, `<think>`), and ROUGE-L (F1 of the longest common
 *   subsequence of words) of text turns.
 */
import type { Message } from "../toolcalls/dialogue.ts"

export interface ToolSchema {
  readonly function: {
    readonly name: string
    readonly parameters: { readonly properties: Readonly<Record<string, { readonly enum?: ReadonlyArray<string> }>>; readonly required: ReadonlyArray<string> }
  }
}

export interface EvalConversation {
  readonly line: number
  readonly intent: string
  readonly messages: ReadonlyArray<Message>
  readonly tools: ReadonlyArray<ToolSchema>
}

export type Kind = "call" | "ask" | "answer"

export interface ParsedCall {
  readonly name: string
  readonly arguments: Readonly<Record<string, unknown>>
}

export interface Parsed {
  readonly kind: Kind
  readonly calls: ReadonlyArray<ParsedCall>
  /** <tool_call> blocks whose body is not {"name": string, "arguments": object} */
  readonly badBlocks: number
  readonly text: string
}

const BLOCK = /<tool_call>([\s\S]*?)(<\/tool_call>|$)/g
/** questions that close an answer rather than ask for something */
const CLOSER = /anything else|something else|further (questions|assistance)|can I help|may I help|other questions/i

/** Whether a text asks the user something (a question that is not a closing courtesy). */
export const asks = (text: string): boolean => (text.match(/[^.!?\n]*\?/g) ?? []).some((q) => !CLOSER.test(q))
const LEAK = /\{\{|\}\}|\[\[|\]\]|\bVALUE\d+\b|<\/?think>/

/** The model's output read as a turn: its tool calls, or its text and whether it asks. */
export const parseOutput = (raw: string): Parsed => {
  const text = raw.replace(/<\|im_end\|>[\s\S]*$/, "").replace(/<\|endoftext\|>[\s\S]*$/, "")
  const calls: Array<ParsedCall> = []
  let badBlocks = 0
  let blocks = 0
  for (const m of text.matchAll(BLOCK)) {
    blocks++
    try {
      const v = JSON.parse(m[1]!.trim()) as unknown
      if (v && typeof v === "object" && typeof (v as { name?: unknown }).name === "string" && typeof (v as { arguments?: unknown }).arguments === "object" && (v as { arguments: unknown }).arguments !== null)
        calls.push({ name: (v as { name: string }).name, arguments: (v as { arguments: Record<string, unknown> }).arguments })
      else badBlocks++
    } catch {
      badBlocks++
    }
  }
  const plain = text.replace(BLOCK, "").trim()
  const kind: Kind = blocks > 0 ? "call" : asks(plain) ? "ask" : "answer"
  return { kind, calls, badBlocks, text: plain }
}

/** What the data's turn `i` is. */
export const referenceKind = (messages: ReadonlyArray<Message>, i: number): Kind => {
  const m = messages[i]!
  if (m.tool_calls && m.tool_calls.length > 0) return "call"
  return messages.slice(i + 1).some((x) => x.role === "user") && asks(m.content) ? "ask" : "answer"
}

const words = (s: string) => s.toLowerCase().match(/[\p{L}\p{N}]+(?:['.][\p{L}\p{N}]+)*/gu) ?? []

/** ROUGE-L F1 over words. */
export const rougeL = (candidate: string, reference: string): number => {
  const a = words(candidate)
  const b = words(reference)
  if (a.length === 0 || b.length === 0) return a.length === b.length ? 1 : 0
  let prev = new Array<number>(b.length + 1).fill(0)
  for (let i = 1; i <= a.length; i++) {
    const cur = new Array<number>(b.length + 1).fill(0)
    for (let j = 1; j <= b.length; j++) cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!)
    prev = cur
  }
  const lcs = prev[b.length]!
  if (lcs === 0) return 0
  const p = lcs / a.length
  const r = lcs / b.length
  return (2 * p * r) / (p + r)
}

/** Tallies of one or more turns; metrics are ratios of them. */
export interface Tally {
  turns: number
  decisionCorrect: number
  refCalls: number
  nameCorrect: number
  callsExact: number
  refArgs: number
  argsCorrect: number
  predCalls: number
  predBlocks: number
  validJson: number
  schemaValid: number
  predStringArgs: number
  argsNotInUser: number
  predAsks: number
  refAsks: number
  bothAsk: number
  afterResult: number
  statesResult: number
  leaks: number
  textTurns: number
  rougeSum: number
}

export const emptyTally = (): Tally => ({
  turns: 0, decisionCorrect: 0, refCalls: 0, nameCorrect: 0, callsExact: 0, refArgs: 0, argsCorrect: 0, predCalls: 0, predBlocks: 0, validJson: 0,
  schemaValid: 0, predStringArgs: 0, argsNotInUser: 0, predAsks: 0, refAsks: 0, bothAsk: 0, afterResult: 0, statesResult: 0, leaks: 0, textTurns: 0, rougeSum: 0
})

export const addTally = (a: Tally, b: Tally): Tally => Object.fromEntries(Object.keys(a).map((k) => [k, a[k as keyof Tally] + b[k as keyof Tally]])) as unknown as Tally

const sameArgs = (a: Readonly<Record<string, unknown>>, b: Readonly<Record<string, unknown>>) => {
  const ka = Object.keys(a).sort()
  const kb = Object.keys(b).sort()
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && JSON.stringify(a[k]) === JSON.stringify(b[k]))
}

const schemaOk = (c: ParsedCall, tools: ReadonlyArray<ToolSchema>) => {
  const t = tools.find((x) => x.function.name === c.name)
  if (!t) return false
  const props = t.function.parameters.properties
  if (!t.function.parameters.required.every((r) => r in c.arguments)) return false
  return Object.entries(c.arguments).every(([k, v]) => {
    const p = props[k]
    if (!p || typeof v !== "string") return false
    return !p.enum || p.enum.includes(v)
  })
}

/** Scores the output `raw` for turn `i` of `conv`. */
export const scoreTurn = (conv: EvalConversation, i: number, raw: string): Tally => {
  const t = emptyTally()
  const ref = conv.messages[i]!
  const pred = parseOutput(raw)
  const refKind = referenceKind(conv.messages, i)
  const users = conv.messages.slice(0, i).filter((m) => m.role === "user").map((m) => m.content)
  t.turns = 1
  t.decisionCorrect = pred.kind === refKind ? 1 : 0
  t.predBlocks = pred.calls.length + pred.badBlocks
  t.validJson = pred.calls.length
  t.predCalls = pred.calls.length
  for (const c of pred.calls) {
    if (schemaOk(c, conv.tools)) t.schemaValid++
    for (const [k, v] of Object.entries(c.arguments)) {
      const spec = conv.tools.find((x) => x.function.name === c.name)?.function.parameters.properties[k]
      if (typeof v !== "string" || spec?.enum) continue
      t.predStringArgs++
      if (!users.some((u) => u.includes(v))) t.argsNotInUser++
    }
  }
  if (refKind === "call") {
    const refCalls = ref.tool_calls!.map((c) => ({ name: c.function.name, arguments: c.function.arguments }))
    t.refCalls = refCalls.length
    const names = (xs: ReadonlyArray<ParsedCall>) => xs.map((c) => c.name).sort().join(",")
    if (names(refCalls) === names(pred.calls)) t.nameCorrect = refCalls.length
    const unused = [...pred.calls]
    for (const rc of refCalls) {
      t.refArgs += Object.keys(rc.arguments).length
      const exact = unused.findIndex((p) => p.name === rc.name && sameArgs(p.arguments, rc.arguments))
      const match = exact >= 0 ? exact : unused.findIndex((p) => p.name === rc.name)
      if (match < 0) continue
      const p = unused.splice(match, 1)[0]!
      if (exact >= 0) t.callsExact++
      for (const [k, v] of Object.entries(rc.arguments)) if (JSON.stringify(p.arguments[k]) === JSON.stringify(v)) t.argsCorrect++
    }
  }
  if (pred.kind === "ask") t.predAsks = 1
  if (refKind === "ask") t.refAsks = 1
  if (pred.kind === "ask" && refKind === "ask") t.bothAsk = 1
  // the answer after tool results: does it state one of their values that is not an argument?
  const results: Array<string> = []
  for (let j = i - 1; j >= 0 && conv.messages[j]!.role === "tool"; j--) results.push(conv.messages[j]!.content)
  if (results.length > 0 && refKind !== "call") {
    t.afterResult = 1
    const args = new Set(conv.messages.slice(0, i).flatMap((m) => (m.tool_calls ?? []).flatMap((c) => Object.values(c.function.arguments))))
    const values = results.flatMap((r) => (r.match(/"[^"]*"|\d+(\.\d+)?/g) ?? []).map((v) => v.replace(/^"|"$/g, ""))).filter((v) => v.length > 1 && !args.has(v) && !/^[a-z_]+$/.test(v))
    if (values.some((v) => pred.text.includes(v))) t.statesResult = 1
  }
  if (LEAK.test(pred.text)) t.leaks = 1
  if (refKind !== "call") {
    t.textTurns = 1
    t.rougeSum = rougeL(pred.text, ref.content)
  }
  return t
}

const ratio = (a: number, b: number): number | undefined => (b > 0 ? Math.round((a / b) * 1e4) / 1e4 : undefined)

/** The metrics of a tally (those without a denominator are left out). */
export const metricsOf = (t: Tally): Record<string, number> => {
  const m: Record<string, number | undefined> = {
    turns: t.turns,
    decisionAccuracy: ratio(t.decisionCorrect, t.turns),
    toolNameAccuracy: ratio(t.nameCorrect, t.refCalls),
    argExactMatch: ratio(t.callsExact, t.refCalls),
    argAccuracy: ratio(t.argsCorrect, t.refArgs),
    jsonValidity: ratio(t.validJson, t.predBlocks),
    schemaValidity: ratio(t.schemaValid, t.predCalls),
    argNotInUserRate: ratio(t.argsNotInUser, t.predStringArgs),
    clarificationPrecision: ratio(t.bothAsk, t.predAsks),
    clarificationRecall: ratio(t.bothAsk, t.refAsks),
    statesResultRate: ratio(t.statesResult, t.afterResult),
    leakRate: ratio(t.leaks, t.turns),
    rougeL: ratio(t.rougeSum, t.textTurns)
  }
  return Object.fromEntries(Object.entries(m).filter((e): e is [string, number] => e[1] !== undefined))
}
