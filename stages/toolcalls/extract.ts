/**
 * Candidate argument values in the user's own words.
 *
 * Identifiers: the row's entity values (`{{Order Number}}` → `#17628484`) and
 * anything the user typed that looks like one: `#85632`, `INV-2023-55637`,
 * `ORD-48213377`, `purchase370795561790`, `order number 55120934`. Each gets a
 * label from its own prefix or the nearest word before it (order, purchase,
 * invoice, bill, refund, tracking); a tracking number is never taken for an
 * order. Values are kept verbatim (`#85632` keeps its `#`).
 *
 * Enumerated values (account tiers) and places (cities, countries) are
 * found by their words; a tier word that is also an everyday word ("free",
 * "basic", "plus") counts only next to account, plan, membership, ...
 */
import { ACCOUNT_TIERS, COUNTRIES } from "../entities/data.ts"

export type IdLabel = "order" | "invoice" | "refund" | "tracking" | "other" | "unlabeled"

export interface IdCandidate {
  readonly value: string
  readonly label: IdLabel
  /** where it starts in the text (candidates come in the order the user wrote them) */
  readonly at: number
}

export interface Candidates {
  readonly ids: ReadonlyArray<IdCandidate>
  /** account tiers, lower case (the enum's spelling) */
  readonly tiers: ReadonlyArray<string>
  readonly cities: ReadonlyArray<string>
  readonly countries: ReadonlyArray<string>
}

const LABEL_WORDS: ReadonlyArray<readonly [RegExp, IdLabel]> = [
  [/\btracking\b|\bshipment\b|\bparcel\b|\bpackage\b/i, "tracking"],
  [/\bgift ?cards?\b|\bcoupon\b|\bpromo\w*|\bvoucher\b|\bdiscount code\b|\bticket\b|\bcase\b|\bcard\b|\bphone\b|\baccount\b|\bmembership\b|\bpoints?\b/i, "other"],
  [/\binvoi\w*|\binovice|\bbills?\b|\breceipt\b/i, "invoice"],
  [/\brefund\w*|\brestitution\b|\breimbursement\b|\brebate\b/i, "refund"],
  [/\border\w*|\bpurchase\w*|\bodrer\b|\bordr\b/i, "order"]
]

/** `#85632`, `#A1B2C3`; `INV-2023-55637`, `ORD-48213377`, `R-104233`; a UPS number; a run of 5+ digits; digits glued to a keyword */
const ID_PATTERN = /#[A-Za-z0-9][A-Za-z0-9-]*\d[A-Za-z0-9-]*|#\d{3,}|\b[A-Z]{1,5}-(?:[A-Z0-9]+-)*\d[A-Z0-9]*\b|\b1Z[0-9A-Z]{16}\b|(?<=(?:order|purchase|invoice|bill|refund)s?)\d{5,}\b|\b\d{5,}\b/g

/** A label the value carries itself: its letters, or (last resort) the length of a bare digit run. */
const labelOfPrefix = (v: string): IdLabel | undefined => {
  if (/^INV-/i.test(v)) return "invoice"
  if (/^(ORD|PO|SO)-/i.test(v)) return "order"
  if (/^(R|RF|RFD|REF)-/i.test(v)) return "refund"
  if (/^1Z/.test(v)) return "tracking"
  // any other letters before a dash name some other kind of reference (GC-…, T-…, P-…)
  if (/^[A-Z]{1,5}-/i.test(v)) return "other"
  return undefined
}
const labelOfLength = (v: string): IdLabel => (/^\d{18,}$/.test(v) ? "tracking" : "unlabeled")

const labelBefore = (text: string, at: number): IdLabel => {
  // the nearest label word in the few words before the identifier
  const before = text.slice(Math.max(0, at - 32), at)
  let best: IdLabel = "unlabeled"
  let bestAt = -1
  for (const [re, label] of LABEL_WORDS) {
    const g = new RegExp(re.source, "gi")
    let m: RegExpExecArray | null
    while ((m = g.exec(before)) !== null) if (m.index > bestAt) [best, bestAt] = [label, m.index]
  }
  return best
}

