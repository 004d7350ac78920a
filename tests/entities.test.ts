/**
 * The entities stage: placeholder replacement on the real Bitext sample and
 * on synthetic CSVs (unknown kinds, malformed rows, CSV edge cases).
 */
import { describe, expect, it } from "vitest"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { firstInvalidUtf8, parse, Parser, readFile } from "../stages/lib/csv.ts"
import { COUNTRIES, FEATURES, PRODUCTS, SUPPORT_COUNTRIES, UI_LABELS } from "../stages/entities/data.ts"
import { PHONE } from "../stages/entities/values.ts"
import { GENERATORS, generate, lookup } from "../stages/entities/generators.ts"
import { inferGenerator, labelOf } from "../stages/entities/infer.ts"
import { type Outcome, type Params, processCsv } from "../stages/entities/process.ts"
import { COMPANY_KIND, FIELD_FAMILIES, leaks, type OutputRow } from "../stages/entities/replace.ts"
import { entities as entitiesStage } from "../stages/entities.ts"
import { ChildProcesses } from "../engine/Services.ts"

/** the stage with the processes it may start (it starts none) */
const runStage = (...a: Parameters<typeof entitiesStage.run>) => entitiesStage.run(...a).pipe(Effect.provide(ChildProcesses.node))

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const SAMPLE = fs.readFileSync(path.join(ROOT, "data", "bitext-sample.csv"), "utf8")
const HEADER = "flags,instruction,category,intent,response\n"
const P: Params = { seed: 42, unknownKinds: "infer", maxBadFraction: 0.01 }

// Independent of the implementation: what a leak looks like, and what a placeholder is.
const BRACES = /\{\{|\}\}/
const FALLBACK = /\bVALUE\d+\b/
const PH = /\{\{([^{}]*)\}\}/g

