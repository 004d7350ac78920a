/**
 * toolcalls: every row becomes a conversation that teaches the model when and
 * how to call a tool, and to answer from what the conversation holds.
 *
 * The shapes (single calls, clarifications and their follow-ups, offers to act
 * before a destructive action, parallel calls, error results, no-tool and
 * out-of-scope answers) are in toolcalls/dialogue.ts; what tools return in
 * toolcalls/catalogue.ts and world.ts; answers written from results in
 * toolcalls/answers.ts. The system prompt states the row's company (name,
 * site, phone, e-mail, hours), so an answer quoting them quotes the context.
 *
 * Every conversation passes the validator (toolcalls/validate.ts: format,
 * leaks, argument provenance, clarifications, grounding, agreement with the
 * result) or is dropped and counted by reason in stats.json; more than
 * `maxDropFraction` dropped fails the stage.
 *
 * Rendered with the model's own chat template through @huggingface/jinja, so
 * training text matches inference exactly. Written as JSONL with `messages`
 * and `tools` (the Hugging Face convention), the intent, the shape, and the text.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import { Stage, StageError } from "../engine/index.ts"
import { download } from "./download.ts"
import { entities } from "./entities.ts"
import { readJsonl } from "./lib/jsonl.ts"
import { chatTemplateOf } from "./lib/qwen3.ts"
import { withDefault } from "./lib/schema.ts"
import { byName, CATALOGUE, DEFAULT_TOOLS, toolSchema } from "./toolcalls/catalogue.ts"
import { dialogueFor, type DialogueParams, type Message, type Row, type Shape, SHAPES } from "./toolcalls/dialogue.ts"
import { check, type Reason, REASONS } from "./toolcalls/validate.ts"

export type { Message, Row, Shape }

const Mapping = Schema.NullOr(Schema.Struct({ tool: Schema.String, args: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)) }))
const Fraction = Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 }))
const ToolCount = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 20 }))

export const DEFAULT_SYSTEM_PROMPT =
  "You are the customer support assistant of {company}. Use the tools when they help, ask for missing details instead of guessing, and state only facts given here, by the customer or by a tool.\n\n" +
  "Website: {website}\nSupport phone: {phone}\nSupport e-mail: {email}\nSupport hours: {hours}"

export const ToolcallsParams = Schema.Struct({
  /** at most this many tools besides the intent's are offered (the number varies per row) */
  distractors: withDefault(ToolCount, 3),
  /** at least this many */
  minDistractors: withDefault(ToolCount, 1),
  seed: withDefault(Schema.Int, 42),
  /** the system turn; {company}, {website}, {phone}, {email} and {hours} are the row's company */
  systemPrompt: withDefault(Schema.String, DEFAULT_SYSTEM_PROMPT),
  /** intent → { tool, args } (enumerated arguments), or null for no tool; merged over the defaults */
  tools: withDefault(Schema.Record(Schema.String, Mapping), {}),
  /** fraction of rows answered without a tool (only irrelevant tools offered) */
  noTool: withDefault(Fraction, 0.1),
  /** fraction of rows replaced by an out-of-scope request */
  outOfScope: withDefault(Fraction, 0.04),
  /** of rows naming one order or invoice, the fraction that name two (parallel calls) */
  parallel: withDefault(Fraction, 0.12),
  /** fraction of calls that return an error (not found, not allowed) */
  errors: withDefault(Fraction, 0.12),
  /** fraction of clarifications the user answers, continuing the conversation */
  followUp: withDefault(Fraction, 0.85),
  /** fraction of offers to cancel or delete that the user declines */
  decline: withDefault(Fraction, 0.25),
  /** the stage fails when more than this fraction of conversations fail validation */
  maxDropFraction: withDefault(Fraction, 0.02)
})
export type ToolcallsParams = typeof ToolcallsParams.Type

export interface Conversation {
  readonly line: number
  readonly intent: string
  readonly category: string
  readonly kind: Shape
  /** the intent's tool, called or not */
  readonly tool: string | null
  readonly messages: ReadonlyArray<Message>
  readonly tools: ReadonlyArray<ReturnType<typeof toolSchema>>
  readonly text: string
}

export const mappingFor = (params: ToolcallsParams) => ({ ...DEFAULT_TOOLS, ...params.tools })

