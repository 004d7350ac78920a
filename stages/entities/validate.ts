/**
 * Row validation with an effect Schema. A record that fails is quarantined
 * with its line and a one-line reason naming each bad field.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import type { CsvRecord } from "../lib/csv.ts"
import { FALLBACK, type InputRow, placeholderProblem } from "./replace.ts"

export const COLUMNS = ["flags", "instruction", "category", "intent", "response"] as const

const notBlank = Schema.makeFilter((s: string) => (s.trim() === "" ? "is empty" : undefined))
const wellFormed = Schema.makeFilter((s: string) => placeholderProblem(s))
const noFallback = Schema.makeFilter((s: string) => {
  const m = FALLBACK.exec(s)
  return m ? `contains the fallback token ${m[0]}` : undefined
})
const pattern = (r: RegExp, what: string) => Schema.makeFilter((s: string) => (r.test(s) ? undefined : `${JSON.stringify(s.slice(0, 40))} is not ${what}`))

/** free text: not blank, placeholders well formed, no fallback tokens */
const Text = Schema.String.check(notBlank, wellFormed, noFallback)

export const RowSchema = Schema.Struct({
  /** the dataset's language-variation tags, one letter each; may be empty */
  flags: Schema.String.check(pattern(/^[A-Za-z]*$/, "a set of flag letters")),
  instruction: Text,
  category: Schema.String.check(notBlank, pattern(/^[A-Z][A-Z_]*$/, "a category name")),
  intent: Schema.String.check(notBlank, pattern(/^[a-z][a-z_]*$/, "an intent name")),
  response: Text
})

const decode = Schema.decodeUnknownResult(RowSchema, { errors: "all" })
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

export interface Quarantined {
  readonly line: number
  readonly reason: string
}

/** The reason a record is bad, or the row. */
export const validateRecord = (r: CsvRecord): InputRow | Quarantined => {
  if (r.fields.length !== COLUMNS.length) return { line: r.line, reason: `expected ${COLUMNS.length} fields, got ${r.fields.length}` }
  const [flags, instruction, category, intent, response] = r.fields as [string, string, string, string, string]
  const result = decode({ flags, instruction, category, intent, response })
  if (Result.isSuccess(result)) return { line: r.line, ...result.success }
  const reason = formatter(result.failure.issue)
    .issues.map((i) => `${(i.path ?? []).map((p) => String(typeof p === "object" ? p.key : p)).join(".")}: ${i.message}`)
    .join("; ")
  return { line: r.line, reason }
}

export const isQuarantined = (x: InputRow | Quarantined): x is Quarantined => "reason" in x