const ok = (o: Outcome) => {
  if (o._tag !== "ok") throw new Error(`expected success, got: ${o.message}`)
  return o
}
const fail = (o: Outcome) => {
  if (o._tag !== "fail") throw new Error("expected a failure")
  return o
}
const csv = (rows: ReadonlyArray<ReadonlyArray<string>>) =>
  HEADER + rows.map((r) => r.map((f) => (/[",\n\r]/.test(f) ? `"${f.replaceAll('"', '""')}"` : f)).join(",")).join("\n") + "\n"
/** every string of an output row (fields, entity kinds and values) */
const strings = (r: OutputRow) => [r.flags, r.instruction, r.category, r.intent, r.response, ...Object.keys(r.entities), ...Object.values(r.entities)]
const row = (instruction: string, response: string, intent = "track_order", category = "ORDER", flags = "B") => [flags, instruction, category, intent, response]

/** kind → occurrences in the sample's instruction and response columns, counted here from the CSV */
const sampleCounts = (() => {
  const counts = new Map<string, number>()
  for (const r of parse(SAMPLE).slice(1))
    for (const f of [r.fields[1]!, r.fields[4]!]) {
      for (const m of f.matchAll(PH)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1)
      // the field syntax, `[[Contact Information]]`, is counted under its brackets
      for (const m of f.matchAll(/\[\[([^[\]]*)\]\]/g)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1)
    }
  return counts
})()
const FREQUENT = [...sampleCounts].filter(([, n]) => n >= 5).map(([k]) => k)

/** The kinds ≥ 5 in the sample that are not held to 50 distinct values per 1,000: closed vocabularies and fixed UI words. */
const NOT_OPEN = new Set([
  "Account Type", "Account Category", "Currency Symbol", "Salutation", // closed vocabularies
  "Online Order Interaction", "Settings", "Profile", "Account Change", "Upgrade Account", "Forgot Password", "Order Status" // UI words
])

const sample = ok(processCsv(SAMPLE, P))

describe("entities on the real sample", () => {
  it("replaces every placeholder: no braces, no fallback tokens, anywhere", () => {
    expect(sample.rows.length).toBe(890)
    expect(sample.report.bad).toBe(0)
    expect(sample.report.leaks).toBe(0)
    for (const r of sample.rows)
      for (const s of strings(r)) {
        expect(BRACES.test(s), `line ${r.line}: ${s}`).toBe(false)
        expect(FALLBACK.test(s), `line ${r.line}: ${s}`).toBe(false)
      }
  })

  it("reports the placeholders it replaced, matching a count made from the CSV", () => {
    expect(sample.report.placeholders).toEqual(Object.fromEntries(sampleCounts))
    expect(sampleCounts.size).toBeGreaterThanOrEqual(60)
    expect(sample.report.unknownKinds).toEqual({})
    expect(sample.report.droppedRows).toBe(0)
  })

  it("lists exactly the kinds of each row in entities", () => {
    const source = new Map(parse(SAMPLE).slice(1).map((r) => [r.line, r.fields]))
    for (const r of sample.rows) {
      const f = source.get(r.line)!
      // a personal detail or identifier right after "your"/"my" is a field, not a value (replace.ts FIELD_FAMILIES)
      const isField = (text: string, m: RegExpMatchArray) =>
        /\b(your|my)\s+$/i.test(text.slice(Math.max(0, m.index! - 12), m.index)) && FIELD_FAMILIES.has(lookup(m[1]!)?.family ?? "") && !COMPANY_KIND.test(m[1]!)
      const kinds = new Set([f[1]!, f[4]!].flatMap((t) => [...t.matchAll(PH)].filter((m) => !isField(t, m)).map((m) => m[1]!)))
      expect(new Set(Object.keys(r.entities)), `line ${r.line}`).toEqual(kinds)
      expect(Object.keys(r)).toEqual(["line", "flags", "instruction", "category", "intent", "response", "entities", "company"])
    }
  })

  it("gives every kind seen ≥ 5 times a dedicated generator whose values pass its format check", () => {
    expect(FREQUENT.length).toBeGreaterThanOrEqual(26)
    for (const kind of FREQUENT) {
      const g = lookup(kind)
      expect(g, kind).toBeDefined()
      expect(GENERATORS.get(kind.toLowerCase()), kind).toBe(g)
      expect(g!.family, kind).not.toBe("identifier")
      for (const r of sample.rows) if (r.entities[kind] !== undefined) expect(g!.check(r.entities[kind]!), `${kind} = ${r.entities[kind]}`).toBe(true)
    }
  })

  it("varies: ≥ 50 distinct values per 1,000 draws except for closed lists and fixed UI words", () => {
    const notOpen = FREQUENT.filter((k) => lookup(k)!.variety !== "open")
    expect(new Set(notOpen)).toEqual(new Set([...NOT_OPEN].filter((k) => FREQUENT.includes(k))))
    for (const kind of [...GENERATORS.values()].map((g) => g.kind)) {
      const g = lookup(kind)!
      const values = Array.from({ length: 1000 }, (_, i) => generate(kind, 7 + (i % 5), 2 + i * 3))
      for (const v of values) {
        expect(g.check(v), `${kind} = ${JSON.stringify(v)}`).toBe(true)
        expect(BRACES.test(v) || FALLBACK.test(v) || v.trim() !== v || v === "", `${kind} = ${JSON.stringify(v)}`).toBe(false)
      }
      const distinct = new Set(values).size
      if (g.variety === "open") expect(distinct, kind).toBeGreaterThanOrEqual(50)
      else expect(distinct, kind).toBeGreaterThanOrEqual(1)
    }
  })

  it("has format checks that reject junk", () => {
    for (const g of GENERATORS.values())
      for (const junk of ["", "VALUE8541", "{{Order Number}}", "Order Number", "#"]) {
        if (g.kind === junk) continue
        expect(g.check(junk), `${g.kind} accepts ${JSON.stringify(junk)}`).toBe(g.variety === "ui" && (UI_LABELS[g.kind] ?? []).includes(junk))
      }
    expect(lookup("Order Number")!.check("#17628484")).toBe(true)
    expect(lookup("Order Number")!.check("#1762848")).toBe(false)
    expect(lookup("Refund Amount")!.check("$1,234.50")).toBe(true)
    expect(lookup("Refund Amount")!.check("€89.00")).toBe(true)
    expect(lookup("Refund Amount")!.check("$1234.5")).toBe(false)
    expect(lookup("Delivery City")!.check("Atlantis")).toBe(false)
    expect(lookup("Website URL")!.check("https://www.northwindgoods.com")).toBe(true)
    expect(lookup("Website URL")!.check("www.example")).toBe(false)
  })

  it("uses one value per kind in a row: the value is found wherever the placeholder was", () => {
    const source = new Map(parse(SAMPLE).slice(1).map((r) => [r.line, r.fields]))
    let both = 0
    for (const r of sample.rows) {
      const f = source.get(r.line)!
      for (const [kind, value] of Object.entries(r.entities)) {
        const inI = f[1]!.includes(`{{${kind}}}`)
        const inR = f[4]!.includes(`{{${kind}}}`)
        if (inI) expect(r.instruction.includes(value), `line ${r.line} ${kind}`).toBe(true)
        if (inR) expect(r.response.includes(value), `line ${r.line} ${kind}`).toBe(true)
        if (inI && inR) both++
      }
    }
    expect(both).toBeGreaterThan(100)
  })

  it("is deterministic: same seed, same output; another seed, other values", () => {
    const again = ok(processCsv(SAMPLE, P))
    expect(again.rows).toEqual(sample.rows)
    const other = ok(processCsv(SAMPLE, { ...P, seed: 43 }))
    const orders = sample.rows.filter((r) => r.entities["Order Number"] !== undefined)
    const changed = orders.filter((r) => other.rows.find((o) => o.line === r.line)!.entities["Order Number"] !== r.entities["Order Number"])
    expect(orders.length).toBeGreaterThan(50)
    expect(changed.length).toBe(orders.length)
    expect(other.rows.map((r) => r.response)).not.toEqual(sample.rows.map((r) => r.response))
    // the same (seed, line) gives the same value whatever else is in the row or the file
    const one = ok(processCsv(HEADER + `B,cancel {{Order Number}},ORDER,cancel_order,ok\n`, P))
    expect(one.rows[0]!.entities["Order Number"]).toBe(generate("Order Number", 42, 2))
  })

  it("keeps the user's own account tier and the symbols the text already has", () => {
    const gold = sample.rows.find((r) => /change to the gold account/.test(r.instruction) && r.entities["Account Type"] !== undefined)
    expect(gold?.entities["Account Type"]).toBe("Gold")
    for (const r of sample.rows) {
      expect(r.response.includes("##"), `line ${r.line}`).toBe(false)
      expect(/[$€£]{2}/.test(r.instruction + r.response), `line ${r.line}`).toBe(false)
      const amount = r.entities["Refund Amount"]
      if (amount !== undefined && r.entities["Currency Symbol"] !== undefined) expect(amount.startsWith(r.entities["Currency Symbol"])).toBe(true)
      if (amount !== undefined && /dollar|dollr/.test(r.instruction + r.response)) expect(amount.startsWith("$"), `line ${r.line}`).toBe(true)
    }
    expect(sample.rows[0]!.instruction).toMatch(/^I want assistance canceling order (#|ORD-)\d{8}$/)
  })
})

describe("entities on synthetic rows", () => {
  it("agrees on city and country, and stores are in that country", () => {
    const rows = Array.from({ length: 300 }, () => row("do you ship to {{Delivery City}}, {{Delivery Country}}?", "Yes, we deliver to {{Delivery City}} in {{Delivery Country}}; pick up at our {{Store Location}}.", "delivery_options", "DELIVERY"))
    const out = ok(processCsv(csv(rows), P))
    const countries = new Set<string>()
    for (const r of out.rows) {
      const country = COUNTRIES.find((c) => c.name === r.entities["Delivery Country"])
      expect(country, r.entities["Delivery Country"]).toBeDefined()
      expect(country!.cities, `line ${r.line}`).toContain(r.entities["Delivery City"])
      const stores = r.entities["Store Location"]!.replace(/^.*? in /, "").split(/, | and /)
      for (const s of stores) expect(country!.cities).toContain(s)
      expect(r.instruction).toBe(`do you ship to ${r.entities["Delivery City"]}, ${r.entities["Delivery Country"]}?`)
      countries.add(country!.name)
    }
    expect(countries.size).toBeGreaterThanOrEqual(40)
  })

  it("replaces repeated and adjacent placeholders consistently", () => {
    const out = ok(
      processCsv(
        csv([
          row("where is order {{Order Number}}", "Order #{{Order Number}} ({{Order Number}}) ships soon. Call {{Customer Support Phone Number}}."),
          row("refund of {{Currency Symbol}}{{Refund Amount}}", "Your refund of {{Currency Symbol}}{{Refund Amount}} ({{Refund Amount}}) is on its way.", "track_refund", "REFUND"),
          row("i want my {{Refund Amount}} dollars", "Your refund of ${{Refund Amount}} is on its way.", "track_refund", "REFUND"),
          row("bills from {{Person Name}}", "the bills from {{Salutation}} {{Client First Name}} {{Client Last Name}}", "get_invoice", "INVOICE"),
          row("help", "Go to the '{{Online Order Interaction}}' or '{{Online Order Interaction}}' section, then '{{Settings}}'.", "cancel_order"),
          row("features?", "such as {{Feature 1}}, {{Feature 2}}, and {{Feature 3}}", "switch_account", "ACCOUNT")
        ]),
        P
      )
    )
    const [a, b, c, d, e, f] = out.rows as [OutputRow, OutputRow, OutputRow, OutputRow, OutputRow, OutputRow]
    const on = a.entities["Order Number"]!
    expect(a.instruction).toBe(`where is order ${on}`)
    expect(a.response).toBe(`Order ${on.startsWith("#") ? on : "#" + on} (${on}) ships soon. Call ${a.entities["Customer Support Phone Number"]}.`)
    const amount = b.entities["Refund Amount"]!
    expect(amount.startsWith(b.entities["Currency Symbol"]!)).toBe(true)
    expect(b.instruction).toBe(`refund of ${amount}`)
    expect(b.response).toBe(`Your refund of ${amount} (${amount}) is on its way.`)
    expect(c.entities["Refund Amount"]!.startsWith("$")).toBe(true)
    expect(c.response).toBe(`Your refund of ${c.entities["Refund Amount"]} is on its way.`)
    const [first, last] = d.entities["Person Name"]!.split(" ")
    expect([d.entities["Client First Name"], d.entities["Client Last Name"]]).toEqual([first, last])
    expect(d.response).toBe(`the bills from ${d.entities["Salutation"]} ${d.entities["Person Name"]}`)
    const labels = /'([^']+)' or '([^']+)'/.exec(e.response)!
    expect(labels[1]).toBe(e.entities["Online Order Interaction"])
    expect(labels[2]).not.toBe(labels[1])
    expect(UI_LABELS["Online Order Interaction"]).toContain(labels[2])
    expect(new Set([f.entities["Feature 1"], f.entities["Feature 2"], f.entities["Feature 3"]]).size).toBe(3)
    for (const k of ["Feature 1", "Feature 2", "Feature 3"]) expect(FEATURES).toContain(f.entities[k])
  })

  it("fits values to the words around them: hours after 'during', a URL after 'on our', no currency word after a symbol", () => {
    const out = ok(
      processCsv(
        csv([
          row("when can I call?", "Our team is available during {{Customer Support Hours}}.", "contact_customer_service", "CONTACT"),
          row("chat?", "Use the Live Chat on our {{Website URL}} to reach us.", "contact_customer_service", "CONTACT"),
          row("i want my {{Refund Amount}} dollars back", "A refund of {{Refund Amount}} dollars is on its way.", "track_refund", "REFUND"),
          row("refund?", "A refund of {{Currency Symbol}}{{Refund Amount}} USD was issued.", "track_refund", "REFUND")
        ]),
        P
      )
    )
    const [a, b, c, d] = out.rows as [OutputRow, OutputRow, OutputRow, OutputRow]
    expect(a.response).toBe(`Our team is available during our business hours (${a.company.hours}).`)
    expect(b.response).toBe(`Use the Live Chat on our website at ${b.company.website} to reach us.`)
    const amount = c.entities["Refund Amount"]!
    expect(amount).toMatch(/^\$\d/)
    expect(c.instruction).toBe(`i want my ${amount} back`)
    expect(c.response).toBe(`A refund of ${amount} is on its way.`)
    expect(d.response).toBe(`A refund of ${d.entities["Refund Amount"]} was issued.`)
    for (const r of out.rows) expect(r.response).not.toMatch(/\b(dollars|usd)\b|during every|on our https?:/i)
  })

  it("gives each row one company: its contact placeholders take the profile's values, phone and time zone from its country", () => {
    const rows = Array.from({ length: 400 }, () =>
      row("contact {{Company Name}}", "Call {{Customer Support Phone Number}} ({{Customer Support Hours}}), write to {{Customer Support Email}} or visit {{Website URL}}.", "contact_customer_service", "CONTACT")
    )
    const out = ok(processCsv(csv(rows), P))
    const countries = new Set<string>()
    const digitFormat = (f: string) => new RegExp("^" + f.replace(/[+]/g, "\\+").replace(/T/g, "8\\d\\d").replace(/M/g, "[2-9]").replace(/N/g, "\\d") + "$")
    for (const r of out.rows) {
      const co = r.company
      expect(r.entities["Company Name"]).toBe(co.name)
      expect(r.entities["Customer Support Phone Number"]).toBe(co.phone)
      expect(r.entities["Customer Support Hours"]).toBe(co.hours)
      expect(r.entities["Customer Support Email"]).toBe(co.email)
      expect(r.entities["Website URL"]).toBe(co.website)
      const where = SUPPORT_COUNTRIES.filter((s) => s.name === co.country)
      expect(where.length, co.country).toBeGreaterThan(0)
      expect(where.some((s) => digitFormat(s.phone).test(co.phone)), `${co.phone} for ${co.country}`).toBe(true)
      expect(where.some((s) => s.zones.some((z) => co.hours.endsWith(` ${z}`))), `${co.hours} for ${co.country}`).toBe(true)
      countries.add(co.country)
    }
    expect(countries.size).toBeGreaterThanOrEqual(5)
  })

  it("writes a [[Field]] as the field's words, and a your-{{Field}} the customer is asked for as its name", () => {
    const out = ok(
      processCsv(
        csv([
          row("help", "Please provide me with your [[Contact Information]] and I will call you.", "contact_human_agent", "CONTACT"),
          row("order?", "Could you share your {{Order Number}}? Then I can look it up.", "track_order")
        ]),
        P
      )
    )
    expect(out.rows[0]!.response).toBe("Please provide me with your contact information and I will call you.")
    expect(out.rows[1]!.response).toBe("Could you share your order number? Then I can look it up.")
    for (const r of out.rows) expect(leaks(r)).toBe(false)
  })

  it("infers a sensible kind for names that are not people's: products, accounts, plans", () => {
    const out = ok(processCsv(csv([row("return {{Product Name}}", "Sure, I can help you return the {{Product Name}}. Please provide me with your {{Account Name}} first.", "return_item", "REFUND")]), P))
    const r = out.rows[0]!
    expect(PRODUCTS).toContain(r.entities["Product Name"])
    expect(r.response).not.toMatch(new RegExp(`your ${r.entities["Product Name"]}`))
    expect(inferGenerator("Account Name").family).toBe("username")
    expect(inferGenerator("Plan Name").family).not.toBe("person-name")
    expect(inferGenerator("Account Holder Name").family).toBe("person-name")
  })

  it("reads 'N-M business days' date ranges as spans of days, others as calendar ranges", () => {
    const out = ok(processCsv(csv([row("when?", "It arrives within {{Date Range}} business days."), row("invoice?", "Please give me the {{Date Range}} of the invoice.")]), P))
    expect(out.rows[0]!.entities["Date Range"]).toMatch(/^\d{1,2}-\d{1,2}$/)
    expect(out.rows[1]!.entities["Date Range"]).toMatch(/^[A-Z][a-z]+ \d{1,2}(-\d{1,2}| - [A-Z][a-z]+ \d{1,2}), 20\d\d$/)
    for (const r of out.rows) expect(lookup("Date Range")!.check(r.entities["Date Range"]!)).toBe(true)
  })

  const UNKNOWN = csv([
    row("I paid {{Cancellation Fee}} for {{Ticket Number}}", "Your ticket {{Ticket Number}} and the fee of {{Cancellation Fee}} are noted. Open '{{Payment Settings}}'."),
    row("track {{Order Number}}", "Order {{Order Number}} is on its way."),
    row("mail {{Store Email}}", "Write to {{Store Email}} or visit {{Returns Page URL}} before {{Return Deadline}}; call {{Billing Phone}}."),
    row("contact {{Agent Name}} in {{Pickup City}}", "{{Agent Name}} will meet you at {{Warehouse Address}} on {{Delivery Day}}, {{Store Hours}}."),
    row("{{Payment Settings}}", "Open {{Payment Settings}}.")
  ])

  it("infers generators for unknown kinds from their words (unknownKinds: infer)", () => {
    const out = ok(processCsv(UNKNOWN, P))
    expect(out.rows.length).toBe(5)
    const e = Object.assign({}, ...out.rows.map((r) => r.entities)) as Record<string, string>
    expect(e["Payment Settings"]).toBe("Payment Settings")
    expect(e["Ticket Number"]).toMatch(/^[A-Z]{2,4}-[1-9]\d{7}$/)
    expect(e["Cancellation Fee"]).toMatch(/^[$€£]\d{1,3}(,\d{3})*\.\d{2}$/)
    expect(e["Store Email"]).toMatch(/^[a-z.]+\d*@[a-z]+\.[a-z]+$/)
    expect(e["Returns Page URL"]).toMatch(/^https:\/\/www\.[a-z]+\.[a-z]+\/returns$/)
    expect(e["Return Deadline"]).toMatch(/^[A-Z][a-z]+ \d{1,2}, 20\d\d$/)
    expect(e["Billing Phone"]).toMatch(PHONE)
    expect(e["Agent Name"]).toMatch(/^\S+ \S+$/)
    expect(COUNTRIES.some((c) => c.cities.includes(e["Pickup City"]!))).toBe(true)
    expect(e["Warehouse Address"]).toMatch(/^\d+ .+, .+$/)
    expect(e["Store Hours"]).toMatch(/ AM - .* PM /)
    expect(out.report.unknownKinds["Ticket Number"]).toEqual({ count: 2, policy: "infer", inferredAs: "identifier" })
    expect(out.report.unknownKinds["Payment Settings"]).toEqual({ count: 3, policy: "infer", inferredAs: "ui-label" })
    expect(out.report.placeholders["Payment Settings"]).toBe(3)
    expect(out.report.leaks).toBe(0)
    for (const r of out.rows) for (const s of strings(r)) expect(BRACES.test(s) || FALLBACK.test(s), s).toBe(false)
  })

  it("maps kinds to generator families by their words", () => {
    const families: Record<string, string> = {
      "Payment Settings": "ui-label",
      "Reset Security Key": "ui-label",
      "Tracking ID": "identifier",
      "Promo Code": "identifier",
      "Support Email": "email",
      "Help Center Link": "url",
      "Manager Name": "person-name",
      "Carrier Name": "company-name",
      "Delivery Date": "date",
      "Pickup Time": "time",
      "Office Hours": "hours",
      "Shipping Cost": "money",
      "Phone Number": "phone",
      "Billing Country": "country",
      "Shipping Address": "address",
      "Zip Code": "postal-code",
      "Feature 4": "feature",
      "Loyalty Discount": "percent"
    }
    for (const [kind, family] of Object.entries(families)) expect(inferGenerator(kind).family, kind).toBe(family)
    expect(labelOf("VALUE1")).toBe("VALUE 1")
    expect(FALLBACK.test(generate("VALUE1", 1, 2))).toBe(false)
    for (let line = 2; line < 200; line++)
      for (const kind of Object.keys(families)) {
        const v = generate(kind, 3, line)
        expect(inferGenerator(kind).check(v), `${kind} = ${v}`).toBe(true)
      }
  })

  it("fails naming the unknown kinds and their lines (unknownKinds: fail)", () => {
    const out = fail(processCsv(UNKNOWN, { ...P, unknownKinds: "fail" }))
    expect(out.message).toContain("{{Payment Settings}}")
    expect(out.message).toContain("{{Ticket Number}}")
    expect(out.message).toMatch(/Payment Settings\}\} \(3×, lines 2, 6\)/)
    expect(out.message).toContain("entities.unknownKinds")
    expect(out.report?.unknownKinds["Ticket Number"]).toEqual({ count: 2, policy: "fail" })
  })

  it("drops the rows holding unknown kinds (unknownKinds: drop)", () => {
    const out = ok(processCsv(UNKNOWN, { ...P, unknownKinds: "drop" }))
    expect(out.rows.map((r) => r.line)).toEqual([3])
    expect(out.report.droppedRows).toBe(4)
    expect(out.report.bad).toBe(0)
    expect(out.report.unknownKinds["Payment Settings"]).toEqual({ count: 3, policy: "drop" })
    expect(out.report.placeholders).toEqual({ "Order Number": 2 })
  })
})

describe("validation and quarantine", () => {
  const MIXED =
    HEADER +
    `B,"a question
over two lines",ORDER,track_order,"an ""answer"" for {{Order Number}},
also two lines"\n` + // lines 2-4
    `B,cancel {{Order Number,ORDER,cancel_order,ok\n` + // 5: unclosed
    `B,where is my order,ORDER,Track Order,fine\n` + // 6: bad intent
    `B,hello,ORDER,track_order\n` + // 7: four fields
    `B,   ,ORDER,track_order,answer\n` + // 8: blank instruction
    `B,hi,ORDER,track_order,the model said VALUE8541\n` + // 9: fallback token
    `B,hi,ORDER,track_order,see }} here\n` + // 10: stray closing braces
    `B,hi {{{Order Number}}},ORDER,track_order,ok\n` + // 11: triple braces
    `B,hi {{}},ORDER,track_order,ok\n` + // 12: empty name
    `BL,"fine ""quoted"" row, with a comma",ORDER,track_order,"ok, {{ order number }}"\n` // 13: good (spaces and case in the name)

  it("quarantines bad rows with their line and reason", () => {
    const out = ok(processCsv(MIXED, { ...P, maxBadFraction: 1 }))
    expect(out.rows.map((r) => r.line)).toEqual([2, 13])
    const q = Object.fromEntries(out.report.quarantined.map((x) => [x.line, x.reason]))
    expect(Object.keys(q).map(Number)).toEqual([5, 6, 7, 8, 9, 10, 11, 12])
    expect(q[5]).toMatch(/^instruction: unclosed "\{\{" at "\{\{Order Number"$/)
    expect(q[6]).toMatch(/^intent: "Track Order" is not an intent name$/)
    expect(q[7]).toBe("expected 5 fields, got 4")
    expect(q[8]).toBe("instruction: is empty")
    expect(q[9]).toBe("response: contains the fallback token VALUE8541")
    expect(q[10]).toMatch(/^response: stray "\}\}"/)
    expect(q[11]).toMatch(/^instruction: too many braces at "\{\{\{Order Number\}\}\}"/)
    expect(q[12]).toMatch(/^instruction: malformed placeholder "\{\{\}\}"/)
    expect(out.report.bad).toBe(8)
    expect(out.report.badFraction).toBeCloseTo(0.8)
    const [a, b] = out.rows as [OutputRow, OutputRow]
    expect(a.instruction).toBe("a question\nover two lines")
    expect(a.response).toBe(`an "answer" for ${a.entities["Order Number"]},\nalso two lines`)
    expect(b.instruction).toBe('fine "quoted" row, with a comma')
    expect(b.entities).toEqual({ "Order Number": b.response.slice(4) })
    expect(b.flags).toBe("BL")
  })

  it("fails when more than maxBadFraction of the rows are bad", () => {
    const out = fail(processCsv(MIXED, P))
    expect(out.message).toMatch(/^8 of 10 rows are bad \(80\.0% > entities\.maxBadFraction\); first: line 5: /)
    expect(out.report?.quarantined.length).toBe(8)
    const few = csv([...Array.from({ length: 99 }, () => row("track {{Order Number}}", "ok")), row("track {{Order Number", "ok")])
    expect(ok(processCsv(few, P)).report.bad).toBe(1)
    expect(fail(processCsv(few, { ...P, maxBadFraction: 0.005 })).message).toContain("line 101")
  })

  it("refuses a broken file or header outright", () => {
    expect(fail(processCsv(HEADER + `B,"never closed,ORDER,x,y\n`, P)).message).toBe("dataset.csv: line 2: unterminated quoted field")
    expect(fail(processCsv("a,b\n1,2\n", P)).message).toMatch(/^dataset\.csv line 1: expected columns/)
  })

  it("detects leaks in an output row", () => {
    const company = { name: "Summit Goods", website: "https://www.summitgoods.com", phone: "+1-800-555-0100", email: "help@summitgoods.com", hours: "weekdays, 9:00 AM - 5:00 PM ET", country: "United States" }
    const r: OutputRow = { line: 2, flags: "B", instruction: "hi", category: "ORDER", intent: "x", response: "fine", entities: {}, company }
    expect(leaks(r)).toBe(false)
    expect(leaks({ ...r, response: "provide your [[Contact Information]]" })).toBe(true)
    expect(leaks({ ...r, response: "VALUE8541" })).toBe(true)
    expect(leaks({ ...r, instruction: "{{Order Number}}" })).toBe(true)
    expect(leaks({ ...r, entities: { "Order Number": "x}}" } })).toBe(true)
  })
})

describe("the CSV reader", () => {
  it("reads quoted multi-line fields and doubled quotes, and names the line of a malformed record", () => {
    const cases: Array<[string, unknown]> = [
      ['a,b\r\n"x\ny","z""w"\r\n\r\n1,2', [{ line: 1, fields: ["a", "b"] }, { line: 2, fields: ["x\ny", 'z"w'] }, { line: 5, fields: ["1", "2"] }]],
      ['\ufeffa,"",c\n,,\n"multi\nline\nfield",x\n', [{ line: 1, fields: ["a", "", "c"] }, { line: 2, fields: ["", "", ""] }, { line: 3, fields: ["multi\nline\nfield", "x"] }]],
      ['a,"b"c\n', { error: "line 1: unexpected character after a quoted field" }],
      ['a,"b\n\nc', { error: "line 1: unterminated quoted field" }],
      ['a,b"c\n', { error: "line 1: quote inside an unquoted field" }],
      ['"a""",b\n"",""""\n', [{ line: 1, fields: ['a"', "b"] }, { line: 2, fields: ["", '"'] }]],
      ["", []]
    ]
    for (const [c, expected] of cases) {
      let got: unknown
      try {
        got = parse(c)
      } catch (e) {
        got = { error: (e as Error).message }
      }
      expect(got, JSON.stringify(c)).toEqual(expected)
    }
    expect(parse(SAMPLE)).toHaveLength(891)
    const multi = parse('h\n"one\ntwo",""""\nnext,"a ""b"" c"\n')
    expect(multi).toEqual([
      { line: 1, fields: ["h"] },
      { line: 2, fields: ["one\ntwo", '"'] },
      { line: 4, fields: ["next", 'a "b" c'] }
    ])
  })

  it("reads a file in chunks of any size to the same records, whatever falls on a chunk's edge", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "csv-"))
    const tricky = 'h1,h2\r\n"a ""quoted""\r\nfield",\u00e9\u20ac\ud83d\ude00\r\n"",""""\n\ufffdx,y\n'
    for (const [name, text] of [["sample", SAMPLE], ["tricky", tricky]] as const) {
      const file = path.join(dir, `${name}.csv`)
      fs.writeFileSync(file, text)
      const whole = parse(text)
      for (const chunk of [1, 2, 3, 4, 5, 7, 13, 64, 4096]) expect(readFile(file, chunk), `${name} in chunks of ${chunk}`).toEqual(whole)
    }
  })

  it("refuses NUL bytes, bytes that are not UTF-8 and runaway records, with the line", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "csv-"))
    const file = path.join(dir, "bad.csv")
    const fails = (body: string | Buffer, chunk = 4) => {
      fs.writeFileSync(file, body)
      try {
        readFile(file, chunk)
      } catch (e) {
        return (e as Error).message
      }
      return "no error"
    }
    expect(fails("a,b\n1,2\n3,\u0000\n")).toBe("line 3: holds a NUL byte (is this a text file?)")
    expect(fails(Buffer.concat([Buffer.from("a,b\n\n1,\u00e9"), Buffer.from([0xe9, 0x41]), Buffer.from("\n")]))).toBe("line 3: not valid UTF-8 (byte 0xe9)")
    expect(fails(Buffer.concat([Buffer.from("a,b\n1,"), Buffer.from([0xf0, 0x9f, 0x98])]))).toBe("line 2: not valid UTF-8 (byte 0xf0)") // cut at the end
    expect(firstInvalidUtf8(Buffer.from([0xc0, 0x80]))).toBe(0) // overlong
    expect(firstInvalidUtf8(Buffer.from([0x41, 0xed, 0xa0, 0x80]))).toBe(1) // a surrogate
    expect(firstInvalidUtf8(Buffer.from([0xf4, 0x90, 0x80, 0x80]))).toBe(0) // above U+10FFFF
    expect(firstInvalidUtf8(Buffer.from("plain, \u00e9, \u20ac, \ud83d\ude00"))).toBe(-1)
    const p = new Parser(100)
    expect(() => p.feed(`a\n"${"x".repeat(200)}`, false)).toThrow("line 2: a record longer than")
  })
})

