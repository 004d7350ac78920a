/**
 * eval: metrics of the trained adapter on the validation set, and gates.
 *
 * Today: the validation loss (mean cross-entropy over the assistant tokens) of
 * the adapter on the first `eval.maxSamples` validation sequences, and with
 * `eval.compareBase` the base model's, computed by the native core in a child
 * process. Generation-based metrics (tool-name and argument accuracy from
 * greedy decoding) are not implemented yet.
 *
 * Gates: `eval.gates: { metric: threshold }` fail the stage when a metric
 * misses its threshold: metrics named *Loss must be at most the threshold,
 * the others at least.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Stage, StageError } from "../engine/index.ts"
import { addonBuildId } from "./lib/addon.ts"
import { withDefault } from "./lib/schema.ts"
import { runWorker } from "./lib/worker.ts"
import { protocol } from "./evaluate/protocol.ts"
import { download } from "./download.ts"
import { tokenize } from "./tokenize.ts"
import { train } from "./train.ts"

export const EvalParams = Schema.Struct({
  maxSamples: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1_000_000 })), 32),
  compareBase: withDefault(Schema.Boolean, false),
  gates: withDefault(Schema.Record(Schema.String, Schema.Finite), {})
})

// the worker is this stage's code too: the code fingerprint follows `new URL(…, import.meta.url)` like an import
const WORKER = fileURLToPath(new URL("./evaluate/worker.ts", import.meta.url))

/** The gates a set of metrics misses, as one-line reasons. */
export const missedGates = (metrics: Readonly<Record<string, number>>, gates: Readonly<Record<string, number>>): Array<string> =>
  Object.entries(gates).flatMap(([name, threshold]) => {
    const v = metrics[name]
    if (v === undefined) return [`no metric named ${name} (metrics: ${Object.keys(metrics).join(", ")})`]
    const lowerIsBetter = name.endsWith("Loss")
    const ok = lowerIsBetter ? v <= threshold : v >= threshold
    return ok ? [] : [`${name} ${v.toFixed(4)} ${lowerIsBetter ? ">" : "<"} ${threshold}`]
  })

/** The metrics this stage reports; a gate must name one of them. */
export const METRICS = ["samples", "valLoss", "baseValLoss"] as const

const gatesProblem = (p: typeof EvalParams.Type): string | undefined => {
  for (const name of Object.keys(p.gates)) {
    if (!(METRICS as ReadonlyArray<string>).includes(name)) return `eval.gates.${name}: no such metric (metrics: ${METRICS.join(", ")})`
    if (name === "baseValLoss" && !p.compareBase) return `eval.gates.baseValLoss: needs eval.compareBase: true`
  }
  return undefined
}

export const evaluate = Stage.make({
  name: "eval",
  description: "validation metrics and gates",
  module: import.meta.url,
  versions: () => ({ addon: addonBuildId() }),
  params: { eval: EvalParams },
  inputs: { adapter: train.out.adapter, val: tokenize.out.val, model: download.out.model },
  outputs: { metrics: Stage.file("metrics.json", { metrics: true }) },
  resources: { memoryMB: 2000 },
  estimate: ({ params, inputSizes }) => ({
    bytes: { metrics: 1000 },
    // forward only: ~2 FLOP a parameter a token at ~150 GFLOP/s, ~600 tokens a sample
    seconds: 3 + ((params.eval.compareBase ? 2 : 1) * params.eval.maxSamples * 600 * 2 * ((inputSizes["model"] ?? 0) / 2)) / 150e9
  }),
  // a gate on a metric that does not exist would only fail after training
  preflight: ({ params }) => gatesProblem(params.eval),
  run: (ctx) =>
    Effect.gen(function* () {
      const { maxSamples, compareBase, gates } = ctx.params.eval
      let metrics: Record<string, number> | undefined
      yield* runWorker({
        file: WORKER,
        label: "evaluator",
        protocol,
        job: { modelDir: ctx.inputs.model, adapterDir: ctx.inputs.adapter, valBin: ctx.inputs.val, maxSamples, compareBase },
        jobFile: path.join(ctx.scratchDir, "job.json"),
        onEvent: (e) => Effect.sync(() => void (metrics = e.metrics))
      })
      if (metrics === undefined) return yield* new StageError({ message: "the evaluator ended without a result" })
      fs.writeFileSync(ctx.outputs.metrics, JSON.stringify(metrics, null, 2) + "\n")
      yield* ctx.log(Object.entries(metrics).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`).join(", "))
      const missed = missedGates(metrics, gates)
      if (missed.length > 0) return yield* new StageError({ message: `eval.gates: ${missed.join("; ")}` })
    })
})
