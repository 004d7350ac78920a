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
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Stage, StageError } from "../engine/index.ts"
import { buildId } from "../native/index.ts"
import { withDefault } from "./lib/schema.ts"
import { download } from "./download.ts"
import { split } from "./split.ts"
import { tokenize } from "./tokenize.ts"
import { train } from "./train.ts"

export const EvalParams = Schema.Struct({
  maxSamples: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1_000_000 })), 32),
  compareBase: withDefault(Schema.Boolean, false),
  gates: withDefault(Schema.Record(Schema.String, Schema.Finite), {})
})

const WORKER = fileURLToPath(new URL("../native/eval-worker.ts", import.meta.url))

/** The gates a set of metrics misses, as one-line reasons. */
export const missedGates = (metrics: Readonly<Record<string, number>>, gates: Readonly<Record<string, number>>): Array<string> =>
  Object.entries(gates).flatMap(([name, threshold]) => {
    const v = metrics[name]
    if (v === undefined) return [`no metric named ${name} (metrics: ${Object.keys(metrics).join(", ")})`]
    const lowerIsBetter = name.endsWith("Loss")
    const ok = lowerIsBetter ? v <= threshold : v >= threshold
    return ok ? [] : [`${name} ${v.toFixed(4)} ${lowerIsBetter ? ">" : "<"} ${threshold}`]
  })

export const evaluate = Stage.make({
  name: "eval",
  description: "validation metrics and gates",
  module: import.meta.url,
  codeFiles: ["../native/eval-worker.ts", "../native/trainer.ts", "../native/qwen3.ts"].map((f) => fileURLToPath(new URL(f, import.meta.url))),
  versions: () => ({ addon: buildId() }),
  params: { eval: EvalParams },
  inputs: { adapter: train.out.adapter, conversations: split.out.val, val: tokenize.out.val, model: download.out.model },
  outputs: { metrics: Stage.file("metrics.json", { metrics: true }) },
  resources: { memoryMB: 2000 },
  estimate: ({ params, inputSizes }) => ({
    bytes: { metrics: 1000 },
    // forward only: ~2 FLOP a parameter a token at ~150 GFLOP/s, ~600 tokens a sample
    seconds: 3 + ((params.eval.compareBase ? 2 : 1) * params.eval.maxSamples * 600 * 2 * ((inputSizes["model"] ?? 0) / 2)) / 150e9
  }),
  run: (ctx) =>
    Effect.gen(function* () {
      const { maxSamples, compareBase, gates } = ctx.params.eval
      const jobFile = path.join(ctx.scratchDir, "job.json")
      fs.writeFileSync(jobFile, JSON.stringify({ modelDir: ctx.inputs.model, adapterDir: ctx.inputs.adapter, valBin: ctx.inputs.val, maxSamples, compareBase }))
      const out = yield* Effect.callback<{ ok: true; text: string } | { ok: false; message: string }>((resume) => {
        const child = spawn(process.execPath, [WORKER, jobFile], { stdio: ["ignore", "pipe", "pipe"] })
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (d) => (stdout += d))
        child.stderr.on("data", (d) => (stderr += d))
        child.on("close", (code, signal) =>
          resume(Effect.succeed(code === 0 ? { ok: true, text: stdout } : { ok: false, message: `the evaluator ${signal ? `was killed by ${signal}` : `exited with code ${code}`}: ${stderr.trim().split("\n").slice(-3).join(" | ")}` }))
        )
        return Effect.sync(() => child.kill("SIGKILL"))
      })
      if (!out.ok) return yield* new StageError({ message: out.message })
      const metrics = JSON.parse(out.text.trim().split("\n").at(-1)!) as Record<string, number>
      fs.writeFileSync(ctx.outputs.metrics, JSON.stringify(metrics, null, 2) + "\n")
      yield* ctx.log(Object.entries(metrics).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`).join(", "))
      const missed = missedGates(metrics, gates)
      if (missed.length > 0) return yield* new StageError({ message: `eval.gates: ${missed.join("; ")}` })
    })
})