/** Checks the params against the catalogue once, before any row. */
export const validateParams = (params: ToolcallsParams, mapping: ReturnType<typeof mappingFor>): string | undefined => {
  for (const [intent, m] of Object.entries(mapping)) {
    if (m === null) continue
    const tool = byName.get(m.tool)
    if (!tool) return `toolcalls.tools.${intent}: no tool named ${m.tool} (tools: ${CATALOGUE.map((t) => t.name).join(", ")})`
    for (const [arg, value] of Object.entries(m.args ?? {})) {
      const spec = tool.args[arg]
      if (!spec) return `toolcalls.tools.${intent}.args.${arg}: ${m.tool} has no argument ${arg}`
      if (spec.enum && !spec.enum.includes(value)) return `toolcalls.tools.${intent}.args.${arg}: ${value} is not one of ${spec.enum.join(", ")}`
    }
  }
  if (params.minDistractors > params.distractors) return `toolcalls.minDistractors ${params.minDistractors} is above toolcalls.distractors ${params.distractors}`
  if (params.noTool + params.outOfScope > 1) return `toolcalls.noTool + toolcalls.outOfScope is ${params.noTool + params.outOfScope}, above 1`
  const slot = /\{([^{}\s]*)\}/g.exec(params.systemPrompt.replace(/\{(company|website|phone|email|hours)\}/g, ""))
  if (slot) return `toolcalls.systemPrompt: unknown slot {${slot[1]}} (slots: {company}, {website}, {phone}, {email}, {hours})`
  return undefined
}

export const dialogueParams = (p: ToolcallsParams): DialogueParams => ({
  seed: p.seed,
  distractors: p.distractors,
  minDistractors: p.minDistractors,
  systemPrompt: p.systemPrompt,
  mix: { noTool: p.noTool, outOfScope: p.outOfScope, parallel: p.parallel, errors: p.errors, followUp: p.followUp, decline: p.decline }
})

export interface Stats {
  rows: number
  examples: number
  shapes: Record<Shape, number>
  /** of the kept conversations: several user turns; parallel calls; no call (no-tool and out-of-scope); an error result */
  fractions: { multiTurn: number; parallel: number; noTool: number; errorResults: number }
  calls: Record<string, number>
  toolsNeverCalled: Array<string>
  dropped: Record<Reason, number>
  droppedExamples: Array<{ line: number; reason: Reason; detail: string }>
  perIntent: Record<string, Partial<Record<Shape, number>>>
}

export const emptyStats = (): Stats => ({
  rows: 0,
  examples: 0,
  shapes: Object.fromEntries(SHAPES.map((s) => [s, 0])) as Record<Shape, number>,
  fractions: { multiTurn: 0, parallel: 0, noTool: 0, errorResults: 0 },
  calls: Object.fromEntries(CATALOGUE.map((t) => [t.name, 0])),
  toolsNeverCalled: [],
  dropped: Object.fromEntries(REASONS.map((r) => [r, 0])) as Record<Reason, number>,
  droppedExamples: [],
  perIntent: {}
})

/** Builds, checks and counts one row's conversation; undefined when it was dropped. */
export const conversationOf = (row: Row, p: DialogueParams, mapping: ReturnType<typeof mappingFor>, stats: Stats) => {
  stats.rows++
  const d = dialogueFor(row, p, mapping)
  const problem = check(d)
  if (problem) {
    stats.dropped[problem.reason]++
    if (stats.droppedExamples.length < 20) stats.droppedExamples.push({ line: row.line, reason: problem.reason, detail: problem.detail })
    return undefined
  }
  stats.examples++
  stats.shapes[d.shape]++
  const intent = d.shape === "out-of-scope" ? "out_of_scope" : row.intent
  const per = (stats.perIntent[intent] ??= {})
  per[d.shape] = (per[d.shape] ?? 0) + 1
  for (const m of d.messages) for (const c of m.tool_calls ?? []) stats.calls[c.function.name] = (stats.calls[c.function.name] ?? 0) + 1
  if (d.messages.some((m) => m.role === "tool" && m.content.startsWith('{"error"'))) stats.fractions.errorResults++
  if (d.messages.filter((m) => m.role === "user").length > 1) stats.fractions.multiTurn++
  return { ...d, intent }
}

export const finishStats = (stats: Stats): Stats => {
  const n = Math.max(1, stats.examples)
  const round = (x: number) => Math.round(x * 10000) / 10000
  stats.fractions = {
    multiTurn: round(stats.fractions.multiTurn / n),
    parallel: round(stats.shapes.parallel / n),
    noTool: round((stats.shapes["no-tool"] + stats.shapes["out-of-scope"]) / n),
    errorResults: round(stats.fractions.errorResults / n)
  }
  stats.toolsNeverCalled = Object.entries(stats.calls).filter(([, k]) => k === 0).map(([t]) => t)
  return stats
}

