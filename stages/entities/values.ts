/**
 * The value makers the generators are built from (money, phone numbers, URLs,
 * dates, names, addresses, tracking numbers), each with the format check its
 * values pass, and the Generator interface. See generators.ts.
 */
import {
  COMPANY_PREFIX,
  COMPANY_SUFFIX,
  COUNTRIES,
  FEMALE_FIRST,
  LAST_NAMES,
  MALE_FIRST,
  MONTHS,
  STORE_WORDS,
  SUPPORT_DAYS,
  TIME_ZONES
} from "./data.ts"
import { formatPhone, RowContext } from "./context.ts"

// ---------------------------------------------------------------------------
// Generators

export type Variety = "open" | "closed" | "ui"

export interface Generator {
  /** the kind as the dataset spells it (the key in a row's `entities`) */
  readonly kind: string
  /** what kind of value it makes: "order-number", "money", "ui-label", ... */
  readonly family: string
  readonly variety: Variety
  /** the format check, in words (for reports and docs) */
  readonly format: string
  /** the format check every value passes */
  readonly check: (value: string) => boolean
  /**
   * The value for this row. `text` and `end` locate the first occurrence
   * (the text right after it decides a few formats: `{{Date Range}} business
   * days` → `3-5`).
   */
  readonly make: (c: RowContext, stream: number, text: string, end: number) => string
  /** a different value of the same kind, for `'{{X}}' or '{{X}}'` (lists only) */
  readonly alt?: (c: RowContext, stream: number, first: string) => string
}

export const re = (r: RegExp) => (v: string) => r.test(v)
export const inList = (list: ReadonlyArray<string>) => {
  const set = new Set(list)
  return (v: string) => set.has(v)
}
export const altFrom = (list: ReadonlyArray<string>) => (c: RowContext, stream: number, first: string): string => {
  const i = list.indexOf(first)
  if (list.length < 2 || i < 0) return first
  return list[(i + 1 + c.int(stream, 7, list.length - 1)) % list.length]!
}

export const list = (kind: string, family: string, variety: Variety, values: ReadonlyArray<string>): Generator => ({
  kind,
  family,
  variety,
  format: `one of: ${values.filter((v, i) => values.indexOf(v) === i).join(" | ")}`,
  check: inList(values),
  make: (c, s) => c.pick(values, s, 0),
  alt: altFrom(values)
})

export const digits = (c: RowContext, s: number, i: number, n: number): string => {
  // n decimal digits, the first non-zero
  let out = String(1 + c.int(s, i, 9))
  let k = 1
  while (k < n) {
    const chunk = String(c.u32(s, i + k) % 1_000_000).padStart(6, "0")
    out += chunk.slice(0, Math.min(6, n - k))
    k += 6
  }
  return out
}

const pad2 = (n: number) => (n < 10 ? "0" : "") + n
const withCommas = (n: number): string => {
  const s = String(n)
  let out = ""
  for (let i = 0; i < s.length; i++) {
    if (i > 0 && (s.length - i) % 3 === 0) out += ","
    out += s[i]
  }
  return out
}

export const money = (c: RowContext, s: number): string => {
  const r = c.u32(s, 0) / 4294967296
  const [lo, hi] = r < 0.6 ? [5, 200] : r < 0.9 ? [200, 1000] : [1000, 5000]
  const whole = lo + c.int(s, 1, hi - lo)
  const cents = c.int(s, 2, 10) < 3 ? 0 : c.int(s, 3, 100)
  return `${c.currency()}${withCommas(whole)}.${pad2(cents)}`
}
export const MONEY = /^[$€£]\d{1,3}(,\d{3})*\.\d{2}$/

