/**
 * Entity generators: a realistic value for each placeholder kind of the
 * Bitext dataset (`{{Order Number}}` → `#17628484`).
 *
 * Determinism: every value is a pure function of (seed, row line, kind), via
 * integer hashing (no PRNG state is carried between rows or kinds, so adding a
 * placeholder to one row never changes the values of another kind or row).
 * Values that must agree within a row come from a shared per-row context:
 * the country (Delivery Country, Delivery City, Store Location), the company
 * (Website URL, Login Page URL, Customer Support Email, Company Name, ...),
 * the client (Person Name, Client Name, Client First/Last Name, Salutation;
 * the salutation matches the client's gender), the currency (Currency Symbol, Refund Amount
 * and every money kind; forced by the row's own text: `${{Refund Amount}}` or
 * "dollars" → `$`), the account type (Account Type, Profile Type) and the
 * feature list (Feature 1/2/3 are distinct).
 *
 * Variety classes: `open` kinds draw from large spaces (≥ 50 distinct values
 * per 1,000 draws, tested); `closed` kinds are real-world vocabularies with
 * fewer members (account types, account categories, salutations, currency
 * symbols, review platforms, feature names, years); `ui` kinds are labels of
 * buttons, pages and sections, which map to a few fixed UI words (data.ts
 * UI_LABELS).
 *
 * The generator table and its word lists are module constants; per row there
 * is one reused RowContext (reset, not reallocated).
 */
import {
  ACCOUNT_TIERS,
  COMPANY_PREFIX,
  COMPANY_SUFFIX,
  COUNTRIES,
  type Country,
  CURRENCIES,
  FEATURES,
  FEMALE_FIRST,
  LAST_NAMES,
  LOGIN_PATHS,
  MALE_FIRST,
  MONTHS,
  PERSONAL_MAIL_DOMAINS,
  PORTAL_TEMPLATES,
  REVIEW_PLATFORMS,
  SALUTATIONS,
  SALUTATIONS_F,
  SALUTATIONS_M,
  STORE_WORDS,
  STREET_NAMES,
  SUPPORT_DAYS,
  SUPPORT_MAILBOXES,
  TIME_ZONES,
  TLDS,
  UI_LABELS
} from "./data.ts"

// ---------------------------------------------------------------------------
// Hashing

