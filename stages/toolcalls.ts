/**
 * toolcalls: every row becomes a conversation that teaches the model when and
 * how to call a tool.
 *
 *   system (with the intent's tool and `toolcalls.distractors` other tools)
 *   user: the instruction
 *   assistant: a `<tool_call>` with arguments found verbatim in the user's turn,
 *              or a clarifying question when a required argument is missing,
 *              or (intents mapped to no tool) the answer itself
 *   tool: a plausible, deterministic result         (calls only)
 *   assistant: the dataset's response              (calls only)
 *
 * Rendered with the model's own chat template through @huggingface/jinja, so
 * training text matches inference exactly. Written as JSONL with `messages`
 * and `tools` (the Hugging Face convention), the intent, and the text.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import { Stage, StageError } from "../engine/index.ts"
import { download } from "./download.ts"
import { entities } from "./entities.ts"
import { readJsonl } from "./lib/jsonl.ts"
import { chatTemplateOf } from "./lib/qwen3.ts"
import { hash32, Rng } from "./lib/rng.ts"
import { withDefault } from "./lib/schema.ts"
import { byName, CATALOGUE, DEFAULT_TOOLS, toolSchema, type ToolSpec } from "./toolcalls/catalogue.ts"

const Mapping = Schema.NullOr(Schema.Struct({ tool: Schema.String, args: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)) }))

export const ToolcallsParams = Schema.Struct({
  distractors: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 20 })), 3),
  seed: withDefault(Schema.Int, 42),
  systemPrompt: withDefault(Schema.String, "You are a helpful customer support assistant. Use the tools when they help; ask for missing details instead of guessing."),
  /** intent → { tool, args } (enumerated arguments), or null for no tool; merged over the defaults */
  tools: withDefault(Schema.Record(Schema.String, Mapping), {})
})
export type ToolcallsParams = typeof ToolcallsParams.Type

export interface Row {
  readonly line: number
  readonly intent: string
  readonly category: string
  readonly instruction: string
  readonly response: string
  readonly entities?: Readonly<Record<string, string>>
}

export type Kind = "call" | "clarify" | "answer"

export interface Message {
  readonly role: "system" | "user" | "assistant" | "tool"
  readonly content: string
  readonly tool_calls?: ReadonlyArray<{ readonly type: "function"; readonly function: { readonly name: string; readonly arguments: Record<string, string> } }>
}

export interface Conversation {
  readonly line: number
  readonly intent: string
  readonly category: string
  readonly kind: Kind
  readonly messages: ReadonlyArray<Message>
  readonly tools: ReadonlyArray<ReturnType<typeof toolSchema>>
  readonly text: string
}

export const mappingFor = (params: ToolcallsParams) => ({ ...DEFAULT_TOOLS, ...params.tools })

/** Checks the mapping against the catalogue once, before any row. */
export const validateMapping = (mapping: ReturnType<typeof mappingFor>): string | undefined => {
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
  return undefined
}

