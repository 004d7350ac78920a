/**
 * The eval stage's protocol with its worker (stages/lib/worker.ts): the job the stage writes
 * and the worker decodes, and the one event it prints: per sampled example, the summed loss and
 * the number of assistant tokens it covers, for the adapter and (with compareBase) the base.
 */
import * as Schema from "effect/Schema"

export const Job = Schema.Struct({
  modelDir: Schema.String,
  adapterDir: Schema.String,
  valBin: Schema.String,
  /** indices of the examples (not packed sequences) of val.bin to measure */
  examples: Schema.Array(Schema.Int),
  compareBase: Schema.Boolean,
  /** conversations to generate on: every assistant turn, given the turns before it */
  generate: Schema.Array(Schema.Struct({ messages: Schema.Array(Schema.Unknown), tools: Schema.Array(Schema.Unknown) })),
  maxNewTokens: Schema.Int
})
export type Job = typeof Job.Type

const PerExample = Schema.Struct({ lossSum: Schema.Number, tokens: Schema.Int })

const Generated = Schema.Struct({ conversation: Schema.Int, turn: Schema.Int, text: Schema.String, base: Schema.NullOr(Schema.String) })

export const ResultEvent = Schema.Struct({
  type: Schema.Literal("result"),
  adapter: Schema.Array(PerExample),
  base: Schema.NullOr(Schema.Array(PerExample)),
  /** greedy outputs at each assistant turn of the `generate` conversations (and the base's, with compareBase) */
  generated: Schema.Array(Generated)
})
export type ResultEvent = typeof ResultEvent.Type

export const protocol = { job: Job, events: ResultEvent }
