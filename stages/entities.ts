/**
 * entities: parse the dataset strictly and validate every row.
 *
 * Today: the strict CSV parse, row validation with a quarantine report, and
 * the bad-fraction gate. Placeholder replacement ({{Order Number}} → a real
 * looking value) arrives with issue #3.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import { Stage, StageError } from "../engine/index.ts"
import { CsvError, parse } from "./lib/csv.ts"
import { writeJsonl } from "./lib/jsonl.ts"
import { withDefault } from "./lib/schema.ts"
import { download } from "./download.ts"

export const EntitiesParams = Schema.Struct({
  seed: withDefault(Schema.Int, 42),
  unknownKinds: withDefault(Schema.Literals(["infer", "fail", "drop"]), "infer"),
  maxBadFraction: withDefault(Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 })), 0.01)
})

const COLUMNS = ["flags", "instruction", "category", "intent", "response"] as const

export interface Row {
  readonly line: number
  readonly flags: string
  readonly instruction: string
  readonly category: string
  readonly intent: string
  readonly response: string
}

export const entities = Stage.make({
  name: "entities",
  description: "parse and validate rows (placeholder replacement: #3)",
  module: import.meta.url,
  params: { entities: EntitiesParams },
  inputs: { dataset: download.out.dataset },
  outputs: { rows: Stage.file("rows.jsonl"), report: Stage.file("report.json", { metrics: true }) },
  estimate: ({ inputSizes }) => ({ bytes: { rows: Math.round((inputSizes["dataset"] ?? 0) * 1.3), report: 10_000 }, seconds: 1 + (inputSizes["dataset"] ?? 0) / 50e6 }),
  run: (ctx) =>
    Effect.gen(function* () {
      const text = fs.readFileSync(ctx.inputs.dataset, "utf8")
      const records = yield* Effect.try({ try: () => parse(text), catch: (e) => new StageError({ message: `dataset.csv: ${(e as CsvError).message}` }) })
      const [header, ...body] = records
      if (!header || header.fields.join(",") !== COLUMNS.join(","))
        return yield* new StageError({ message: `dataset.csv line 1: expected columns ${COLUMNS.join(",")}, got ${header?.fields.join(",") ?? "nothing"}` })
      const rows: Array<Row> = []
      const bad: Array<{ line: number; reason: string }> = []
      for (const r of body) {
        if (r.fields.length !== COLUMNS.length) {
          bad.push({ line: r.line, reason: `expected ${COLUMNS.length} fields, got ${r.fields.length}` })
          continue
        }
        const [flags, instruction, category, intent, response] = r.fields as [string, string, string, string, string]
        const empty = COLUMNS.filter((_, i) => i > 0 && r.fields[i]!.trim() === "")
        if (empty.length > 0) {
          bad.push({ line: r.line, reason: `empty ${empty.join(", ")}` })
          continue
        }
        if (!/^[a-z_]+$/.test(intent)) {
          bad.push({ line: r.line, reason: `intent ${JSON.stringify(intent)} is not an intent name` })
          continue
        }
        rows.push({ line: r.line, flags, instruction, category, intent, response })
      }
      const total = rows.length + bad.length
      const fraction = total === 0 ? 1 : bad.length / total
      fs.writeFileSync(ctx.outputs.report, JSON.stringify({ rows: rows.length, bad: bad.length, badFraction: fraction, quarantined: bad }, null, 2) + "\n")
      yield* ctx.log(`${rows.length} rows, ${bad.length} quarantined`)
      if (fraction > ctx.params.entities.maxBadFraction)
        return yield* new StageError({ message: `${bad.length} of ${total} rows are bad (${(fraction * 100).toFixed(1)}% > entities.maxBadFraction); first: line ${bad[0]?.line}: ${bad[0]?.reason}` })
      writeJsonl(ctx.outputs.rows, rows)
    })
})
