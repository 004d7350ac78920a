/**
 * toolcalls: each row becomes a conversation (`messages`, the Hugging Face
 * convention). Today: user turn and assistant answer; tools, tool calls and
 * the chat template arrive with issue #3.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Stage } from "../engine/index.ts"
import { readJsonl, writeJsonl } from "./lib/jsonl.ts"
import { withDefault } from "./lib/schema.ts"
import { entities, type Row } from "./entities.ts"

export const ToolcallsParams = Schema.Struct({
  distractors: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 20 })), 3),
  tools: withDefault(Schema.Record(Schema.String, Schema.NullOr(Schema.String)), {})
})

export interface Conversation {
  readonly intent: string
  readonly messages: ReadonlyArray<{ readonly role: "system" | "user" | "assistant"; readonly content: string }>
}

export const toolcalls = Stage.make({
  name: "toolcalls",
  description: "rows to conversations (tool calls: #3)",
  module: import.meta.url,
  params: { toolcalls: ToolcallsParams },
  inputs: { rows: entities.out.rows },
  outputs: { conversations: Stage.file("conversations.jsonl") },
  estimate: ({ inputSizes }) => ({ bytes: { conversations: Math.round((inputSizes["rows"] ?? 0) * 1.2) }, seconds: 1 }),
  run: (ctx) =>
    Effect.gen(function* () {
      const rows = readJsonl<Row>(ctx.inputs.rows)
      const conversations: Array<Conversation> = rows.map((r) => ({
        intent: r.intent,
        messages: [
          { role: "system", content: "You are a helpful customer-support assistant." },
          { role: "user", content: r.instruction },
          { role: "assistant", content: r.response }
        ]
      }))
      writeJsonl(ctx.outputs.conversations, conversations)
      yield* ctx.log(`${conversations.length} conversations`)
    })
})