export const toolcalls = Stage.make({
  name: "toolcalls",
  description: "conversations with tool calls, checked and rendered with the chat template",
  module: import.meta.url,
  params: { toolcalls: ToolcallsParams },
  inputs: { rows: entities.out.rows, model: download.out.model },
  outputs: { conversations: Stage.file("conversations.jsonl"), stats: Stage.file("stats.json", { metrics: true }) },
  estimate: ({ inputSizes }) => ({ bytes: { conversations: Math.round((inputSizes["rows"] ?? 0) * 4), stats: 8000 }, seconds: 1 + (inputSizes["rows"] ?? 0) / 2e6 }),
  run: (ctx) =>
    Effect.gen(function* () {
      const params = ctx.params.toolcalls
      const mapping = mappingFor(params)
      const bad = validateParams(params, mapping)
      if (bad) return yield* new StageError({ message: bad })
      const { Template } = yield* Effect.promise(() => import("@huggingface/jinja"))
      const template = yield* Effect.try({
        try: () => new Template(chatTemplateOf(ctx.inputs.model)),
        catch: (e) => new StageError({ message: `chat template: ${(e as Error).message}` })
      })
      const rows = readJsonl<Row>(ctx.inputs.rows)
      const unmapped = [...new Set(rows.map((r) => r.intent))].filter((i) => !(i in mapping))
      if (unmapped.length > 0) return yield* new StageError({ message: `toolcalls.tools: no mapping for intent(s) ${unmapped.join(", ")} (map each to a tool or to null)` })
      yield* ctx.progress.total(rows.length, "rows")
      const stats = emptyStats()
      const dp = dialogueParams(params)
      const out: Array<string> = []
      // Tool schemas are built once per tool, not per row.
      const schemas = new Map(CATALOGUE.map((t) => [t.name, toolSchema(t)]))
      for (const [i, row] of rows.entries()) {
        const d = conversationOf(row, dp, mapping, stats)
        if (d !== undefined) {
          const tools = d.tools.map((t) => schemas.get(t.name)!)
          const text = template.render({ messages: d.messages, tools: tools.length > 0 ? tools : undefined, add_generation_prompt: false })
          const conv: Conversation = { line: row.line, intent: d.intent, category: row.category, kind: d.shape, tool: d.tool, messages: d.messages, tools, text }
          out.push(JSON.stringify(conv))
        }
        if (i % 2000 === 0) yield* ctx.progress.update(i)
      }
      finishStats(stats)
      const droppedCount = stats.rows - stats.examples
      if (droppedCount > params.maxDropFraction * stats.rows) {
        const reasons = Object.entries(stats.dropped).filter(([, k]) => k > 0).sort((a, b) => b[1] - a[1])
        const first = stats.droppedExamples[0]
        return yield* new StageError({
          message:
            `${droppedCount} of ${stats.rows} conversations (${((100 * droppedCount) / stats.rows).toFixed(1)}%) failed validation, above toolcalls.maxDropFraction ${params.maxDropFraction}: ` +
            reasons.map(([r, k]) => `${r} ${k}`).join(", ") +
            (first ? `; first: line ${first.line}: ${first.reason}: ${first.detail}` : "")
        })
      }
      fs.writeFileSync(ctx.outputs.conversations, out.join("\n") + (out.length ? "\n" : ""))
      fs.writeFileSync(ctx.outputs.stats, JSON.stringify(stats, null, 2) + "\n")
      const s = stats.shapes
      yield* ctx.log(
        `${stats.examples} conversations (${droppedCount} dropped): ${s.call + s["clarify-call"] + s["confirm-call"] + s.parallel} with calls (${s.parallel} parallel), ` +
          `${s.clarify + s["clarify-call"]} clarifications, ${s["confirm-call"] + s["confirm-declined"]} offers, ${s["no-tool"] + s["out-of-scope"]} without a tool; ` +
          `${(100 * stats.fractions.multiTurn).toFixed(1)}% multi-turn`
      )
      if (stats.toolsNeverCalled.length > 0) yield* ctx.log(`warning: tools never called: ${stats.toolsNeverCalled.join(", ")}`)
    })
})
