/**
 * The entities stage as a pure function: CSV text + params → rows + report,
 * or a failure message (with the report as far as it got). The stage module
 * (../entities.ts) only reads and writes files around it.
 */
import { CsvError, type CsvRecord, parse } from "../lib/csv.ts"
import { type OutputRow, Replacer, type UnknownPolicy, leaks } from "./replace.ts"
import { COLUMNS, isQuarantined, type Quarantined, validateRecord } from "./validate.ts"
import type { InputRow } from "./replace.ts"

export interface Params {
  readonly seed: number
  readonly unknownKinds: UnknownPolicy
  readonly maxBadFraction: number
}

export interface Report {
  /** rows written */
  readonly rows: number
  /** records quarantined (bad) */
  readonly bad: number
  /** bad / (valid + bad); rows dropped for unknown kinds are valid rows */
  readonly badFraction: number
  readonly quarantined: ReadonlyArray<Quarantined>
  /** kind → placeholders replaced in the rows written */
  readonly placeholders: Readonly<Record<string, number>>
  /** kinds without a dedicated generator → occurrences and the policy applied (and, under infer, the inferred generator) */
  readonly unknownKinds: Readonly<Record<string, { readonly count: number; readonly policy: UnknownPolicy; readonly inferredAs?: string }>>
  /** rows dropped under unknownKinds: drop */
  readonly droppedRows: number
  /** output rows with `{{`, `}}` or a fallback token: always 0, or the stage fails */
  readonly leaks: number
}

export type Outcome =
  | { readonly _tag: "ok"; readonly rows: ReadonlyArray<OutputRow>; readonly report: Report }
  | { readonly _tag: "fail"; readonly message: string; readonly report: Report | undefined }

const sortedRecord = (m: ReadonlyMap<string, number>): Record<string, number> =>
  Object.fromEntries([...m].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)))

export const processCsv = (text: string, params: Params, label = "dataset.csv"): Outcome => {
  let records
  try {
    records = parse(text)
  } catch (e) {
    if (e instanceof CsvError) return { _tag: "fail", message: `${label}: ${e.message}`, report: undefined }
    throw e
  }
  return processRecords(records, params, label)
}

/** The same from records already read (the stage streams its file through stages/lib/csv.ts). */
export const processRecords = (records: ReadonlyArray<CsvRecord>, params: Params, label = "dataset.csv"): Outcome => {
  const [header, ...body] = records
  if (!header || header.fields.join(",") !== COLUMNS.join(","))
    return { _tag: "fail", message: `${label} line 1: expected columns ${COLUMNS.join(",")}, got ${header?.fields.join(",") ?? "nothing"}`, report: undefined }
  if (body.length === 0) return { _tag: "fail", message: `${label}: only a header, no rows`, report: undefined }

  const valid: Array<InputRow> = []
  const bad: Array<Quarantined> = []
  for (const r of body) {
    const v = validateRecord(r)
    if (isQuarantined(v)) bad.push(v)
    else valid.push(v)
  }

  const replacer = new Replacer(params.seed, params.unknownKinds)
  const rows: Array<OutputRow> = []
  let leaked = 0
  let firstLeak = 0
  for (const r of valid) {
    const out = replacer.replace(r)
    if (out === undefined) continue
    if (leaks(out)) {
      leaked++
      if (firstLeak === 0) firstLeak = out.line
    }
    rows.push(out)
  }

  const total = valid.length + bad.length
  const badFraction = total === 0 ? 1 : bad.length / total
  const unknownKinds: Record<string, { count: number; policy: UnknownPolicy; inferredAs?: string }> = {}
  for (const [kind, s] of [...replacer.unknown].sort((a, b) => b[1].count - a[1].count)) {
    unknownKinds[kind] = params.unknownKinds === "infer" ? { count: s.count, policy: "infer", inferredAs: s.family } : { count: s.count, policy: params.unknownKinds }
  }
  const report: Report = {
    rows: rows.length,
    bad: bad.length,
    badFraction,
    quarantined: bad,
    placeholders: sortedRecord(replacer.placeholders),
    unknownKinds,
    droppedRows: replacer.droppedRows,
    leaks: leaked
  }

  if (badFraction > params.maxBadFraction)
    return {
      _tag: "fail",
      message: `${bad.length} of ${total} rows are bad (${(badFraction * 100).toFixed(1)}% > entities.maxBadFraction); first: line ${bad[0]?.line}: ${bad[0]?.reason}`,
      report
    }
  if (replacer.failedRows > 0) {
    const kinds = [...replacer.unknown]
    const shown = kinds
      .slice(0, 5)
      .map(([k, s]) => `{{${k}}} (${s.count}×, line${s.lines.length > 1 ? "s" : ""} ${s.lines.join(", ")}${s.rows > s.lines.length ? ", …" : ""})`)
      .join(", ")
    return {
      _tag: "fail",
      message: `${kinds.length} placeholder kind${kinds.length > 1 ? "s" : ""} without a generator in ${replacer.failedRows} row${replacer.failedRows > 1 ? "s" : ""} (entities.unknownKinds: fail): ${shown}${kinds.length > 5 ? `, and ${kinds.length - 5} more` : ""}; set entities.unknownKinds to infer or drop`,
      report
    }
  }
  if (leaked > 0) return { _tag: "fail", message: `${leaked} output rows still hold a placeholder or a fallback token (first: line ${firstLeak}); this is a bug in stages/entities`, report }
  return { _tag: "ok", rows, report }
}