describe("the stage", () => {
  it("writes rows.jsonl and report.json", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "entities-test-"))
    try {
      const dataset = path.join(dir, "dataset.csv")
      fs.writeFileSync(dataset, SAMPLE)
      const outputs = { rows: path.join(dir, "rows.jsonl"), report: path.join(dir, "report.json") }
      const logs: Array<string> = []
      await Effect.runPromise(
        runStage({
          name: "entities",
          key: "test",
          owns: () => undefined,
          params: { entities: P },
          inputs: { dataset },
          outputs,
          workspace: dir,
          scratchDir: dir,
          progress: { total: () => Effect.void, update: () => Effect.void },
          log: (l) => Effect.sync(() => void logs.push(l))
        })
      )
      const rows = fs.readFileSync(outputs.rows, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as OutputRow)
      expect(rows).toEqual(sample.rows)
      const report = JSON.parse(fs.readFileSync(outputs.report, "utf8"))
      expect(Object.keys(report)).toEqual(["rows", "bad", "badFraction", "quarantined", "placeholders", "unknownKinds", "droppedRows", "leaks"])
      expect(report.leaks).toBe(0)
      expect(logs[0]).toMatch(/^890 rows, 0 quarantined, \d+ placeholders of 63 kinds replaced$/)
      const failing = await Effect.runPromise(
        Effect.flip(
          runStage({
            name: "entities",
            key: "test",
            owns: () => undefined,
            params: { entities: { ...P, unknownKinds: "fail" } },
            inputs: { dataset: (fs.writeFileSync(dataset, UNKNOWN_FOR_STAGE), dataset) },
            outputs,
            workspace: dir,
            scratchDir: dir,
            progress: { total: () => Effect.void, update: () => Effect.void },
            log: () => Effect.void
          })
        )
      )
      expect(failing.message).toContain("{{Gift Card Code}}")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("processes the sample repeated 30 times quickly", () => {
    const nl = SAMPLE.indexOf("\n")
    const big = SAMPLE.slice(0, nl + 1) + SAMPLE.slice(nl + 1).repeat(30)
    const t0 = performance.now()
    const out = ok(processCsv(big, P))
    const ms = performance.now() - t0
    expect(out.rows.length).toBe(26_700)
    expect(out.report.leaks).toBe(0)
    console.log(`entities: ${out.rows.length} rows in ${ms.toFixed(0)} ms = ${Math.round((out.rows.length / ms) * 1000)} rows/s`)
    expect(ms).toBeLessThan(5_000)
  })
})

const UNKNOWN_FOR_STAGE = csv([row("redeem {{Gift Card Code}}", "Code {{Gift Card Code}} is valid.")])
