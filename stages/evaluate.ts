/**
 * eval: what the trained adapter does on the validation set, and gates.
 *
 * Measured on `eval.maxSamples` validation examples drawn across intents (seeded, stratified:
 * stages/evaluate/sample.ts), not the first lines of a file written in intent order:
 * - valLoss: mean cross-entropy over the assistant tokens (teacher forcing), and valPerplexity,
 *   its exponential; per intent in the report;
 * - with `eval.compareBase`, the same for the base model without the adapter, so the report
 *   shows what fine-tuning bought.
 * Written to metrics.json (the stage's metrics) and report.md (the per-intent table).
 * Generation-based metrics (decision, tool-name and argument accuracy from greedy decoding)
 * need the native core's KV-cache decoding, which is not built yet.
 *
 * Gates: `eval.gates: { metric: threshold }` fail the stage when a metric misses its
 * threshold: metrics named *Loss or *Perplexity must be at most the threshold, the others at
 * least. The failure stops what depends on eval (upload); the rest of the plan still runs.
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
import { readJsonl } from "./lib/jsonl.ts"
import { protocol, type ResultEvent } from "./evaluate/protocol.ts"
import { stratifiedSample } from "./evaluate/sample.ts"
import { download } from "./download.ts"
import { tokenize } from "./tokenize.ts"
import { train } from "./train.ts"
import { split } from "./split.ts"
import { addTally, emptyTally, type EvalConversation, metricsOf, scoreTurn, type Tally } from "./evaluate/generation.ts"

export const EvalParams = Schema.Struct({
  maxSamples: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1_000_000 })), 32),
  compareBase: withDefault(Schema.Boolean, false),
  /** the sample's seed */
  seed: withDefault(Schema.Int, 42),
  /** conversations of the sample to generate on, greedily, at every assistant turn (0: none) */
  generate: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 100_000 })), 16),
  /** the longest generated turn, in tokens */
  maxNewTokens: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 8192 })), 160),
  gates: withDefault(Schema.Record(Schema.String, Schema.Finite), {})
})

// the worker is this stage's code too: the code fingerprint follows `new URL(…, import.meta.url)` like an import
const WORKER = fileURLToPath(new URL("./evaluate/worker.ts", import.meta.url))

/** The gates a set of metrics misses, as one-line reasons. */
export const missedGates = (metrics: Readonly<Record<string, number>>, gates: Readonly<Record<string, number>>): Array<string> =>
  Object.entries(gates).flatMap(([name, threshold]) => {
    const v = metrics[name]
    if (v === undefined) return [`no metric named ${name} (metrics: ${Object.keys(metrics).join(", ")})`]
    const lowerIsBetter = name.endsWith("Loss") || name.endsWith("Perplexity") || (name.endsWith("Rate") && /leak|NotInUser/i.test(name))
    const ok = lowerIsBetter ? v <= threshold : v >= threshold
    return ok ? [] : [`${name} ${v.toFixed(4)} ${lowerIsBetter ? ">" : "<"} ${threshold}`]
  })

/** The metrics this stage reports; a gate must name one of them. */
export const GENERATION_METRICS = [
  "turns", "decisionAccuracy", "toolNameAccuracy", "argExactMatch", "argAccuracy", "jsonValidity", "schemaValidity", "argNotInUserRate",
  "clarificationPrecision", "clarificationRecall", "statesResultRate", "leakRate", "rougeL"
] as const
export const METRICS = [
  "samples", "intents", "valLoss", "valPerplexity", "baseValLoss", "baseValPerplexity",
  ...GENERATION_METRICS, ...GENERATION_METRICS.map((m) => `base${m.charAt(0).toUpperCase()}${m.slice(1)}`)
] as const

const gatesProblem = (p: typeof EvalParams.Type): string | undefined => {
  for (const name of Object.keys(p.gates)) {
    if (!(METRICS as ReadonlyArray<string>).includes(name)) return `eval.gates.${name}: no such metric (metrics: ${METRICS.join(", ")})`
    if (name.startsWith("base") && !p.compareBase) return `eval.gates.${name}: needs eval.compareBase: true`
  }
  return undefined
}

