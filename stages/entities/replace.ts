/**
 * Placeholder syntax, and replacing the placeholders of one row.
 *
 * A placeholder is `{{Kind}}`: a kind name between double braces (spaces
 * around the name are allowed and the name is matched case-insensitively;
 * `entities` keys use the dataset's spelling of known kinds). Anything else
 * made of double braces is malformed: an unclosed `{{Order Number`, a stray
 * `}}`, `{{{Order Number}}}`, an empty `{{}}`, a name with a newline or odd
 * characters. Malformed placeholders are NOT repaired: guessing where an
 * unclosed name ends could eat real text, so the row is quarantined with its
 * line and a reason (see validate.ts) and counts toward maxBadFraction.
 *
 * Within a row every kind gets one value (instruction and response agree, so
 * `entities[kind]` is found verbatim wherever the placeholder was). Two
 * refinements keep the text natural without breaking that:
 * - a symbol the text already has right before a placeholder is not doubled:
 *   `#{{Order Number}}` → `#17628484`, `${{Refund Amount}}` and
 *   `{{Currency Symbol}}{{Refund Amount}}` → `$89.00`;
 * - in `'{{X}}' or '{{X}}'` (the dataset's "the 'Order History' or
 *   'Order History' section") the second occurrence of a list kind (UI
 *   labels, account types, review platforms) gets another value of the list.
 *   The first occurrence in each field is always `entities[kind]`.
 */
import { type Company, RowContext, streamOf } from "./context.ts"
import { fit } from "./fit.ts"
import { lookup } from "./generators.ts"
import { inferGenerator, labelOf } from "./infer.ts"
import { type Generator, normalizeKind } from "./values.ts"