/** Entity kinds whose values are identifiers, with their label. */
const ID_KINDS: Readonly<Record<string, IdLabel>> = { "Order Number": "order", "Invoice Number": "invoice", "Tracking Number": "tracking" }

const EVERYDAY_TIERS = new Set(["free", "basic", "standard", "plus", "pro", "business", "family", "student"])
const TIER_WORDS = ACCOUNT_TIERS.map((t) => t.toLowerCase())
const TIER_RE = new RegExp(`\\b(${TIER_WORDS.join("|")})\\b(\\s+(?:ac\\w*|profile|plan|membership|subscription|tier|version|option|level|one))?`, "gi")
const CITY_RE = new RegExp(`(?<![\\p{L}])(${COUNTRIES.flatMap((c) => c.cities).sort((a, b) => b.length - a.length).join("|")})(?![\\p{L}])`, "gu")
const COUNTRY_RE = new RegExp(`(?<![\\p{L}])(${COUNTRIES.map((c) => c.name).sort((a, b) => b.length - a.length).join("|")})(?![\\p{L}])`, "gu")

export const candidatesIn = (text: string, entities: Readonly<Record<string, string>> = {}): Candidates => {
  const ids: Array<IdCandidate> = []
  const seen = new Set<string>()
  const add = (value: string, label: IdLabel, at: number) => {
    if (seen.has(value)) return
    seen.add(value)
    ids.push({ value, label, at })
  }
  for (const [kind, label] of Object.entries(ID_KINDS)) {
    const v = entities[kind]
    if (v !== undefined && v !== "") {
      const at = text.indexOf(v)
      if (at >= 0) add(v, label, at)
    }
  }
  for (const m of text.matchAll(ID_PATTERN)) {
    const v = m[0]
    // a year, or a part of a value already taken (an entity, a phone number)
    if (/^(19|20)\d{2}$/.test(v) || [...seen].some((s) => s.includes(v))) continue
    const around = text.slice(Math.max(0, m.index - 1), m.index + v.length + 1)
    if (/[\d+][-\s]?$/.test(text.slice(Math.max(0, m.index - 2), m.index)) && !v.startsWith("#")) continue
    if (/^[.,]\d/.test(text.slice(m.index + v.length)) || /[$€£]/.test(around[0] ?? "")) continue
    const before = labelBefore(text, m.index)
    add(v, labelOfPrefix(v) ?? (before === "unlabeled" ? labelOfLength(v) : before), m.index)
  }
  ids.sort((a, b) => a.at - b.at)
  const tiers: Array<string> = []
  for (const m of text.matchAll(TIER_RE)) {
    const t = m[1]!.toLowerCase()
    if (EVERYDAY_TIERS.has(t) && m[2] === undefined) continue
    if (!tiers.includes(t)) tiers.push(t)
  }
  const cities = [...new Set([...text.matchAll(CITY_RE)].map((m) => m[1]!))]
  const countries = [...new Set([...text.matchAll(COUNTRY_RE)].map((m) => m[1]!))]
  return { ids, tiers, cities, countries }
}

/** The labels an argument wanting `want` accepts, best first: its own, an unlabeled one, and for an order a refund's (a refund is tracked by its order). */
const ACCEPTS: Readonly<Record<IdLabel, ReadonlyArray<IdLabel>>> = {
  order: ["order", "unlabeled", "refund"],
  invoice: ["invoice", "unlabeled"],
  refund: ["refund", "order", "unlabeled"],
  tracking: ["tracking"],
  other: ["other"],
  unlabeled: ["unlabeled"]
}

/** The identifiers a tool's argument may take, in the user's order, of the best label present. */
export const idsFor = (c: Candidates, want: IdLabel): ReadonlyArray<IdCandidate> => {
  for (const label of ACCEPTS[want]) {
    const found = c.ids.filter((i) => i.label === label)
    if (found.length > 0) return found
  }
  return []
}

export const pickId = (c: Candidates, want: IdLabel): IdCandidate | undefined => idsFor(c, want)[0]