export const evaluate = Stage.make({
  name: "eval",
  description: "validation metrics and gates",
  module: import.meta.url,
  versions: () => ({ addon: addonBuildId() }),
  params: { eval: EvalParams },
  inputs: { adapter: train.out.adapter, val: tokenize.out.val, valExamples: tokenize.out.valExamples, conversations: split.out.val, model: download.out.model },
  outputs: { metrics: Stage.file("metrics.json", { metrics: true }), report: Stage.file("report.md") },
  resources: { memoryMB: 2000 },
  estimate: ({ params, inputSizes }) => ({
    // the NF4-rounded base in fp32: 4 bytes a parameter (bf16 on disk: 2)
    memoryBytes: Math.round(2 * (inputSizes["model"] ?? 0) + 2 ** 30),
    bytes: { metrics: 1000, report: 5000 },
    // forward only: ~2 FLOP a parameter a token at ~150 GFLOP/s, ~600 tokens a sample
    seconds: 3 + ((params.eval.compareBase ? 2 : 1) * params.eval.maxSamples * 600 * 2 * ((inputSizes["model"] ?? 0) / 2)) / 150e9
  }),
  // a gate on a metric that does not exist would only fail after training
  preflight: ({ params }) => gatesProblem(params.eval),
  run: (ctx) =>
    Effect.gen(function* () {
      const { maxSamples, compareBase, gates, seed, generate, maxNewTokens } = ctx.params.eval
      const examples = readJsonl<{ line: number; intent: string }>(ctx.inputs.valExamples)
      const chosen = stratifiedSample(examples.map((e) => e.intent), maxSamples, seed)
      // the conversations to generate on: a stratified subset of the chosen examples
      const byLine = new Map(readJsonl<EvalConversation>(ctx.inputs.conversations).map((c) => [c.line, c]))
      const genIdx = stratifiedSample(chosen.map((i) => examples[i]!.intent), generate, seed ^ 0x5eed)
      const conversations = genIdx.map((k) => byLine.get(examples[chosen[k]!]!.line)).filter((c): c is EvalConversation => c !== undefined)
      let result: ResultEvent | undefined
      yield* runWorker({
        file: WORKER,
        label: "evaluator",
        protocol,
        job: {
          modelDir: ctx.inputs.model,
          adapterDir: ctx.inputs.adapter,
          valBin: ctx.inputs.val,
          examples: chosen,
          compareBase,
          generate: conversations.map((c) => ({ messages: c.messages, tools: c.tools })),
          maxNewTokens
        },
        jobFile: path.join(ctx.scratchDir, "job.json"),
        onEvent: (e) => Effect.sync(() => void (result = e))
      })
      if (result === undefined) return yield* new StageError({ message: "the evaluator ended without a result" })
      const { metrics, report } = summarize(chosen.map((i) => examples[i]!), result, conversations)
      fs.writeFileSync(ctx.outputs.metrics, JSON.stringify(metrics, null, 2) + "\n")
      fs.writeFileSync(ctx.outputs.report, report)
      yield* ctx.log(Object.entries(metrics).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`).join(", "))
      const missed = missedGates(metrics, gates)
      if (missed.length > 0) return yield* new StageError({ message: `eval.gates: ${missed.join("; ")}` })
    })
})

/** Token-weighted loss per intent and overall, their perplexities, and the Markdown report. */
export const summarize = (
  examples: ReadonlyArray<{ readonly line: number; readonly intent: string }>,
  r: ResultEvent,
  conversations: ReadonlyArray<EvalConversation> = []
): { metrics: Record<string, number>; report: string } => {
  const agg = (rows: ReadonlyArray<{ lossSum: number; tokens: number }>, idx: ReadonlyArray<number>) => {
    let sum = 0
    let tokens = 0
    for (const i of idx) {
      sum += rows[i]!.lossSum
      tokens += rows[i]!.tokens
    }
    return tokens ? sum / tokens : NaN
  }
  const all = examples.map((_, i) => i)
  const byIntent = new Map<string, Array<number>>()
  examples.forEach((e, i) => byIntent.set(e.intent, [...(byIntent.get(e.intent) ?? []), i]))
  const round = (x: number) => Math.round(x * 1e4) / 1e4
  const metrics: Record<string, number> = { samples: examples.length, intents: byIntent.size }
  const valLoss = agg(r.adapter, all)
  metrics["valLoss"] = round(valLoss)
  metrics["valPerplexity"] = round(Math.exp(valLoss))
  if (r.base) {
    const b = agg(r.base, all)
    metrics["baseValLoss"] = round(b)
    metrics["baseValPerplexity"] = round(Math.exp(b))
  }
  const rows = [...byIntent.entries()].sort(([a], [b]) => (a < b ? -1 : 1))
  const lines = [
    "# Evaluation",
    "",
    `${examples.length} validation examples across ${byIntent.size} intents (seeded, stratified); loss is the mean cross-entropy over assistant tokens, teacher-forced.`,
    "",
    `| | loss | perplexity |${r.base ? " base loss | base perplexity |" : ""}`,
    `|---|---:|---:|${r.base ? "---:|---:|" : ""}`,
    `| **all** | ${valLoss.toFixed(4)} | ${Math.exp(valLoss).toFixed(2)} |${r.base ? ` ${agg(r.base, all).toFixed(4)} | ${Math.exp(agg(r.base, all)).toFixed(2)} |` : ""}`,
    "",
    `| intent | examples | loss | perplexity |${r.base ? " base loss | Δ loss |" : ""}`,
    `|---|---:|---:|---:|${r.base ? "---:|---:|" : ""}`,
    ...rows.map(([intent, idx]) => {
      const l = agg(r.adapter, idx)
      const b = r.base ? agg(r.base, idx) : NaN
      return `| ${intent} | ${idx.length} | ${l.toFixed(4)} | ${Math.exp(l).toFixed(2)} |${r.base ? ` ${b.toFixed(4)} | ${(l - b).toFixed(4)} |` : ""}`
    }),
    ""
  ]
  // generation: per turn, summed per intent and overall
  if (r.generated.length > 0) {
    const tallies = new Map<string, { adapter: Tally; base: Tally }>()
    let all = { adapter: emptyTally(), base: emptyTally() }
    for (const g of r.generated) {
      const c = conversations[g.conversation]
      if (!c) continue
      const a = scoreTurn(c, g.turn, g.text)
      const b = g.base !== null ? scoreTurn(c, g.turn, g.base) : emptyTally()
      const t = tallies.get(c.intent) ?? { adapter: emptyTally(), base: emptyTally() }
      tallies.set(c.intent, { adapter: addTally(t.adapter, a), base: addTally(t.base, b) })
      all = { adapter: addTally(all.adapter, a), base: addTally(all.base, b) }
    }
    const gm = metricsOf(all.adapter)
    Object.assign(metrics, gm)
    const hasBase = r.generated.some((g) => g.base !== null)
    const bm = hasBase ? metricsOf(all.base) : {}
    if (hasBase) for (const [k, v] of Object.entries(bm)) metrics[`base${k.charAt(0).toUpperCase()}${k.slice(1)}`] = v
    const show = (x: number | undefined) => (x === undefined ? "–" : x.toFixed(3))
    const cols = ["decisionAccuracy", "toolNameAccuracy", "argExactMatch", "jsonValidity", "schemaValidity", "clarificationRecall", "statesResultRate", "leakRate", "rougeL"]
    lines.push(
      "## Generation",
      "",
      `Greedy decoding (KV cache, native) at each of ${all.adapter.turns} assistant turns of ${new Set(r.generated.map((g) => g.conversation)).size} conversations, given the turns before it; each output scored against the data's turn (stages/evaluate/generation.ts).`,
      "",
      `| metric | adapter |${hasBase ? " base |" : ""}`,
      `|---|---:|${hasBase ? "---:|" : ""}`,
      ...Object.keys(gm).map((k) => `| ${k} | ${show(gm[k])} |${hasBase ? ` ${show(bm[k])} |` : ""}`),
      "",
      `| intent | turns | ${cols.join(" | ")} |`,
      `|---|---:|${cols.map(() => "---:").join("|")}|`,
      ...[...tallies.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([intent, t]) => {
        const m = metricsOf(t.adapter)
        return `| ${intent} | ${t.adapter.turns} | ${cols.map((c) => show(m[c])).join(" | ")} |`
      }),
      "",
      "### Examples",
      "",
      ...r.generated.slice(0, 6).flatMap((g) => {
        const c = conversations[g.conversation]!
        const ref = c.messages[g.turn]!
        const refText = ref.tool_calls?.length ? ref.tool_calls.map((t) => `<tool_call>${JSON.stringify({ name: t.function.name, arguments: t.function.arguments })}</tool_call>`).join(" ") : ref.content
        const cut = (x: string) => JSON.stringify(x.length > 300 ? x.slice(0, 300) + "…" : x)
        return [`- ${c.intent} (line ${c.line}), turn ${g.turn}`, `  - data: ${cut(refText)}`, `  - adapter: ${cut(g.text)}`, ...(g.base !== null ? [`  - base: ${cut(g.base)}`] : [])]
      }),
      ""
    )
  }
  return { metrics, report: lines.join("\n") }
}
