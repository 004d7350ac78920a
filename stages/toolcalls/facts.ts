/**
 * Facts in a text, for grounding: the things a support answer can get wrong by
 * making them up. Identifiers, amounts, dates, times, people's and companies'
 * names, URLs, phone numbers, e-mail addresses, and quantities with a unit
 * ("30 days", "5-7 business days", "15%"). A fact is grounded when the
 * conversation's context holds it: the system prompt, a user turn or a tool
 * result that came before.
 */
import { COMPANY_PREFIX, COMPANY_SUFFIX, FEMALE_FIRST, LAST_NAMES, MALE_FIRST, MONTHS } from "../entities/data.ts"

export type FactKind = "url" | "email" | "phone" | "money" | "id" | "date" | "time" | "quantity" | "name" | "company"

export interface Fact {
  readonly kind: FactKind
  readonly text: string
}

const MONTH = `(?:${MONTHS.join("|")})`
/** each pattern with a cheap test that must pass before the regex runs (most texts hold no e-mail address) */
const PATTERNS: ReadonlyArray<readonly [FactKind, RegExp, (t: string) => boolean]> = [
  ["url", /\bhttps?:\/\/[^\s)\]>"'<]+|\bwww\.[a-z0-9-]+(?:\.[a-z0-9-]+)+(?:\/[^\s)\]>"'<]*)?/gi, (t) => t.includes("http") || t.includes("www.")],
  ["email", /[\w.+-]+@[\w-]+(?:\.[\w-]+)+/g, (t) => t.includes("@")],
  ["phone", /\+\d{1,3}[\s-]\d[\d\s-]{6,}\d|\(?\b\d{3}\)?[-.\s]\d{3}[-.\s]\d{4}\b/g, (t) => /\d/.test(t)],
  ["money", /[$€£]\s?\d[\d,]*(?:\.\d{1,2})?|\b\d[\d,]*(?:\.\d{2})?\s?(?:USD|EUR|GBP|dollars|euros|pounds)\b/g, (t) => /\d/.test(t)],
  ["date", new RegExp(`\\b${MONTH} \\d{1,2}(?:, \\d{4})?(?:\\s?-\\s?(?:${MONTH} )?\\d{1,2}(?:, \\d{4})?)?|\\b\\d{1,2} ${MONTH}(?: \\d{4})?|\\b\\d{4}-\\d{2}-\\d{2}\\b`, "g"), (t) => /\d/.test(t)],
  ["time", /\b\d{1,2}(?::\d{2})?\s?(?:AM|PM|am|pm|a\.m\.|p\.m\.)/g, (t) => /\d/.test(t)],
  ["quantity", /\b\d+(?:[.,]\d+)?(?:\s?(?:-|–|to)\s?\d+(?:[.,]\d+)?)?\s?(?:%|percent\b|(?:business |working |calendar )?days?\b|hours?\b|minutes?\b|weeks?\b|months?\b|years?\b)/gi, (t) => /\d/.test(t)],
  ["id", /#[A-Za-z0-9][A-Za-z0-9-]*\d[A-Za-z0-9-]*|#\d+|\b[A-Z]{1,5}-(?:[A-Z0-9]+-)*\d[A-Z0-9]*\b|\b1Z[0-9A-Z]{16}\b|\b\d{5,}\b/g, (t) => /\d/.test(t)],
  ["company", new RegExp(`\\b(?:${COMPANY_PREFIX.join("|")}) (?:${COMPANY_SUFFIX.join("|")})\\b`, "g"), () => true]
]

/** People's names: a known first name, or Mr./Ms./Mrs./Dr./Mx. and a known surname. */
const FIRST_NAME = new RegExp(`(?<![\\p{L}])(?:${[...FEMALE_FIRST, ...MALE_FIRST].join("|")})(?![\\p{L}])`, "gu")
const TITLED_SURNAME = new RegExp(`\\b(?:Mr|Ms|Mrs|Dr|Mx)\\.? (${LAST_NAMES.join("|")})(?![\\p{L}])`, "gu")
const names = (text: string): Array<Fact> => [
  ...[...text.matchAll(FIRST_NAME)].map((m): Fact => ({ kind: "name", text: m[0] })),
  ...[...text.matchAll(TITLED_SURNAME)].map((m): Fact => ({ kind: "name", text: m[1]! }))
]

const trimUrl = (u: string) => u.replace(/[.,;:!?]+$/, "")

/** Every fact in `text`, each once, in a canonical spelling (see `normalize`). */
export const factsIn = (text: string): Array<Fact> => {
  const out: Array<Fact> = []
  const taken: Array<readonly [number, number]> = []
  const free = (a: number, b: number) => taken.every(([x, y]) => b <= x || a >= y)
  for (const [kind, re, may] of PATTERNS) {
    if (!may(text)) continue
    for (const m of text.matchAll(re)) {
      const start = m.index
      const raw = kind === "url" ? trimUrl(m[0]) : m[0].trim()
      const end = start + raw.length
      // a span already read as a longer fact (a phone number's digits are not an identifier)
      if (!free(start, end)) continue
      taken.push([start, end])
      out.push({ kind, text: raw })
    }
  }
  out.push(...names(text))
  return out
}

/** The spelling facts are compared in: lower case, no spaces around dashes, phone numbers as digits. */
export const normalize = (kind: FactKind, s: string): string => {
  if (kind === "phone") return s.replace(/\D/g, "")
  let t = s.toLowerCase().replace(/[–—]/g, "-").replace(/\s*-\s*/g, "-").replace(/\s+/g, " ")
  if (kind === "url") t = t.replace(/^https?:\/\//, "").replace(/\/$/, "")
  if (kind === "money") t = t.replace(/\s/g, "")
  if (kind === "quantity") t = t.replace(/\s?(-|to)\s?/g, "-").replace(/\s?percent\b/, "%").replace(/\bdays?\b/, "day").replace(/\bhours?\b/, "hour").replace(/\bminutes?\b/, "minute").replace(/\bweeks?\b/, "week").replace(/\bmonths?\b/, "month").replace(/\byears?\b/, "year")
  return t
}

/** A context's text prepared for `grounded`: its text in the identifier spelling, and its digits per part. */
export interface Context {
  readonly text: string
  readonly digits: string
}

/** Each part prepared once: a conversation's system prompt is read for every assistant turn. */
const prepared = new Map<string, readonly [string, string]>()
const prepare = (part: string): readonly [string, string] => {
  let p = prepared.get(part)
  if (p === undefined) {
    if (prepared.size > 512) prepared.clear()
    p = [normalize("id", part), part.replace(/\D/g, "")]
    prepared.set(part, p)
  }
  return p
}

export const contextOf = (parts: ReadonlyArray<string>): Context => {
  const ps = parts.map(prepare)
  return { text: ps.map((p) => p[0]).join("\n"), digits: ps.map((p) => p[1]).join("|") }
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Is the fact in the context's text, compared in its kind's spelling. */
export const grounded = (f: Fact, ctx: Context): boolean => {
  const n = normalize(f.kind, f.text)
  if (f.kind === "phone") return n.length >= 7 && ctx.digits.includes(n)
  if (f.kind === "quantity") {
    // "30 days" against a context saying "30 days" or "30-day"
    const num = /^[\d.,]+(-[\d.,]+)?/.exec(n)?.[0]
    return num !== undefined && new RegExp(`(^|[^\\d.,])${escape(num)}[ -]?${escape(n.slice(num.length).trim())}`).test(ctx.text)
  }
  // a URL is found with or without its scheme; an amount without the spaces it may have been written with
  return ctx.text.includes(n) || ctx.text.replace(/\s/g, "").includes(n.replace(/\s/g, ""))
}

/** The facts of `text` that the context does not hold. */
export const ungrounded = (text: string, ctx: Context): Array<Fact> => factsIn(text).filter((f) => !grounded(f, ctx))
