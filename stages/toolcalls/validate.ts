/**
 * The validator every conversation passes before it is kept, in the spirit of
 * APIGen's checks (format, then execution, then semantics):
 *
 *   format        each call parses, names an offered tool, has only the schema's
 *                 arguments, as strings, every required one, enums respected;
 *                 each call is answered by one tool turn holding a JSON object
 *   leak          no `{{…}}`, `[[…]]`, `VALUE123`, `<think>`, chat-template
 *                 tokens or tool tags in any turn's text
 *   provenance    every identifying argument is verbatim in a user turn before
 *                 the call; a tier, city or country is in the user's words
 *   clarification a question for a missing argument only when no user turn
 *                 before it holds a candidate value
 *   grounding     every fact of every assistant turn is in the context before it
 *                 (system prompt, user turns, tool results)
 *   result        the answer after a result states at least one of its values
 *                 that is not an argument, names the result's status and no
 *                 other, and agrees with its outcome: no success words after an
 *                 error, no failure words after a success
 *
 * `check` returns the first problem, or undefined; the stage drops a failing
 * conversation and counts it under its reason.
 */
import { LEAK } from "../entities/replace.ts"
import { byName, type ToolSpec } from "./catalogue.ts"
import type { Dialogue, Message } from "./dialogue.ts"
import { candidatesIn } from "./extract.ts"
import { contextOf, factsIn, ungrounded } from "./facts.ts"
import type { Json } from "./world.ts"

export type Reason = "format" | "leak" | "provenance" | "clarification" | "ungrounded" | "ignores-result" | "contradicts-result"
export const REASONS: ReadonlyArray<Reason> = ["format", "leak", "provenance", "clarification", "ungrounded", "ignores-result", "contradicts-result"]

export interface Problem {
  readonly reason: Reason
  readonly detail: string
}

const TEMPLATE_LEAK = /<\/?think>|<\|im_(start|end)\|>|<\|endoftext\|>|<\/?tool_call>|<\/?tool_response>/