/** The messages and tools of one row (no rendering). */
export const conversationFor = (
  row: Row,
  params: ToolcallsParams,
  mapping: ReturnType<typeof mappingFor>
): { kind: Kind; messages: Array<Message>; tools: Array<ToolSpec> } => {
  const rng = new Rng(params.seed ^ hash32(`${row.line}:${row.intent}`))
  const m = mapping[row.intent]
  const tool = m ? byName.get(m.tool) : undefined
  const others = CATALOGUE.filter((t) => t !== tool)
  const distractors: Array<ToolSpec> = []
  const pool = [...others]
  for (let i = 0; i < params.distractors && pool.length > 0; i++) distractors.push(pool.splice(rng.nextU32() % pool.length, 1)[0]!)
  const tools = tool ? [...distractors] : distractors
  if (tool) tools.splice(rng.nextU32() % (tools.length + 1), 0, tool)
  const system: Message = { role: "system", content: params.systemPrompt }
  const user: Message = { role: "user", content: row.instruction }
  if (!tool || !m) return { kind: "answer", messages: [system, user, { role: "assistant", content: row.response }], tools }
  const args: Record<string, string> = { ...(m.args ?? {}) }
  for (const [name, spec] of Object.entries(tool.args)) {
    if (args[name] !== undefined || !spec.from) continue
    for (const kind of spec.from) {
      const v = row.entities?.[kind]
      // never invented: only a value the user actually wrote
      if (v !== undefined && v !== "" && row.instruction.includes(v)) {
        args[name] = v
        break
      }
    }
  }
  const missing = tool.required.find((r) => args[r] === undefined)
  if (missing !== undefined) {
    const asks = tool.args[missing]?.ask ?? [`Could you please tell me the ${missing.replaceAll("_", " ")}?`]
    return { kind: "clarify", messages: [system, user, { role: "assistant", content: asks[rng.nextU32() % asks.length]! }], tools }
  }
  const result = tool.result(args, rng)
  return {
    kind: "call",
    messages: [
      system,
      user,
      { role: "assistant", content: "", tool_calls: [{ type: "function", function: { name: tool.name, arguments: args } }] },
      { role: "tool", content: JSON.stringify(result) },
      { role: "assistant", content: row.response }
    ],
    tools
  }
}

export interface IntentStats {
  examples: number
  calls: number
  clarifications: number
  answers: number
}

export const toolcalls = Stage.make({
  name: "toolcalls",
  description: "conversations with tool calls, rendered with the chat template",
  module: import.meta.url,
  params: { toolcalls: ToolcallsParams },
  inputs: { rows: entities.out.rows, model: download.out.model },
  outputs: { conversations: Stage.file("conversations.jsonl"), stats: Stage.file("stats.json", { metrics: true }) },
  estimate: ({ inputSizes }) => ({ bytes: { conversations: Math.round((inputSizes["rows"] ?? 0) * 4), stats: 8000 }, seconds: 1 + (inputSizes["rows"] ?? 0) / 5e6 }),
  run: (ctx) =>
    Effect.gen(function* () {
      const params = ctx.params.toolcalls
      const mapping = mappingFor(params)
      const bad = validateMapping(mapping)
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
      const stats: Record<string, IntentStats> = {}
      const out: Array<string> = []
      // Tool schemas are rendered once per tool, not per row.
      const schemas = new Map(CATALOGUE.map((t) => [t.name, toolSchema(t)]))
      for (const [i, row] of rows.entries()) {
        const c = conversationFor(row, params, mapping)
        const tools = c.tools.map((t) => schemas.get(t.name)!)
        const text = template.render({ messages: c.messages, tools: tools.length > 0 ? tools : undefined, add_generation_prompt: false })
        const conv: Conversation = { line: row.line, intent: row.intent, category: row.category, kind: c.kind, messages: c.messages, tools, text }
        out.push(JSON.stringify(conv))
        const s = (stats[row.intent] ??= { examples: 0, calls: 0, clarifications: 0, answers: 0 })
        s.examples++
        if (c.kind === "call") s.calls++
        else if (c.kind === "clarify") s.clarifications++
        else s.answers++
        if (i % 2000 === 0) yield* ctx.progress.update(i)
      }
      fs.writeFileSync(ctx.outputs.conversations, out.join("\n") + (out.length ? "\n" : ""))
      const totals = Object.values(stats).reduce((a, s) => ({ examples: a.examples + s.examples, calls: a.calls + s.calls, clarifications: a.clarifications + s.clarifications, answers: a.answers + s.answers }), { examples: 0, calls: 0, clarifications: 0, answers: 0 })
      fs.writeFileSync(ctx.outputs.stats, JSON.stringify({ ...totals, perIntent: stats }, null, 2) + "\n")
      yield* ctx.log(`${totals.examples} conversations: ${totals.calls} tool calls, ${totals.clarifications} clarifications, ${totals.answers} answers`)
    })
})