/** A well-formed placeholder (group 1: the name), or a stray `{{` / `}}`. Global: reset lastIndex before use. */
export const PLACEHOLDER = /\{\{([^{}]*)\}\}|\{\{|\}\}/g
/** What a kind name may be once trimmed. */
export const KIND_NAME = /^[\p{L}\p{N}][\p{L}\p{N} _&'’/.,()+#-]{0,79}$/u
/** What must never reach the output: braces, double brackets, fallback tokens. */
export const LEAK = /\{\{|\}\}|\[\[|\]\]|\bVALUE\d+\b/
/**
 * `[[Contact Information]]`: the dataset's other placeholder syntax, used for
 * a field the customer is asked for ("please provide me with your [[Contact
 * Information]]"). It names the field, not a value: it becomes the field's
 * words in lower case ("your contact information"), never a made-up value.
 */
export const FIELD = /\[\[([^[\]]*)\]\]/g
export const fieldWords = (text: string, count?: (kind: string) => void): string =>
  text.indexOf("[[") < 0
    ? text
    : text.replace(FIELD, (whole, name: string) => {
        const kind = normalizeKind(name)
        if (!KIND_NAME.test(kind)) return whole
        count?.(`[[${kind}]]`)
        return kind.toLowerCase()
      })
export const FALLBACK = /\bVALUE\d+\b/

/** Why `text` has a malformed placeholder, or undefined when all are well formed. */
export const placeholderProblem = (text: string): string | undefined => {
  if (text.indexOf("{{") < 0 && text.indexOf("}}") < 0) return undefined
  const P = PLACEHOLDER
  P.lastIndex = 0
  let m: RegExpExecArray | null
  while ((m = P.exec(text)) !== null) {
    if (m[1] === undefined)
      return m[0] === "{{" ? `${text[m.index + 2] === "{" ? "too many braces" : "unclosed \"{{\""} at ${JSON.stringify(text.slice(m.index, m.index + 30))}` : `stray "}}" after ${JSON.stringify(text.slice(Math.max(0, m.index - 28), m.index + 2))}`
    if (!KIND_NAME.test(m[1].trim())) return `malformed placeholder ${JSON.stringify(m[0].length > 40 ? m[0].slice(0, 37) + "..." : m[0])}`
  }
  return undefined
}

export type UnknownPolicy = "infer" | "fail" | "drop"

export interface InputRow {
  readonly line: number
  readonly flags: string
  readonly instruction: string
  readonly category: string
  readonly intent: string
  readonly response: string
}

export interface OutputRow extends InputRow {
  /** every placeholder kind of the row → the value used */
  readonly entities: Readonly<Record<string, string>>
  /** the row's company (context.ts): the values its contact placeholders took, stated whole for the system prompt */
  readonly company: Company
}

interface Resolved {
  readonly kind: string
  readonly gen: Generator
  readonly stream: number
  readonly known: boolean
}

export interface UnknownStat {
  count: number
  rows: number
  readonly lines: Array<number>
  readonly family: string
}

/**
 * A placeholder right after "your" or "my" whose kind is a personal detail or
 * an identifier names the field: "may I have your {{Order Number}}" asks for
 * the order number, it does not quote one (a value there would be a number the
 * customer never gave), and "provide me with your {{Person Name}}" asks for a
 * name. It becomes the kind's words, and no value is recorded for it.
 */
export const FIELD_FAMILIES: ReadonlySet<string> = new Set(["order-number", "invoice-number", "tracking-number", "identifier", "person-name", "first-name", "last-name", "username", "email", "postal-code", "address"])
const FIELD_BEFORE = /\b(your|my)\s+$/i
/** the company's own details are values even after "your" ("your Summit Goods account" is not a field) */
export const COMPANY_KIND = /support|company|customer care|service|help|claims|store|business/i
export const fieldName = (kind: string): string => {
  const words = labelOf(kind).toLowerCase().replace(/\b(person|client|customer|user)\s+(?=(first |last )?name\b)/, "")
  return words
}

/** Between two occurrences of one kind: `' or '`, `" or "`, ` or `, `/`, `, `. */
const OR_BETWEEN = /^\s*['"“”‘’]?\s*(or|and|\/|,)\s*['"“”‘’]?\s*$/
const ABSORBED = "#$€£"

/**
 * Replaces placeholders row by row. One instance per run: it holds the
 * counts and the resolved kinds; its per-row scratch (context, maps) is reused.
 */
export class Replacer {
  readonly seed: number
  readonly policy: UnknownPolicy
  /** kind → occurrences replaced (rows that were written) */
  readonly placeholders = new Map<string, number>()
  /** unknown kind → stats */
  readonly unknown = new Map<string, UnknownStat>()
  droppedRows = 0
  /** rows refused under `fail` */
  failedRows = 0

  private readonly ctx = new RowContext()
  private readonly resolved = new Map<string, Resolved>()
  private readonly values = new Map<string, string>()
  private readonly counts = new Map<string, number>()

  constructor(seed: number, policy: UnknownPolicy) {
    this.seed = seed
    this.policy = policy
  }

  private resolve(raw: string): Resolved {
    let r = this.resolved.get(raw)
    if (r === undefined) {
      const known = lookup(raw)
      const gen = known ?? inferGenerator(raw)
      r = { kind: gen.kind, gen, stream: streamOf(normalizeKind(gen.kind).toLowerCase()), known: known !== undefined }
      this.resolved.set(raw, r)
    }
    return r
  }

  private render(text: string): string {
    if (text.indexOf("{{") < 0) return text
    const P = PLACEHOLDER
    P.lastIndex = 0
    let out = ""
    let last = 0
    let prevKind = ""
    let m: RegExpExecArray | null
    while ((m = P.exec(text)) !== null) {
      const raw = m[1]
      // validate.ts quarantines malformed placeholders; should one get here, it stays and the leak check fails the stage
      if (raw === undefined) continue
      const r = this.resolve(raw)
      if (FIELD_FAMILIES.has(r.gen.family) && FIELD_BEFORE.test(text.slice(Math.max(0, m.index - 12), m.index)) && !COMPANY_KIND.test(r.kind)) {
        // "may I have your {{Order Number}}": the field, not a value nobody gave
        out += text.slice(last, m.index) + fieldName(r.kind)
        last = P.lastIndex
        prevKind = r.kind
        this.counts.set(r.kind, (this.counts.get(r.kind) ?? 0) + 1)
        continue
      }
      let value = this.values.get(r.kind)
      if (value === undefined) {
        value = r.gen.make(this.ctx, r.stream, text, P.lastIndex)
        this.values.set(r.kind, value)
      }
      let piece = value
      if (prevKind === r.kind && r.gen.alt !== undefined && OR_BETWEEN.test(text.slice(last, m.index))) piece = r.gen.alt(this.ctx, r.stream, value)
      out += text.slice(last, m.index)
      if (out.length > 0 && ABSORBED.includes(piece[0]!) && out[out.length - 1] === piece[0]) piece = piece.slice(1)
      const fitted = fit(r.gen.family, piece, out.slice(-40), text.slice(P.lastIndex, P.lastIndex + 40))
      out += fitted.piece
      P.lastIndex += fitted.skip
      last = P.lastIndex
      prevKind = r.kind
      this.counts.set(r.kind, (this.counts.get(r.kind) ?? 0) + 1)
    }
    return out + text.slice(last)
  }

  /** The row with its placeholders replaced, or undefined when the unknown-kind policy keeps it out. */
  replace(row: InputRow): OutputRow | undefined {
    this.values.clear()
    this.counts.clear()
    this.ctx.reset(this.seed, row.line, row.instruction, row.response)
    const field = (kind: string) => this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1)
    const instruction = this.render(fieldWords(row.instruction, field))
    const response = this.render(fieldWords(row.response, field))
    let unknownInRow = false
    for (const kind of this.values.keys()) {
      const r = this.resolved.get(kind) ?? this.resolve(kind)
      if (r.known) continue
      unknownInRow = true
      let s = this.unknown.get(kind)
      if (s === undefined) {
        s = { count: 0, rows: 0, lines: [], family: r.gen.family }
        this.unknown.set(kind, s)
      }
      s.count += this.counts.get(kind) ?? 0
      s.rows++
      if (s.lines.length < 5) s.lines.push(row.line)
    }
    if (unknownInRow && this.policy !== "infer") {
      if (this.policy === "drop") this.droppedRows++
      else this.failedRows++
      return undefined
    }
    const entities: Record<string, string> = {}
    for (const [kind, value] of this.values) entities[kind] = value
    for (const [kind, n] of this.counts) this.placeholders.set(kind, (this.placeholders.get(kind) ?? 0) + n)
    return { line: row.line, flags: row.flags, instruction, category: row.category, intent: row.intent, response, entities, company: this.ctx.company() }
  }
}

/** Does anything in the row look like a placeholder or a fallback token? */
export const leaks = (row: OutputRow): boolean => {
  if (LEAK.test(row.instruction) || LEAK.test(row.response) || LEAK.test(row.flags) || LEAK.test(row.category) || LEAK.test(row.intent)) return true
  for (const k in row.entities) if (LEAK.test(k) || LEAK.test(row.entities[k]!)) return true
  return false
}
