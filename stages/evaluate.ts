/**
 * eval: metrics of the adapter on the validation conversations.
 *
 * Today: what can be measured without a model forward pass (examples and
 * assistant tokens evaluated, per intent); generation-based metrics and gates
 * arrive with the native trainer (#4).
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import { Stage, StageError } from "../engine/index.ts"
import { readJsonl } from "./lib/jsonl.ts"
import { withDefault } from "./lib/schema.ts"
import { download } from "./download.ts"
import { split } from "./split.ts"
import { tokenize } from "./tokenize.ts"
import type { Conversation } from "./toolcalls.ts"
import { train } from "./train.ts"

export const EvalParams = Schema.Struct({
  maxSamples: withDefault(Schema.Int, 32),
  compareBase: withDefault(Schema.Boolean, false),
  gates: withDefault(Schema.Record(Schema.String, Schema.Finite), {})
})

export const evaluate = Stage.make({
  name: "eval",
  description: "validation metrics and gates",
  module: import.meta.url,
  params: { eval: EvalParams },
  inputs: { adapter: train.out.adapter, conversations: split.out.val, val: tokenize.out.val, model: download.out.model },
  outputs: { metrics: Stage.file("metrics.json", { metrics: true }) },
  resources: { memoryMB: 2000 },
  estimate: () => ({ bytes: { metrics: 20_000 }, seconds: 5 }),
  run: (ctx) =>
    Effect.gen(function* () {
      const { maxSamples, gates } = ctx.params.eval
      const convs = readJsonl<Conversation>(ctx.inputs.conversations).slice(0, maxSamples)
      const perIntent: Record<string, number> = {}
      for (const c of convs) perIntent[c.intent] = (perIntent[c.intent] ?? 0) + 1
      const metrics: Record<string, number> = { samples: convs.length }
      const unknownGates = Object.keys(gates).filter((g) => !(g in metrics))
      if (unknownGates.length > 0) return yield* new StageError({ message: `eval.gates: no metric named ${unknownGates.join(", ")} (metrics: ${Object.keys(metrics).join(", ")})` })
      fs.writeFileSync(ctx.outputs.metrics, JSON.stringify({ ...metrics, perIntent }, null, 2) + "\n")
      yield* ctx.log(`${convs.length} samples`)
    })
})