/** the company's support line (the row's company profile) */
export const SUPPORT_PHONE = (c: RowContext): string => c.company().phone
/** another line of the company (claims, sales): the same country's format, other digits */
export const OTHER_PHONE = (c: RowContext, s: number): string => formatPhone(c, c.supportCountry().phone, s, 0)
/** toll-free numbers of the support countries (data.ts SUPPORT_COUNTRIES) */
export const PHONE = /^(\+1-8(00|33|44|55|66|77|88)-[2-9]\d{2}-\d{4}|\+44 800 \d{3} \d{4}|\+353 1800 \d{3} \d{3}|\+49 800 \d{3} \d{4}|\+61 1800 \d{3} \d{3}|\+91 1800 \d{3} \d{4})$/

export const url = (c: RowContext, path: string): string => `https://www.${c.domain()}${path}`
export const URL_RE = /^https:\/\/www\.[a-z]+\.(com|co|shop|store)(\/[a-z0-9-]+)*$/

/** the company's support hours (the row's company profile) */
export const hours = (c: RowContext): string => c.company().hours
export const HOURS = new RegExp(`^(${SUPPORT_DAYS.join("|")}), ([6-9]|10):(00|30) AM - ([4-9]|10):00 PM (${TIME_ZONES.join("|")})$`)

const TIME_SUFFIX = ["", " ET", " PT", " CT", " GMT", " local time"]
export const time = (c: RowContext, s: number): string => {
  const h24 = 8 + c.int(s, 0, 13) // 8:00 .. 20:45
  const h12 = h24 > 12 ? h24 - 12 : h24
  return `${h12}:${c.pick(["00", "15", "30", "45"], s, 1)} ${h24 >= 12 ? "PM" : "AM"}${c.pick(TIME_SUFFIX, s, 2)}`
}
export const TIME = /^([1-9]|1[0-2]):(00|15|30|45) (AM|PM)( ET| PT| CT| GMT| local time)?$/

const MONTH = `(${MONTHS.join("|")})`
const monthLength = (year: number, m: number) =>
  m === 1 ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28) : [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m]!
export const date = (c: RowContext, s: number): string => {
  const year = 2021 + c.int(s, 0, 5)
  const m = c.int(s, 1, 12)
  return `${MONTHS[m]} ${1 + c.int(s, 2, monthLength(year, m))}, ${year}`
}
export const DATE = new RegExp(`^${MONTH} ([1-9]|[12]\\d|3[01]), 20\\d{2}$`)

/** "3-5": a span of days, for `{{Date Range}} business days` */
export const dayspan = (c: RowContext, s: number): string => {
  const lo = 1 + c.int(s, 5, 7)
  return `${lo}-${lo + 1 + c.int(s, 6, 4)}`
}
const DAYSPAN = /^(\d{1,2})-(\d{1,2})$/
export const isDayspan = (v: string) => {
  const m = DAYSPAN.exec(v)
  return m !== null && Number(m[1]) >= 1 && Number(m[1]) < Number(m[2])
}
export const dateRange = (c: RowContext, s: number): string => {
  const year = 2021 + c.int(s, 0, 5)
  const m = c.int(s, 1, 11) // January .. November, so the range never crosses a year
  const d = 1 + c.int(s, 2, 28)
  const len = 3 + c.int(s, 3, 28)
  let m2 = m
  let d2 = d + len
  if (d2 > monthLength(year, m)) {
    d2 -= monthLength(year, m)
    m2 = m + 1
  }
  return m2 === m ? `${MONTHS[m]} ${d}-${d2}, ${year}` : `${MONTHS[m]} ${d} - ${MONTHS[m2]} ${d2}, ${year}`
}
export const DATE_RANGE = new RegExp(`^${MONTH} ([1-9]|[12]\\d|3[01])(-([1-9]|[12]\\d|3[01])| - ${MONTH} ([1-9]|[12]\\d|3[01])), 20\\d{2}$`)
/** at the end of a placeholder: is it followed by "days" / "business days"? */
const DAYS_AFTER = /[ \t]*(business |working |calendar )?days?\b/iy
export const followedByDays = (text: string, end: number): boolean => {
  DAYS_AFTER.lastIndex = end
  return DAYS_AFTER.test(text)
}