/** murmur3's 32-bit finalizer: a bijection with good avalanche. */
const fmix = (x: number): number => {
  let h = x >>> 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** FNV-1a of a string, finalized; the stream id of a kind. */
export const streamOf = (s: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return fmix(h)
}

/** The row key: a hash of (seed, line). Seeds are any safe integer. */
export const rowKey = (seed: number, line: number): number => {
  const lo = seed >>> 0
  const hi = Math.floor(seed / 4294967296) >>> 0
  return fmix(fmix(fmix(lo ^ 0x243f6a88) ^ hi) ^ Math.imul(line >>> 0, 0x9e3779b1))
}

// Shared per-row streams (kind streams are hashes of the kind; these are small constants).
const S_COUNTRY = 1
const S_COMPANY = 2
const S_CLIENT = 3
const S_CURRENCY = 4
const S_ACCOUNT_TYPE = 5
const S_FEATURE = 6

/** Hints in the row's own text that fix its currency. */
const CURRENCY_HINT = /([$€£])\{\{|\b(dollars?|dollrs|usd|bucks)\b|\b(euros?|eur)\b|\b(pounds sterling|gbp|quid)\b/i

const TIER_BY_WORD = new Map(ACCOUNT_TIERS.map((t) => [t.toLowerCase(), t]))
const TIER_PLACEHOLDER = /\{\{\s*(account type|account category|profile type)\s*\}\}/i
/** a tier named in the text: "pro account", "the freemium profile", "onPremium account" (typos in "account" included) */
const TIER_NAMED = new RegExp(`(?:\\b|on)(${ACCOUNT_TIERS.join("|")})\\s+(?:ac\\w*|profile|plan|membership|subscription|tier)\\b`, "i")

/** Per-row state. One instance is reused for every row (`reset`). */
export class RowContext {
  key = 0
  instruction = ""
  response = ""
  private countryIx = -1
  private companyIx = -1
  private currencyValue: string | undefined = undefined
  private tier: string | undefined = undefined

  reset(seed: number, line: number, instruction: string, response: string): this {
    this.key = rowKey(seed, line)
    this.instruction = instruction
    this.response = response
    this.countryIx = -1
    this.companyIx = -1
    this.currencyValue = undefined
    this.tier = undefined
    return this
  }

  /** uniform uint32 for (row, stream, i) */
  u32(stream: number, i: number): number {
    return fmix(this.key ^ fmix((stream + Math.imul(i + 1, 0x9e3779b9)) >>> 0))
  }

  /** uniform integer in [0, n) */
  int(stream: number, i: number, n: number): number {
    return n <= 1 ? 0 : this.u32(stream, i) % n
  }

  pick<T>(list: ReadonlyArray<T>, stream: number, i: number): T {
    return list[this.int(stream, i, list.length)]!
  }

  country(): Country {
    if (this.countryIx < 0) this.countryIx = this.int(S_COUNTRY, 0, COUNTRIES.length)
    return COUNTRIES[this.countryIx]!
  }

  city(): string {
    const c = this.country()
    return this.pick(c.cities, S_COUNTRY, 1)
  }

  private companyIndex(): number {
    if (this.companyIx < 0) this.companyIx = this.int(S_COMPANY, 0, COMPANY_PREFIX.length * COMPANY_SUFFIX.length)
    return this.companyIx
  }

  companyName(): string {
    const i = this.companyIndex()
    return `${COMPANY_PREFIX[i % COMPANY_PREFIX.length]!} ${COMPANY_SUFFIX[Math.floor(i / COMPANY_PREFIX.length)]!}`
  }

  domain(): string {
    const i = this.companyIndex()
    const name = COMPANY_PREFIX[i % COMPANY_PREFIX.length]! + COMPANY_SUFFIX[Math.floor(i / COMPANY_PREFIX.length)]!
    return name.toLowerCase() + this.pick(TLDS, S_COMPANY, 1)
  }

  /** the client of Salutation / Client First Name / Client Last Name / Client Name */
  clientFemale(): boolean {
    return (this.u32(S_CLIENT, 0) & 1) === 1
  }
  clientFirst(): string {
    return this.pick(this.clientFemale() ? FEMALE_FIRST : MALE_FIRST, S_CLIENT, 1)
  }
  clientLast(): string {
    return this.pick(LAST_NAMES, S_CLIENT, 2)
  }
  clientSalutation(): string {
    return this.pick(this.clientFemale() ? SALUTATIONS_F : SALUTATIONS_M, S_CLIENT, 3)
  }

  currency(): string {
    if (this.currencyValue === undefined) {
      const m = CURRENCY_HINT.exec(this.instruction) ?? CURRENCY_HINT.exec(this.response)
      if (m) this.currencyValue = m[1] ?? (m[2] ? "$" : m[3] ? "€" : "£")
      else this.currencyValue = this.pick(CURRENCIES, S_CURRENCY, 0)
    }
    return this.currencyValue
  }

  /**
   * The row's account tier (Account Type, Account Category, Profile Type).
   * When the instruction names a tier itself ("delete pro account") and has
   * no tier placeholder, the response's placeholders take that tier.
   */
  accountTier(): string {
    if (this.tier === undefined) {
      const named = TIER_PLACEHOLDER.test(this.instruction) ? null : TIER_NAMED.exec(this.instruction)
      this.tier = named ? TIER_BY_WORD.get(named[1]!.toLowerCase())! : this.pick(ACCOUNT_TIERS, S_ACCOUNT_TYPE, 0)
    }
    return this.tier
  }

  /** the n-th (1-based) feature of the row; Feature 1, 2, 3 are distinct */
  feature(n: number): string {
    const base = this.int(S_FEATURE, 0, FEATURES.length)
    return FEATURES[(base + Math.max(0, n - 1)) % FEATURES.length]!
  }
}

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

const re = (r: RegExp) => (v: string) => r.test(v)
const inList = (list: ReadonlyArray<string>) => {
  const set = new Set(list)
  return (v: string) => set.has(v)
}
const altFrom = (list: ReadonlyArray<string>) => (c: RowContext, stream: number, first: string): string => {
  const i = list.indexOf(first)
  if (list.length < 2 || i < 0) return first
  return list[(i + 1 + c.int(stream, 7, list.length - 1)) % list.length]!
}

const list = (kind: string, family: string, variety: Variety, values: ReadonlyArray<string>): Generator => ({
  kind,
  family,
  variety,
  format: `one of: ${values.filter((v, i) => values.indexOf(v) === i).join(" | ")}`,
  check: inList(values),
  make: (c, s) => c.pick(values, s, 0),
  alt: altFrom(values)
})

const digits = (c: RowContext, s: number, i: number, n: number): string => {
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

const money = (c: RowContext, s: number): string => {
  const r = c.u32(s, 0) / 4294967296
  const [lo, hi] = r < 0.6 ? [5, 200] : r < 0.9 ? [200, 1000] : [1000, 5000]
  const whole = lo + c.int(s, 1, hi - lo)
  const cents = c.int(s, 2, 10) < 3 ? 0 : c.int(s, 3, 100)
  return `${c.currency()}${withCommas(whole)}.${pad2(cents)}`
}
const MONEY = /^[$€£]\d{1,3}(,\d{3})*\.\d{2}$/

const SUPPORT_PHONE = (c: RowContext, s: number): string =>
  `+1-8${c.pick(["00", "33", "44", "55", "66", "77", "88"], s, 0)}-${2 + c.int(s, 1, 8)}${pad2(c.int(s, 2, 100))}-${String(c.int(s, 3, 10000)).padStart(4, "0")}`
const PHONE = /^\+1-8(00|33|44|55|66|77|88)-[2-9]\d{2}-\d{4}$/

const url = (c: RowContext, path: string): string => `https://www.${c.domain()}${path}`
const URL_RE = /^https:\/\/www\.[a-z]+\.(com|co|shop|store)(\/[a-z0-9-]+)*$/

const hours = (c: RowContext, s: number): string => {
  const start = 6 + c.int(s, 1, 5)
  const startMin = c.int(s, 2, 4) === 0 ? "30" : "00"
  const end = 4 + c.int(s, 3, 7)
  return `${c.pick(SUPPORT_DAYS, s, 0)}, ${start}:${startMin} AM - ${end}:00 PM ${c.pick(TIME_ZONES, s, 4)}`
}
const HOURS = new RegExp(`^(${SUPPORT_DAYS.join("|")}), ([6-9]|10):(00|30) AM - ([4-9]|10):00 PM (${TIME_ZONES.join("|")})$`)

const TIME_SUFFIX = ["", " ET", " PT", " CT", " GMT", " local time"]
const time = (c: RowContext, s: number): string => {
  const h24 = 8 + c.int(s, 0, 13) // 8:00 .. 20:45
  const h12 = h24 > 12 ? h24 - 12 : h24
  return `${h12}:${c.pick(["00", "15", "30", "45"], s, 1)} ${h24 >= 12 ? "PM" : "AM"}${c.pick(TIME_SUFFIX, s, 2)}`
}
const TIME = /^([1-9]|1[0-2]):(00|15|30|45) (AM|PM)( ET| PT| CT| GMT| local time)?$/

const MONTH = `(${MONTHS.join("|")})`
const monthLength = (year: number, m: number) =>
  m === 1 ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28) : [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m]!
const date = (c: RowContext, s: number): string => {
  const year = 2021 + c.int(s, 0, 5)
  const m = c.int(s, 1, 12)
  return `${MONTHS[m]} ${1 + c.int(s, 2, monthLength(year, m))}, ${year}`
}
const DATE = new RegExp(`^${MONTH} ([1-9]|[12]\\d|3[01]), 20\\d{2}$`)

/** "3-5": a span of days, for `{{Date Range}} business days` */
const dayspan = (c: RowContext, s: number): string => {
  const lo = 1 + c.int(s, 5, 7)
  return `${lo}-${lo + 1 + c.int(s, 6, 4)}`
}
const DAYSPAN = /^(\d{1,2})-(\d{1,2})$/
const isDayspan = (v: string) => {
  const m = DAYSPAN.exec(v)
  return m !== null && Number(m[1]) >= 1 && Number(m[1]) < Number(m[2])
}
const dateRange = (c: RowContext, s: number): string => {
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
const DATE_RANGE = new RegExp(`^${MONTH} ([1-9]|[12]\\d|3[01])(-([1-9]|[12]\\d|3[01])| - ${MONTH} ([1-9]|[12]\\d|3[01])), 20\\d{2}$`)
/** at the end of a placeholder: is it followed by "days" / "business days"? */
const DAYS_AFTER = /[ \t]*(business |working |calendar )?days?\b/iy
const followedByDays = (text: string, end: number): boolean => {
  DAYS_AFTER.lastIndex = end
  return DAYS_AFTER.test(text)
}

const NAME_WORD = "\\p{Lu}[\\p{L}'’-]*\\p{Ll}"
const FIRST_OR_LAST = new RegExp(`^${NAME_WORD}$`, "u")
const FULL_NAME = new RegExp(`^${NAME_WORD} ${NAME_WORD}$`, "u")
const FIRST_NAMES = new Set([...FEMALE_FIRST, ...MALE_FIRST])
const SURNAMES = new Set(LAST_NAMES)
/** "First Last" with both parts from the name lists */
const isFullName = (v: string): boolean => {
  if (!FULL_NAME.test(v)) return false
  const sp = v.indexOf(" ")
  return FIRST_NAMES.has(v.slice(0, sp)) && SURNAMES.has(v.slice(sp + 1))
}
const personName = (c: RowContext, s: number): string => {
  const female = (c.u32(s, 0) & 1) === 1
  return `${c.pick(female ? FEMALE_FIRST : MALE_FIRST, s, 1)} ${c.pick(LAST_NAMES, s, 2)}`
}
const COMPANY = new RegExp(`^(${COMPANY_PREFIX.join("|")}) (${COMPANY_SUFFIX.join("|")})$`)

const ALL_CITIES = new Map<string, string>() // city → country
for (const k of COUNTRIES) for (const city of k.cities) ALL_CITIES.set(city, k.name)
const COUNTRY_NAMES = new Set(COUNTRIES.map((k) => k.name))
const STORE_PREFIX = new RegExp(`^(${STORE_WORDS.join("|")}) in (.+)$`)
const storeLocation = (c: RowContext, s: number): string => {
  const cities = c.country().cities
  const k = Math.min(cities.length, 1 + c.int(s, 1, 3))
  const start = c.int(s, 2, cities.length)
  const chosen: Array<string> = []
  for (let i = 0; i < k; i++) chosen.push(cities[(start + i) % cities.length]!)
  const where = chosen.length === 1 ? chosen[0]! : `${chosen.slice(0, -1).join(", ")} and ${chosen[chosen.length - 1]!}`
  return `${c.pick(STORE_WORDS, s, 0)} in ${where}`
}
const isStoreLocation = (v: string): boolean => {
  const m = STORE_PREFIX.exec(v)
  if (!m) return false
  const cities = m[2]!.split(/, | and /)
  const country = ALL_CITIES.get(cities[0]!)
  return country !== undefined && cities.every((x) => ALL_CITIES.get(x) === country) && new Set(cities).size === cities.length
}

const PORTAL = new RegExp(`^((${COMPANY_PREFIX.join("|")}) (${COMPANY_SUFFIX.join("|")}) (account|online account|customer portal|app)|account on [a-z]+\\.(com|co|shop|store))$`)

const trackingNumber = (c: RowContext, s: number): string => {
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
const TRACKING = /^(1Z[0-9A-Z]{6}\d{10}|[1-9]\d{11}|94[1-9]\d{19})$/

const dedicated: ReadonlyArray<Generator> = [
  {
    kind: "Order Number",
    family: "order-number",
    variety: "open",
    format: "#NNNNNNNN or ORD-NNNNNNNN (8 digits)",
    check: re(/^(#|ORD-)[1-9]\d{7}$/),
    make: (c, s) => (c.int(s, 9, 4) === 0 ? "ORD-" : "#") + digits(c, s, 0, 8)
  },
  {
    kind: "Invoice Number",
    family: "invoice-number",
    variety: "open",
    format: "INV-NNNNNN or INV-YYYY-NNNNN",
    check: re(/^INV-([1-9]\d{5}|20(19|2[0-5])-\d{5})$/),
    make: (c, s) => (c.int(s, 0, 2) === 0 ? `INV-${digits(c, s, 1, 6)}` : `INV-${2019 + c.int(s, 2, 7)}-${String(c.int(s, 3, 100000)).padStart(5, "0")}`)
  },
  {
    kind: "Tracking Number",
    family: "tracking-number",
    variety: "open",
    format: "UPS 1Z + 16, FedEx 12 digits or USPS 94 + 20 digits",
    check: re(TRACKING),
    make: trackingNumber
  },
  {
    kind: "Refund Amount",
    family: "money",
    variety: "open",
    format: "currency symbol + amount: $1,234.50, €89.00",
    check: re(MONEY),
    make: money
  },
  {
    kind: "Currency Symbol",
    family: "currency-symbol",
    variety: "closed",
    format: "$ | € | £ (the row's currency)",
    check: re(/^[$€£]$/),
    make: (c) => c.currency()
  },
  {
    kind: "Website URL",
    family: "url",
    variety: "open",
    format: "https://www.<company domain>",
    check: re(/^https:\/\/www\.[a-z]+\.(com|co|shop|store)$/),
    make: (c) => url(c, "")
  },
  {
    kind: "Login Page URL",
    family: "url",
    variety: "open",
    format: "https://www.<company domain>/<login path>",
    check: re(/^https:\/\/www\.[a-z]+\.(com|co|shop|store)\/(login|signin|sign-in|account\/login|account\/signin|customer\/login)$/),
    make: (c, s) => url(c, c.pick(LOGIN_PATHS, s, 0))
  },
  {
    kind: "Claims Website URL",
    family: "url",
    variety: "open",
    format: "https://www.<company domain>/claims",
    check: re(/^https:\/\/www\.[a-z]+\.(com|co|shop|store)\/claims$/),
    make: (c) => url(c, "/claims")
  },
  {
    kind: "Customer Support Phone Number",
    family: "phone",
    variety: "open",
    format: "+1-8XX-NNN-NNNN (toll free)",
    check: re(PHONE),
    make: SUPPORT_PHONE
  },
  {
    kind: "Claims Contact Number",
    family: "phone",
    variety: "open",
    format: "+1-8XX-NNN-NNNN (toll free)",
    check: re(PHONE),
    make: SUPPORT_PHONE
  },
  {
    kind: "Customer Support Email",
    family: "email",
    variety: "open",
    format: "<mailbox>@<company domain>",
    check: re(/^[a-z]+@[a-z]+\.(com|co|shop|store)$/),
    make: (c, s) => `${c.pick(SUPPORT_MAILBOXES, s, 0)}@${c.domain()}`
  },
  {
    kind: "Customer Support Hours",
    family: "hours",
    variety: "open",
    format: "<days>, H:MM AM - H:MM PM <time zone>",
    check: re(HOURS),
    make: hours
  },
  {
    kind: "Shipping Cut-off Time",
    family: "time",
    variety: "open",
    format: "H:MM AM|PM [time zone]",
    check: re(TIME),
    make: time
  },
  {
    kind: "Date Range",
    family: "date-range",
    variety: "open",
    format: "Month D-D, YYYY | Month D - Month D, YYYY; N-M before 'business days'",
    check: (v) => DATE_RANGE.test(v) || isDayspan(v),
    make: (c, s, text, end) => (followedByDays(text, end) ? dayspan(c, s) : dateRange(c, s))
  },
  {
    kind: "Estimated Delivery Time",
    family: "dayspan",
    variety: "closed",
    format: "N-M [business days]",
    check: (v) => isDayspan(v.endsWith(" business days") ? v.slice(0, -14) : v),
    make: (c, s, text, end) => dayspan(c, s) + (followedByDays(text, end) ? "" : " business days")
  },
  {
    kind: "Year",
    family: "year",
    variety: "closed",
    format: "2019..2025",
    check: re(/^20(19|2[0-5])$/),
    make: (c, s) => String(2019 + c.int(s, 0, 7))
  },
  {
    kind: "Person Name",
    family: "person-name",
    variety: "open",
    format: "First Last (the row's client: the dataset's \"bills from {{Person Name}}\" is answered with \"{{Salutation}} {{Client Last Name}}\")",
    check: isFullName,
    make: (c) => `${c.clientFirst()} ${c.clientLast()}`
  },
  {
    kind: "Client Name",
    family: "person-name",
    variety: "open",
    format: "First Last (the row's client)",
    check: isFullName,
    make: (c) => `${c.clientFirst()} ${c.clientLast()}`
  },
  {
    kind: "Client First Name",
    family: "first-name",
    variety: "open",
    format: "a capitalized first name (the row's client)",
    check: (v) => FIRST_OR_LAST.test(v) && FIRST_NAMES.has(v),
    make: (c) => c.clientFirst()
  },
  {
    kind: "Client Last Name",
    family: "last-name",
    variety: "open",
    format: "a capitalized surname (the row's client)",
    check: (v) => FIRST_OR_LAST.test(v) && SURNAMES.has(v),
    make: (c) => c.clientLast()
  },
  {
    kind: "Salutation",
    family: "salutation",
    variety: "closed",
    format: "Mr. | Ms. | Mrs. | Dr. | Mx. (agrees with the client's gender)",
    check: inList(SALUTATIONS),
    make: (c) => c.clientSalutation()
  },
  {
    kind: "Company Name",
    family: "company-name",
    variety: "open",
    format: "<Prefix> <Suffix> (the row's company)",
    check: re(COMPANY),
    make: (c) => c.companyName()
  },
  {
    kind: "Company",
    family: "company-name",
    variety: "open",
    format: "<Prefix> <Suffix> (the row's company)",
    check: re(COMPANY),
    make: (c) => c.companyName()
  },
  {
    kind: "Online Company Portal Info",
    family: "portal",
    variety: "open",
    format: "<Company> account | online account | customer portal | app, or account on <domain>",
    check: re(PORTAL),
    make: (c, s) => c.pick(PORTAL_TEMPLATES, s, 0)(c.companyName(), c.domain())
  },
  {
    kind: "Delivery Country",
    family: "country",
    variety: "open",
    format: "a country name (the row's country)",
    check: (v) => COUNTRY_NAMES.has(v),
    make: (c) => c.country().name
  },
  {
    kind: "Delivery City",
    family: "city",
    variety: "open",
    format: "a city of the row's country",
    check: (v) => ALL_CITIES.has(v),
    make: (c) => c.city()
  },
  {
    kind: "Store Location",
    family: "store-location",
    variety: "open",
    format: "stores|locations|... in <1-3 cities of one country>",
    check: isStoreLocation,
    make: storeLocation
  },
  ...["Account Type", "Account Category", "Profile Type"].map(
    (kind): Generator => ({
      kind,
      family: "account-tier",
      variety: "closed",
      format: `one of: ${ACCOUNT_TIERS.join(" | ")} (one tier per row, shared by Account Type, Account Category, Profile Type)`,
      check: inList(ACCOUNT_TIERS),
      make: (c) => c.accountTier(),
      alt: altFrom(ACCOUNT_TIERS)
    })
  ),
  list("Review Platform", "review-platform", "closed", REVIEW_PLATFORMS),
  ...[1, 2, 3].map(
    (n): Generator => ({
      kind: `Feature ${n}`,
      family: "feature",
      variety: "closed",
      format: "a product feature (Feature 1, 2, 3 distinct in a row)",
      check: inList(FEATURES),
      make: (c) => c.feature(n)
    })
  ),
  ...Object.entries(UI_LABELS).map(([kind, labels]) => list(kind, "ui-label", "ui", labels))
]

/** kind (lower case, single spaces) → generator */
export const GENERATORS: ReadonlyMap<string, Generator> = new Map(dedicated.map((g) => [normalizeKind(g.kind).toLowerCase(), g]))

/** The canonical spelling of a kind as written: trimmed, single spaces. */
export function normalizeKind(kind: string): string {
  return kind.trim().replace(/\s+/g, " ")
}

export const lookup = (kind: string): Generator | undefined => GENERATORS.get(normalizeKind(kind).toLowerCase())

// ---------------------------------------------------------------------------
// Inference for kinds without a dedicated generator (entities.unknownKinds: infer)

const UI_VERB = /^(forgot|reset|change|update|edit|manage|view|save|submit|confirm|cancel|delete|upgrade|downgrade|create|add|remove|sign|log|go|open|close|apply|continue|next|back)\b/i

/** Words of a kind as a UI label: `{{Payment Settings}}` → "Payment Settings". Letters and digits are split ("Step2" → "Step 2"). */
export const labelOf = (kind: string): string =>
  normalizeKind(
    kind
      .replace(/[_]+/g, " ")
      .replace(/[^\p{L}\p{N} &'’/.,()+#-]+/gu, " ")
      .replace(/(\p{L})(\p{N})/gu, "$1 $2")
      .replace(/(\p{N})(\p{L})/gu, "$1 $2")
  ) || "Options"

const initialsOf = (kind: string): string => {
  const words = kind
    .toUpperCase()
    .replace(/[^A-Z ]+/g, " ")
    .split(" ")
    .filter((w) => w !== "" && !/^(NUMBER|NO|NUM|ID|CODE|REFERENCE|REF|THE|OF|A|AN|FOR|YOUR|MY)$/.test(w))
  if (words.length === 0) return "REF"
  if (words.length === 1) return words[0]!.slice(0, 3).padEnd(2, "X")
  return words
    .map((w) => w[0])
    .join("")
    .slice(0, 4)
}

const has = (kind: string, words: string) => new RegExp(`\\b(${words})\\b`, "i").test(kind)

/**
 * A generator for a kind from its words (documented in entities.ts). Pure:
 * the same kind always infers the same family.
 */
export const inferGenerator = (rawKind: string): Generator => {
  const kind = normalizeKind(rawKind)
  const base = { kind, variety: "open" as Variety }
  if (has(kind, "e-?mail"))
    return has(kind, "support|service|help|contact|claims|company|customer care|sales|billing")
      ? { ...base, family: "email", format: "<mailbox>@<company domain>", check: re(/^[a-z]+@[a-z]+\.(com|co|shop|store)$/), make: (c, s) => `${c.pick(SUPPORT_MAILBOXES, s, 0)}@${c.domain()}` }
      : {
          ...base,
          family: "email",
          format: "first.last@<mail domain>",
          check: re(/^[a-z]+\.[a-z]+\d{0,2}@[a-z]+\.(com|me)$/),
          make: (c, s) => {
            const name = personName(c, s)
              .normalize("NFD")
              .replace(/[^A-Za-z ]/g, "")
              .toLowerCase()
              .replace(" ", ".")
            return `${name}${c.int(s, 8, 3) === 0 ? c.int(s, 9, 100) : ""}@${c.pick(PERSONAL_MAIL_DOMAINS, s, 10)}`
          }
        }
  if (has(kind, "url|website|web ?site|link|site|web ?page|page url")) {
    const slug = kind
      .toLowerCase()
      .replace(/\b(url|website|web ?site|link|site|web ?page|page|the|our|online)\b/g, " ")
      .replace(/[^a-z0-9]+/g, " ")
      .trim()
      .replace(/ +/g, "-")
    return { ...base, family: "url", format: "https://www.<company domain>[/<slug of the kind>]", check: re(URL_RE), make: (c) => url(c, slug ? `/${slug}` : "") }
  }
  if (has(kind, "phone|telephone|tel|mobile|cell|fax|hotline|contact number|whatsapp"))
    return { ...base, family: "phone", format: "+1-8XX-NNN-NNNN", check: re(PHONE), make: SUPPORT_PHONE }
  if (UI_VERB.test(kind)) return uiLabel(kind)
  if (has(kind, "amount|price|fee|fees|cost|costs|charge|total|balance|payment amount|subtotal|credit"))
    return { ...base, family: "money", format: "currency symbol + amount", check: re(MONEY), make: money }
  if (has(kind, "zip|postal|postcode|zip code"))
    return { ...base, family: "postal-code", format: "5 digits", check: re(/^\d{5}$/), make: (c, s) => String(c.int(s, 0, 90000) + 10000) }
  if (has(kind, "number|id|code|no|num|reference|ref|sku|serial|key|token|confirmation")) {
    const prefix = initialsOf(kind)
    const check = new RegExp(`^${prefix}-[1-9]\\d{7}$`)
    return { ...base, family: "identifier", format: `${prefix}-NNNNNNNN`, check: re(check), make: (c, s) => `${prefix}-${digits(c, s, 0, 8)}` }
  }
  if (has(kind, "name|names")) {
    if (has(kind, "company|business|store|shop|brand|bank|merchant|vendor|seller|carrier|organization|organisation"))
      return { ...base, family: "company-name", format: "<Prefix> <Suffix>", check: re(COMPANY), make: (c) => c.companyName() }
    if (has(kind, "first|given"))
      return { ...base, family: "first-name", format: "a capitalized first name", check: (v) => FIRST_NAMES.has(v), make: (c, s) => c.pick((c.u32(s, 0) & 1) === 1 ? FEMALE_FIRST : MALE_FIRST, s, 1) }
    if (has(kind, "last|surname|family"))
      return { ...base, family: "last-name", format: "a capitalized surname", check: (v) => SURNAMES.has(v), make: (c, s) => c.pick(LAST_NAMES, s, 2) }
    return { ...base, family: "person-name", format: "First Last", check: isFullName, make: personName }
  }
  if (has(kind, "date|day|deadline|birthday|dob"))
    return { ...base, family: "date", format: "Month D, YYYY", check: re(DATE), make: date }
  if (has(kind, "hours|schedule|opening times"))
    return { ...base, family: "hours", format: "<days>, H:MM AM - H:MM PM <tz>", check: re(HOURS), make: hours }
  if (has(kind, "time|hour|cut-?off|deadline"))
    return { ...base, family: "time", format: "H:MM AM|PM [tz]", check: re(TIME), make: time }
  if (has(kind, "city|town"))
    return { ...base, family: "city", format: "a city of the row's country", check: (v) => ALL_CITIES.has(v), make: (c) => c.city() }
  if (has(kind, "country|region|nation"))
    return { ...base, family: "country", format: "a country name", check: (v) => COUNTRY_NAMES.has(v), make: (c) => c.country().name }
  if (has(kind, "address|location|street|store|branch")) {
    const check = (v: string) => {
      const m = /^(\d{1,4}) (.+), (.+)$/.exec(v)
      return m !== null && STREET_NAMES.includes(m[2]!) && ALL_CITIES.has(m[3]!)
    }
    return { ...base, family: "address", format: "<n> <street>, <city of the row's country>", check, make: (c, s) => `${1 + c.int(s, 0, 9999)} ${c.pick(STREET_NAMES, s, 1)}, ${c.city()}` }
  }
  if (has(kind, "year")) return { ...base, family: "year", variety: "closed", format: "2019..2025", check: re(/^20(19|2[0-5])$/), make: (c, s) => String(2019 + c.int(s, 0, 7)) }
  const feature = /^feature (\d{1,2})$/i.exec(kind)
  if (feature) {
    const n = Number(feature[1])
    return { ...base, family: "feature", variety: "closed", format: "a product feature", check: inList(FEATURES), make: (c) => c.feature(n) }
  }
  if (has(kind, "percent|percentage|discount|rate"))
    return { ...base, family: "percent", variety: "closed", format: "N%", check: re(/^\d{1,2}%$/), make: (c, s) => `${5 * (1 + c.int(s, 0, 10))}%` }
  if (has(kind, "company|brand|merchant|vendor|seller|business"))
    return { ...base, family: "company-name", format: "<Prefix> <Suffix>", check: re(COMPANY), make: (c) => c.companyName() }
  return uiLabel(kind)
}

const uiLabel = (kind: string): Generator => {
  const label = labelOf(kind)
  return { kind: normalizeKind(kind), family: "ui-label", variety: "ui", format: `the label "${label}"`, check: (v) => v === label, make: () => label }
}

/** One value of `kind` for (seed, line), as the stage would make it; `after` is the text that follows the placeholder. For tests and tools. */
export const generate = (kind: string, seed: number, line: number, after = "", ctx: RowContext = new RowContext()): string => {
  const g = lookup(kind) ?? inferGenerator(kind)
  ctx.reset(seed, line, "", "")
  return g.make(ctx, streamOf(normalizeKind(kind).toLowerCase()), after, 0)
}