/** success wording (must not follow an error) and failure wording (must not follow a success) */
const SUCCESS_WORDS = /\b(has been (cancell?ed|submitted|changed)|have been (cancell?ed|submitted)|I've (cancell?ed|submitted)|is cancell?ed|successfully|Done[:!])/i
const FAILURE_WORDS = /\b(couldn'?t|could not|can'?t|cannot|unable|wasn'?t able|not possible|not eligible|no \w+ matches|unfortunately)\b/i

const scalars = (v: Json, out: Array<string>): Array<string> => {
  if (typeof v === "string" || typeof v === "number") out.push(String(v))
  else if (Array.isArray(v)) for (const x of v) scalars(x, out)
  else if (v !== null && typeof v === "object") for (const x of Object.values(v)) scalars(x as Json, out)
  return out
}

const parseObject = (s: string): Record<string, Json> | undefined => {
  try {
    const v = JSON.parse(s) as unknown
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, Json>) : undefined
  } catch {
    return undefined
  }
}

const wordIn = (text: string, phrase: string) => new RegExp(`(^|[^\\p{L}])${phrase.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}($|[^\\p{L}])`, "iu").test(text)

const formatProblem = (call: { name: string; arguments: unknown }, offered: ReadonlySet<string>): string | undefined => {
  const tool = byName.get(call.name)
  if (!tool || !offered.has(call.name)) return `calls ${call.name}, which is not offered`
  const args = call.arguments
  if (args === null || typeof args !== "object" || Array.isArray(args)) return `${call.name}: arguments are not an object`
  for (const [k, v] of Object.entries(args)) {
    const spec = tool.args[k]
    if (!spec) return `${call.name}: no argument ${k}`
    if (typeof v !== "string" || v === "") return `${call.name}.${k}: not a non-empty string`
    if (spec.enum && !spec.enum.includes(v)) return `${call.name}.${k}: ${v} is not one of its enum`
  }
  const missing = tool.required.find((r) => (args as Record<string, unknown>)[r] === undefined)
  return missing === undefined ? undefined : `${call.name}: required ${missing} missing`
}

/** The first problem of a conversation, or undefined when it may be kept. */
export const check = (d: Dialogue): Problem | undefined => {
  const ms = d.messages
  const offered = new Set(d.tools.map((t) => t.name))
  for (const m of ms) {
    const texts = [m.content, ...(m.tool_calls ?? []).flatMap((c) => [c.function.name, ...Object.values(c.function.arguments)])]
    for (const t of texts) {
      if (LEAK.test(t)) return { reason: "leak", detail: `${m.role}: ${LEAK.exec(t)![0]}` }
      if (TEMPLATE_LEAK.test(t)) return { reason: "leak", detail: `${m.role}: ${TEMPLATE_LEAK.exec(t)![0]}` }
    }
  }
  const contextParts: Array<string> = []
  const users: Array<string> = []
  let pending: Array<{ tool: ToolSpec; args: Readonly<Record<string, string>> }> = []
  let results: Array<{ tool: ToolSpec; args: Readonly<Record<string, string>>; result: Record<string, Json> }> = []
  for (let i = 0; i < ms.length; i++) {
    const m: Message = ms[i]!
    if (m.role === "system" || m.role === "user") {
      contextParts.push(m.content)
      if (m.role === "user") users.push(m.content)
      continue
    }
    if (m.role === "tool") {
      const call = pending.shift()
      if (!call) return { reason: "format", detail: `tool turn ${i} answers no call` }
      const result = parseObject(m.content)
      if (!result) return { reason: "format", detail: `tool turn ${i} is not a JSON object` }
      results.push({ ...call, result })
      contextParts.push(m.content)
      continue
    }
    // assistant
    if (pending.length > 0) return { reason: "format", detail: `assistant turn ${i} before every call had its result` }
    const context = contextOf(contextParts)
    const bad = ungrounded(m.content, context)
    if (bad.length > 0) return { reason: "ungrounded", detail: `${bad[0]!.kind} "${bad[0]!.text}" is not in the context` }
    for (const c of m.tool_calls ?? []) {
      const p = formatProblem(c.function, offered)
      if (p) return { reason: "format", detail: p }
      const tool = byName.get(c.function.name)!
      for (const [k, v] of Object.entries(c.function.arguments)) {
        const spec = tool.args[k]!
        if (spec.id !== undefined && !users.some((u) => u.includes(v))) return { reason: "provenance", detail: `${tool.name}.${k} = ${v} is in no user turn` }
        if (spec.fromUser !== undefined && !users.some((u) => wordIn(u, v))) return { reason: "provenance", detail: `${tool.name}.${k} = ${v} is not in the user's words` }
        if (spec.derive !== undefined && spec.derive(users.join("\n")) !== v) return { reason: "provenance", detail: `${tool.name}.${k} = ${v} is not what the user asked for` }
      }
      pending.push({ tool, args: c.function.arguments })
    }
    if ((m.tool_calls ?? []).length > 0) continue
    if (results.length > 0) {
      const p = resultProblem(m.content, results)
      if (p) return p
      results = []
      continue
    }
    // a question asking for an argument the user already gave
    if ((d.shape === "clarify" || d.shape === "clarify-call") && m.content.trim().endsWith("?") && i === 2 && d.tool) {
      const tool = byName.get(d.tool)!
      const text = users.join("\n")
      const want = tool.required.map((r) => tool.args[r]!)
      // read with the facts' identifier pattern, not the builder's extractor: an identifier is any
      // `#…`, `XX-123…` or run of 5+ digits that no "tracking" names
      const ids = factsIn(text).filter((f) => f.kind === "id" && !/(tracking|gift ?card|coupon|promo|voucher|ticket|case|card|phone)\W*(number|no|code|#)?\W*$/i.test(text.slice(Math.max(0, text.indexOf(f.text) - 24), text.indexOf(f.text))))
      const tiers = candidatesIn(text).tiers
      const given = want.some((a) => a.id !== undefined) ? ids[0]?.text : want.some((a) => a.fromUser === "tier") ? tiers[0] : undefined
      if (given !== undefined) return { reason: "clarification", detail: `asks for ${tool.required.join(", ")} though the user gave ${given}` }
    }
  }
  if (pending.length > 0) return { reason: "format", detail: "a call has no result" }
  return undefined
}

const resultProblem = (answer: string, results: ReadonlyArray<{ tool: ToolSpec; args: Readonly<Record<string, string>>; result: Record<string, Json> }>): Problem | undefined => {
  for (const { tool, args, result } of results) {
    const argValues = new Set(Object.values(args))
    if (typeof result["error"] === "string") {
      if (!FAILURE_WORDS.test(answer)) return { reason: "ignores-result", detail: `${tool.name} returned ${result["error"]}; the answer does not say so` }
      continue
    }
    const values = scalars(result as Json, []).filter((v) => !argValues.has(v) && v !== "")
    if (values.length > 0 && !values.some((v) => answer.includes(v))) return { reason: "ignores-result", detail: `${tool.name}: the answer states none of ${values.slice(0, 4).join(", ")}` }
    if (tool.status) {
      const actual = String(result[tool.status.field])
      if (!wordIn(answer, actual)) return { reason: "contradicts-result", detail: `${tool.name}: the answer does not say "${actual}"` }
    }
  }
  const errors = results.filter((r) => typeof r.result["error"] === "string").length
  if (errors === 0 && FAILURE_WORDS.test(answer)) return { reason: "contradicts-result", detail: `every call succeeded; the answer says "${FAILURE_WORDS.exec(answer)![0]}"` }
  if (errors === results.length && SUCCESS_WORDS.test(answer)) return { reason: "contradicts-result", detail: `every call failed; the answer says "${SUCCESS_WORDS.exec(answer)![0]}"` }
  // a status the results do not have
  for (const { tool } of results) {
    if (!tool.status) continue
    const actual = new Set(results.filter((r) => r.tool === tool).map((r) => String(r.result[tool.status!.field])))
    const other = tool.status.values.find((v) => !actual.has(v) && [...actual].every((a) => !a.includes(v)) && wordIn(answer, v))
    if (other) return { reason: "contradicts-result", detail: `${tool.name}: the answer says "${other}"; the result says ${[...actual].join(", ")}` }
  }
  return undefined
}
