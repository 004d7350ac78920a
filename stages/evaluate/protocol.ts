/**
 * The eval stage's protocol with its worker (stages/lib/worker.ts): the job
 * the stage writes and the worker decodes, and the one event it prints, the
 * metrics.
 */
import * as Schema from "effect/Schema"
import { Count } from "../lib/schema.ts"

export const Job = Schema.Struct({
  modelDir: Schema.String,
  adapterDir: Schema.String,
  valBin: Schema.String,
  maxSamples: Count,
  compareBase: Schema.Boolean
})
export type Job = typeof Job.Type

export const ResultEvent = Schema.Struct({ type: Schema.Literal("result"), metrics: Schema.Record(Schema.String, Schema.Number) })
export type ResultEvent = typeof ResultEvent.Type

export const protocol = { job: Job, events: ResultEvent }
