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
  type Country,
  FEATURES,
  LOGIN_PATHS,
  PORTAL_TEMPLATES,
  REVIEW_PLATFORMS,
  SALUTATIONS,
  UI_LABELS
} from "./data.ts"
import { RowContext, streamOf } from "./context.ts"
import { ALL_CITIES, altFrom, COMPANY, COUNTRY_NAMES, date, DATE_RANGE, dateRange, dayspan, digits, FIRST_NAMES, FIRST_OR_LAST, followedByDays, type Generator, hours, HOURS, inList, isDayspan, isFullName, isStoreLocation, list, money, MONEY, normalizeKind, OTHER_PHONE, PHONE, PORTAL, re, storeLocation, SUPPORT_PHONE, SURNAMES, time, TIME, TRACKING, trackingNumber, url } from "./values.ts"
import { inferGenerator } from "./infer.ts"

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
    format: "the company's toll-free support line (+1-8XX-NNN-NNNN, +44 800 NNN NNNN, ...)",
    check: re(PHONE),
    make: SUPPORT_PHONE
  },
  {
    kind: "Claims Contact Number",
    family: "phone",
    variety: "open",
    format: "another toll-free line of the company's country",
    check: re(PHONE),
    make: OTHER_PHONE
  },
  {
    kind: "Customer Support Email",
    family: "email",
    variety: "open",
    format: "<mailbox>@<company domain> (the company's support address)",
    check: re(/^[a-z]+@[a-z]+\.(com|co|shop|store)$/),
    make: (c) => c.company().email
  },
  {
    kind: "Customer Support Hours",
    family: "hours",
    variety: "open",
    format: "<days>, H:MM AM - H:MM PM <time zone of the support country> (the company's hours)",
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


export const lookup = (kind: string): Generator | undefined => GENERATORS.get(normalizeKind(kind).toLowerCase())


/** One value of `kind` for (seed, line), as the stage would make it; `after` is the text that follows the placeholder. For tests and tools. */
export const generate = (kind: string, seed: number, line: number, after = "", ctx: RowContext = new RowContext()): string => {
  const g = lookup(kind) ?? inferGenerator(kind)
  ctx.reset(seed, line, "", "")
  return g.make(ctx, streamOf(normalizeKind(kind).toLowerCase()), after, 0)
}
