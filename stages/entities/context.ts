/**
 * The per-row context of the entity generators: integer hashing (every value
 * is a pure function of seed, row line and kind) and the values that must
 * agree within a row (country, company, client, currency, account type,
 * features). See generators.ts.
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
  MALE_FIRST,
  SALUTATIONS_F,
  NANP_TOLL_FREE,
  SALUTATIONS_M,
  SUPPORT_COUNTRIES,
  SUPPORT_DAYS,
  SUPPORT_MAILBOXES,
  type SupportCountry,
  TLDS
} from "./data.ts"

// ---------------------------------------------------------------------------
// Hashing

/** murmur3's 32-bit finalizer: a bijection with good avalanche. */
export const fmix = (x: number): number => {
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
export const S_COUNTRY = 1
export const S_COMPANY = 2
export const S_CLIENT = 3
export const S_CURRENCY = 4
export const S_ACCOUNT_TYPE = 5
export const S_FEATURE = 6

/** Hints in the row's own text that fix its currency. */
export const CURRENCY_HINT = /([$€£])\{\{|\b(dollars?|dollrs|usd|bucks)\b|\b(euros?|eur)\b|\b(pounds sterling|gbp|quid)\b/i

export const TIER_BY_WORD = new Map(ACCOUNT_TIERS.map((t) => [t.toLowerCase(), t]))
export const TIER_PLACEHOLDER = /\{\{\s*(account type|account category|profile type)\s*\}\}/i
/** a tier named in the text: "pro account", "the freemium profile", "onPremium account" (typos in "account" included) */
export const TIER_NAMED = new RegExp(`(?:\\b|on)(${ACCOUNT_TIERS.join("|")})\\s+(?:ac\\w*|profile|plan|membership|subscription|tier)\\b`, "i")

/**
 * The row's company as a customer would find it stated: its name, site,
 * support phone, e-mail and hours. Every placeholder for these (Company Name,
 * Website URL, Customer Support Phone Number, Customer Support Email,
 * Customer Support Hours) takes its value from here, and the toolcalls stage
 * states the same profile in the system prompt, so an answer that quotes the
 * phone number quotes something the conversation holds.
 */
export interface Company {
  readonly name: string
  readonly website: string
  readonly phone: string
  readonly email: string
  readonly hours: string
  /** where support is run from: fixes the phone's format and the hours' time zone */
  readonly country: string
}

/** A phone number in a SupportCountry format, digits drawn from (stream, i..). */
export const formatPhone = (c: RowContext, format: string, stream: number, i: number): string => {
  let k = i
  return format.replace(/T|M|N/g, (x) => (x === "T" ? c.pick(NANP_TOLL_FREE, stream, k++) : x === "M" ? String(2 + c.int(stream, k++, 8)) : String(c.int(stream, k++, 10))))
}

/** Support hours: days, opening and closing time, the country's time zone. */
export const supportHours = (c: RowContext, where: SupportCountry, stream: number, i: number): string => {
  const start = 6 + c.int(stream, i + 1, 5)
  const startMin = c.int(stream, i + 2, 4) === 0 ? "30" : "00"
  const end = 4 + c.int(stream, i + 3, 7)
  return `${c.pick(SUPPORT_DAYS, stream, i)}, ${start}:${startMin} AM - ${end}:00 PM ${c.pick(where.zones, stream, i + 4)}`
}

/** Per-row state. One instance is reused for every row (`reset`). */
export class RowContext {
  key = 0
  instruction = ""
  response = ""
  private countryIx = -1
  private companyIx = -1
  private currencyValue: string | undefined = undefined
  private tier: string | undefined = undefined
  private companyValue: Company | undefined = undefined

  reset(seed: number, line: number, instruction: string, response: string): this {
    this.key = rowKey(seed, line)
    this.instruction = instruction
    this.response = response
    this.countryIx = -1
    this.companyIx = -1
    this.currencyValue = undefined
    this.tier = undefined
    this.companyValue = undefined
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

  /** where the company runs support from */
  supportCountry(): SupportCountry {
    return this.pick(SUPPORT_COUNTRIES, S_COMPANY, 2)
  }

  company(): Company {
    if (this.companyValue === undefined) {
      const where = this.supportCountry()
      this.companyValue = {
        name: this.companyName(),
        website: `https://www.${this.domain()}`,
        phone: formatPhone(this, where.phone, S_COMPANY, 10),
        email: `${this.pick(SUPPORT_MAILBOXES, S_COMPANY, 3)}@${this.domain()}`,
        hours: supportHours(this, where, S_COMPANY, 30),
        country: where.name
      }
    }
    return this.companyValue
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