const NAME_WORD = "\\p{Lu}[\\p{L}'’-]*\\p{Ll}"
export const FIRST_OR_LAST = new RegExp(`^${NAME_WORD}$`, "u")
const FULL_NAME = new RegExp(`^${NAME_WORD} ${NAME_WORD}$`, "u")
export const FIRST_NAMES = new Set([...FEMALE_FIRST, ...MALE_FIRST])
export const SURNAMES = new Set(LAST_NAMES)
/** "First Last" with both parts from the name lists */
export const isFullName = (v: string): boolean => {
  if (!FULL_NAME.test(v)) return false
  const sp = v.indexOf(" ")
  return FIRST_NAMES.has(v.slice(0, sp)) && SURNAMES.has(v.slice(sp + 1))
}
export const personName = (c: RowContext, s: number): string => {
  const female = (c.u32(s, 0) & 1) === 1
  return `${c.pick(female ? FEMALE_FIRST : MALE_FIRST, s, 1)} ${c.pick(LAST_NAMES, s, 2)}`
}
export const COMPANY = new RegExp(`^(${COMPANY_PREFIX.join("|")}) (${COMPANY_SUFFIX.join("|")})$`)

export const ALL_CITIES = new Map<string, string>() // city → country
for (const k of COUNTRIES) for (const city of k.cities) ALL_CITIES.set(city, k.name)
export const COUNTRY_NAMES = new Set(COUNTRIES.map((k) => k.name))
const STORE_PREFIX = new RegExp(`^(${STORE_WORDS.join("|")}) in (.+)$`)
export const storeLocation = (c: RowContext, s: number): string => {
  const cities = c.country().cities
  const k = Math.min(cities.length, 1 + c.int(s, 1, 3))
  const start = c.int(s, 2, cities.length)
  const chosen: Array<string> = []
  for (let i = 0; i < k; i++) chosen.push(cities[(start + i) % cities.length]!)
  const where = chosen.length === 1 ? chosen[0]! : `${chosen.slice(0, -1).join(", ")} and ${chosen[chosen.length - 1]!}`
  return `${c.pick(STORE_WORDS, s, 0)} in ${where}`
}
export const isStoreLocation = (v: string): boolean => {
  const m = STORE_PREFIX.exec(v)
  if (!m) return false
  const cities = m[2]!.split(/, | and /)
  const country = ALL_CITIES.get(cities[0]!)
  return country !== undefined && cities.every((x) => ALL_CITIES.get(x) === country) && new Set(cities).size === cities.length
}

export const PORTAL = new RegExp(`^((${COMPANY_PREFIX.join("|")}) (${COMPANY_SUFFIX.join("|")}) (account|online account|customer portal|app)|account on [a-z]+\\.(com|co|shop|store))$`)

export const trackingNumber = (c: RowContext, s: number): string => {
  const kind = c.int(s, 0, 3)
  if (kind === 0) {
    // UPS: 1Z + 6 shipper characters + 2 service digits + 8 digits
    const A = "ABCDEFGHJKLMNPRSTVWXY0123456789"
    let shipper = ""
    for (let i = 0; i < 6; i++) shipper += A[c.int(s, 10 + i, A.length)]
    return `1Z${shipper}${pad2(c.int(s, 1, 100))}${String(c.int(s, 2, 1e8)).padStart(8, "0")}`
  }
  if (kind === 1) return digits(c, s, 20, 12) // FedEx
  return `94${digits(c, s, 40, 20)}` // USPS
}
export const TRACKING = /^(1Z[0-9A-Z]{6}\d{10}|[1-9]\d{11}|94[1-9]\d{19})$/


/** The canonical spelling of a kind as written: trimmed, single spaces. */
export function normalizeKind(kind: string): string {
  return kind.trim().replace(/\s+/g, " ")
}
