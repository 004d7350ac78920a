/**
 * Generators for placeholder kinds without a dedicated one
 * (`entities.unknownKinds: infer`), chosen from the kind's words; the order of
 * the rules is documented in ../entities.ts.
 */
import {
  FEATURES,
  FEMALE_FIRST,
  LAST_NAMES,
  MALE_FIRST,
  PERSONAL_MAIL_DOMAINS,
  PRODUCTS,
  STREET_NAMES,
  SUPPORT_MAILBOXES
} from "./data.ts"
import type { RowContext } from "./context.ts"
import { ALL_CITIES, COMPANY, COUNTRY_NAMES, date, DATE, digits, FIRST_NAMES, type Generator, hours, HOURS, inList, isFullName, money, MONEY, normalizeKind, OTHER_PHONE, personName, PHONE, re, SUPPORT_PHONE, SURNAMES, time, TIME, url, URL_RE, type Variety } from "./values.ts"

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
      ? { ...base, family: "email", format: "<mailbox>@<company domain>", check: re(/^[a-z]+@[a-z]+\.(com|co|shop|store)$/), make: (c, s) => (has(kind, "support|customer care|help") ? c.company().email : `${c.pick(SUPPORT_MAILBOXES, s, 0)}@${c.domain()}`) }
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
    return has(kind, "support|service|help|customer care|contact")
      ? { ...base, family: "phone", format: "the company's support line", check: re(PHONE), make: SUPPORT_PHONE }
      : { ...base, family: "phone", format: "another toll-free line of the company's country", check: re(PHONE), make: OTHER_PHONE }
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
  if (has(kind, "products?|items?|articles?|goods|merchandise|device|gadget|model"))
    return { ...base, family: "product", variety: "closed", format: "a product from data.ts PRODUCTS", check: inList(PRODUCTS), make: (c, s) => c.pick(PRODUCTS, s, 0) }
  if (has(kind, "points|miles|credits|stars|coins"))
    return { ...base, family: "count", format: "a count: 1,250", check: re(/^[1-9]\d{0,2}(,\d{3})?$/), make: (c, s) => (100 + c.int(s, 0, 4900)).toLocaleString("en-US") }
  if (has(kind, "user ?name|username|login|screen ?name|display ?name|account ?name|handle|nickname"))
    return { ...base, family: "username", format: "a login handle: first initial + surname [+ 2 digits]", check: re(/^[a-z]+\d{0,2}$/), make: username }
  if (has(kind, "name|names")) {
    if (has(kind, "company|business|store|shop|brand|bank|merchant|vendor|seller|carrier|organization|organisation"))
      return { ...base, family: "company-name", format: "<Prefix> <Suffix>", check: re(COMPANY), make: (c) => c.companyName() }
    if (has(kind, "first|given"))
      return { ...base, family: "first-name", format: "a capitalized first name", check: (v) => FIRST_NAMES.has(v), make: (c, s) => c.pick((c.u32(s, 0) & 1) === 1 ? FEMALE_FIRST : MALE_FIRST, s, 1) }
    if (has(kind, "last|surname|family"))
      return { ...base, family: "last-name", format: "a capitalized surname", check: (v) => SURNAMES.has(v), make: (c, s) => c.pick(LAST_NAMES, s, 2) }
    // a person only when the kind says so: "Product Name", "Plan Name" are not people
    if (has(kind, "person|people|client|customer|full|holder|agent|representative|rep|recipient|contact|manager|owner|sender|buyer|member|employee|staff|your"))
      return { ...base, family: "person-name", format: "First Last", check: isFullName, make: personName }
    // the name of a thing: the thing's own words ("{{Plan Name}}" → "Plan")
    return uiLabel(kind.replace(/\bnames?\b/gi, " ").trim() || kind, kind)
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

const uiLabel = (words: string, kind = words): Generator => {
  const label = labelOf(words)
  return { kind: normalizeKind(kind), family: "ui-label", variety: "ui", format: `the label "${label}"`, check: (v) => v === label, make: () => label }
}

/** a login handle: "jperez", "lkim42" */
const username = (c: RowContext, s: number): string => {
  const female = (c.u32(s, 0) & 1) === 1
  const first = c.pick(female ? FEMALE_FIRST : MALE_FIRST, s, 1)
  const last = c.pick(LAST_NAMES, s, 2)
  const ascii = (w: string) => w.normalize("NFD").replace(/[^A-Za-z]/g, "").toLowerCase()
  return `${ascii(first)[0]}${ascii(last)}${c.int(s, 3, 2) === 0 ? c.int(s, 4, 90) + 10 : ""}`
}
