/**
 * entities: parse the dataset strictly, validate every row, and replace the
 * dataset's placeholders (`{{Order Number}}`) with realistic values, so no
 * placeholder or fallback token (`VALUE8541`) ever reaches training text.
 *
 * - Parse: strict RFC 4180 (stages/lib/csv.ts), streamed in chunks; a broken
 *   file, a NUL byte, bytes that are not UTF-8 or a record of many megabytes
 *   fail the stage with the line they are on.
 * - Validate: each record against an effect Schema (stages/entities/validate.ts):
 *   five fields, non-blank instruction/category/intent/response, an intent
 *   name, a category name, well-formed placeholders, no fallback tokens. Bad
 *   records are quarantined in the report with their line and reason; more
 *   than `entities.maxBadFraction` of them fails the stage. Malformed
 *   placeholders (`{{Order Number` unclosed, stray `}}`, `{{{X}}}`, `{{}}`)
 *   are quarantined, not repaired (stages/entities/replace.ts says why).
 * - Replace: a value per kind, a pure function of (`entities.seed`, row line,
 *   kind), the same in instruction and response; kinds that must agree share
 *   a per-row context (city of the country, the client's salutation, the
 *   company's URLs and e-mail, the currency). Each output row is
 *   `{ line, flags, instruction, category, intent, response, entities }`
 *   with `entities` mapping every kind of the row to the value used.
 *
 * Unknown kinds (no dedicated generator; stages/entities/generators.ts lists
 * the dedicated ones), policy `entities.unknownKinds`:
 * - `infer` (default): pick a generator from the kind's words, in this order:
 *   Email → e-mail (support mailbox of the row's company for support/contact
 *   kinds, else a person's); URL/Website/Link/Site → URL on the row's company
 *   domain (path from the other words); Phone/Telephone/Mobile/Fax/Contact
 *   Number → phone; a kind starting with a UI verb (Forgot, Reset, Change,
 *   Manage, Submit...) → UI label; Amount/Price/Fee/Cost/Charge/Total/Balance →
 *   money in the row's currency; Number/ID/Code/No/Reference/SKU/Serial/Key →
 *   identifier `<INITIALS>-NNNNNNNN`; Name → company, first, last or full
 *   person name; Date/Day/Deadline → date; Hours/Schedule → opening hours;
 *   Time/Hour/Cut-off → time; City → city, Country/Region → country (the row's
 *   country), ZIP/Postal → postal code, Address/Location/Street/Store →
 *   street address in the row's country; Year → year; Feature N → feature;
 *   Percent/Discount/Rate → percentage; Company/Brand/Merchant → company
 *   name; otherwise a UI label made of the kind's own words
 *   (`{{Payment Settings}}` → "Payment Settings"). The report lists each
 *   inferred kind with its count and `inferredAs`.
 * - `fail`: the stage fails, naming the kinds, their counts and the first
 *   row lines of each.
 * - `drop`: rows holding an unknown kind are left out (`droppedRows`); they
 *   are valid rows, so they do not count toward maxBadFraction.
 *
 * Last, the stage checks every output row for `{{`, `}}` and `VALUE<digits>`
 * and fails if any is found (report `leaks`; 0 unless the code is wrong).
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import { Stage, StageError } from "../engine/index.ts"
import { processRecords } from "./entities/process.ts"
import { CsvError, readFile as readCsvFile } from "./lib/csv.ts"
import type { OutputRow } from "./entities/replace.ts"
import { writeJsonl } from "./lib/jsonl.ts"
import { withDefault } from "./lib/schema.ts"
import { download } from "./download.ts"

export const EntitiesParams = Schema.Struct({
  seed: withDefault(Schema.Int, 42),
  unknownKinds: withDefault(Schema.Literals(["infer", "fail", "drop"]), "infer"),
  maxBadFraction: withDefault(Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 })), 0.01)
})

/** A row of rows.jsonl. */
export type Row = OutputRow

export const entities = Stage.make({
  name: "entities",
  description: "parse and validate rows; replace placeholders with realistic values",
  module: import.meta.url,
  params: { entities: EntitiesParams },
  inputs: { dataset: download.out.dataset },
  outputs: { rows: Stage.file("rows.jsonl"), report: Stage.file("report.json", { metrics: true }) },
  estimate: ({ inputSizes }) => ({ bytes: { rows: Math.round((inputSizes["dataset"] ?? 0) * 1.3), report: 10_000 }, seconds: 1 + (inputSizes["dataset"] ?? 0) / 50e6 }),
  run: (ctx) =>
    Effect.gen(function* () {
      // the file as the user can open it, for messages
      const label = "out/download/dataset.csv"
      const records = yield* Effect.try({
        try: () => readCsvFile(ctx.inputs.dataset),
        catch: (e) => new StageError({ message: e instanceof CsvError ? `${label} ${e.message}` : `${label}: ${(e as Error).message}` })
      })
      const outcome = processRecords(records, ctx.params.entities, label)
      if (outcome.report) fs.writeFileSync(ctx.outputs.report, JSON.stringify(outcome.report, null, 2) + "\n")
      if (outcome._tag === "fail") return yield* new StageError({ message: outcome.message })
      const r = outcome.report
      const kinds = Object.keys(r.placeholders).length
      const unknown = Object.keys(r.unknownKinds)
      yield* ctx.log(
        `${r.rows} rows, ${r.bad} quarantined, ${Object.values(r.placeholders).reduce((a, b) => a + b, 0)} placeholders of ${kinds} kinds replaced` +
          (unknown.length ? `; unknown kinds (${ctx.params.entities.unknownKinds}): ${unknown.join(", ")}` : "") +
          (r.droppedRows ? `; ${r.droppedRows} rows dropped` : "")
      )
      writeJsonl(ctx.outputs.rows, outcome.rows)
    })
})
