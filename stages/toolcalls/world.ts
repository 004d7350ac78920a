/**
 * The world the tools look things up in: one company per conversation (its
 * profile from the entities stage), its policies (a pure function of the
 * company, so every conversation about one company states the same refund
 * window), and the values a lookup returns (dates, amounts, references),
 * drawn from the conversation's own seeded generator.
 *
 * Every value is a display string ("March 14, 2026", "$45.00", "5-7 business
 * days"), so an answer that states it quotes the result.
 */
import type { Company } from "../entities/context.ts"
import { MONTHS } from "../entities/data.ts"
import { hash32, Rng } from "../lib/rng.ts"

export type { Company }

export type Json = string | number | boolean | null | ReadonlyArray<Json> | { readonly [k: string]: Json }
export type Result = { readonly [k: string]: Json }

const pad2 = (n: number) => (n < 10 ? "0" : "") + n

export class World {
  readonly company: Company
  /** the conversation's currency symbol: the one the user wrote, else the row's */
  readonly currency: string
  readonly rng: Rng
  /** an amount the user stated ("a refund of $69.19"): a lookup of that refund returns it */
  readonly statedAmount: string | undefined

  constructor(company: Company, currency: string, rng: Rng, statedAmount?: string) {
    this.company = company
    this.currency = currency
    this.rng = rng
    this.statedAmount = statedAmount
  }

  pick<A>(xs: ReadonlyArray<A>): A {
    return xs[this.rng.nextU32() % xs.length]!
  }

  int(lo: number, hi: number): number {
    return lo + (this.rng.nextU32() % (hi - lo + 1))
  }

  chance(p: number): boolean {
    return this.rng.next() < p
  }

  /** a date `from`..`to` days after the conversation's day (June 1, 2026), as "March 14, 2026" */
  date(from: number, to: number): string {
    const d = new Date(Date.UTC(2026, 5, 1) + this.int(from, to) * 86_400_000)
    return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}, ${d.getUTCFullYear()}`
  }

  /** an amount in the conversation's currency: "$45.00", "€1,203.50" */
  money(lo: number, hi: number): string {
    return formatMoney(this.currency, this.int(lo, hi), this.chance(0.4) ? 0 : this.int(1, 99))
  }

  /** a reference such as "R-104233" */
  ref(prefix: string): string {
    return `${prefix}-${this.int(100000, 999999)}`
  }

  /** a page of the company's site */
  page(path: string): string {
    return `${this.company.website}${path}`
  }
}

export const formatMoney = (symbol: string, whole: number, cents: number): string =>
  `${symbol}${String(whole).replace(/\B(?=(\d{3})+(?!\d))/g, ",")}.${pad2(cents)}`

// ---------------------------------------------------------------------------
// Policies: a function of the company (and the currency they are quoted in)

export type PolicyTopic = "cancellation_fee" | "refund" | "payment_methods" | "delivery_options" | "delivery_period" | "registration"
export const POLICY_TOPICS: ReadonlyArray<PolicyTopic> = ["cancellation_fee", "refund", "payment_methods", "delivery_options", "delivery_period", "registration"]

const PAYMENT_METHODS = ["Visa", "Mastercard", "American Express", "PayPal", "Apple Pay", "Google Pay", "Klarna", "bank transfer", "gift cards"]

export const policy = (company: Company, currency: string, topic: PolicyTopic): Result => {
  const r = new Rng(hash32(`${company.name}:${topic}`))
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[r.nextU32() % xs.length]!
  const money = (lo: number, hi: number, cents: ReadonlyArray<number> = [0, 99, 50]) => formatMoney(currency, lo + (r.nextU32() % (hi - lo + 1)), pick(cents))
  switch (topic) {
    case "cancellation_fee": {
      const free = pick(["1 hour", "2 hours", "12 hours", "24 hours", "48 hours"])
      return { topic, free_cancellation_window: `${free} after ordering`, fee_after_window: money(5, 15, [0, 0, 99]), no_cancellation_after: pick(["the order has shipped", "the order is packed", "the order has left the warehouse"]) }
    }
    case "refund": {
      const days = pick([14, 30, 30, 45, 60])
      return { topic, return_window: `${days} days`, condition: pick(["unused and in the original packaging", "in its original condition with the receipt", "unworn and with tags attached"]), refund_time: pick(["3-5 business days", "5-7 business days", "5-10 business days", "7-14 business days"]), refunded_to: "the original payment method" }
    }
    case "payment_methods": {
      const methods = PAYMENT_METHODS.filter(() => r.next() < 0.7)
      return { topic, methods: methods.length >= 2 ? methods : PAYMENT_METHODS.slice(0, 4) }
    }
    case "delivery_options": {
      const std = pick(["3-5", "4-6", "5-7"])
      return {
        topic,
        options: [
          { name: "Standard", time: `${std} business days`, price: r.next() < 0.4 ? "free" : money(3, 7) },
          { name: "Express", time: pick(["1-2", "2-3"]) + " business days", price: money(9, 19) },
          ...(r.next() < 0.5 ? [{ name: "Next Day", time: "1 business day", price: money(18, 29) }] : [])
        ],
        free_shipping_over: money(35, 100, [0])
      }
    }
    case "delivery_period":
      return { topic, domestic: pick(["2-4", "3-5", "4-6", "5-7"]) + " business days", international: pick(["7-14", "10-15", "10-20"]) + " business days", order_cutoff: pick(["12:00 PM", "2:00 PM", "3:00 PM", "5:00 PM"]) }
    case "registration":
      return { topic, requirements: pick(["a valid email address and a password of at least 8 characters", "your name, a valid email address and a password", "an email address and a mobile number"]), signup_url: `${company.website}/${pick(["signup", "register", "account/create"])}`, verification_link_valid_for: pick(["24 hours", "48 hours", "72 hours"]) }
  }
}
