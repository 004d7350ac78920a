/**
 * What the assistant says after a tool result: written from the result, per
 * tool and outcome, so the answer states what the lookup returned (the
 * status, the date, the amount, the link) and never contradicts it (an order
 * that could not be cancelled is never walked through cancelling).
 *
 * Why templates rather than the dataset's response: Bitext's responses were
 * written without any lookup. They explain how to do the thing yourself and
 * quote contact details and figures from nowhere, so after a result they
 * ignore it (11 of 392 answers stated one of its values). The response is
 * still used where it is right: when no tool can do the job (the assistant
 * explains how), when the user declines an offer to do it for them, and its
 * opening sentence, which restates the user's request in their own words,
 * opens the answer when it holds no fact the conversation lacks.
 *
 * Each tool has several phrasings; `say` states one outcome in a sentence or
 * two, so a parallel call's answer states each result in turn.
 */
import type { ToolSpec } from "./catalogue.ts"
import type { Result, World } from "./world.ts"

type Args = Readonly<Record<string, string>>
type Say = (r: Result, a: Args, w: World) => string

const s = (v: unknown): string => String(v)
/** a plan's name in a sentence: "Premium" (the enum spells it "premium") */
const plan = (v: unknown): string => String(v).charAt(0).toUpperCase() + String(v).slice(1)
const list = (xs: ReadonlyArray<string>): string => (xs.length <= 1 ? xs.join("") : `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`)

const SUCCESS: Readonly<Record<string, ReadonlyArray<Say>>> = {
  track_order: [
    (r) => {
      const when = `estimated delivery: ${s(r["estimated_delivery"])}`
      switch (r["status"]) {
        case "processing":
          return `Order ${s(r["order_number"])} is processing and still in our warehouse (${when}).`
        case "shipped":
          return `Order ${s(r["order_number"])} has shipped with ${s(r["carrier"])}, and the ${when}.`
        case "in transit":
          return `Order ${s(r["order_number"])} is in transit with ${s(r["carrier"])}; ${when}.`
        default:
          return `Good news: order ${s(r["order_number"])} is out for delivery with ${s(r["carrier"])} (${when}).`
      }
    },
    (r) => `The status of order ${s(r["order_number"])} is "${s(r["status"])}"${r["carrier"] ? `, carrier ${s(r["carrier"])}` : ""}. It should arrive by ${s(r["estimated_delivery"])}.`
  ],
  cancel_order: [
    (r) => `Order ${s(r["order_number"])} has been cancelled. A refund of ${s(r["refund_amount"])} is on its way and should reach you within ${s(r["refund_time"])}.`,
    (r) => `Done: order ${s(r["order_number"])} is cancelled, and ${s(r["refund_amount"])} will be refunded within ${s(r["refund_time"])}.`,
    (r) => `I've cancelled order ${s(r["order_number"])}. You'll get ${s(r["refund_amount"])} back within ${s(r["refund_time"])}.`
  ],
  change_order: [
    (r) => `Order ${s(r["order_number"])} is open for changes until ${s(r["editable_until"])}. You can edit the items, quantities and options here: ${s(r["edit_page"])}.`,
    (r) => `You can still change order ${s(r["order_number"])}: make your edits at ${s(r["edit_page"])} before ${s(r["editable_until"])}.`
  ],
  start_order: [
    (r) => `I've opened a new cart for you (${s(r["cart_id"])}). Add what you'd like and check out here: ${s(r["cart_url"])}.`,
    (r) => `Your new order is started: cart ${s(r["cart_id"])} is open at ${s(r["cart_url"])}.`
  ],
  get_refund: [
    (r) => `I've submitted a refund request (${s(r["refund_request"])}) for order ${s(r["order_number"])}. The ${s(r["amount"])} should reach you within ${s(r["expected_within"])}.`,
    (r) => `Your refund of ${s(r["amount"])} for order ${s(r["order_number"])} is requested under reference ${s(r["refund_request"])}; expect it within ${s(r["expected_within"])}.`
  ],
  track_refund: [
    (r) => `The refund of ${s(r["amount"])} for order ${s(r["order_number"])} is ${s(r["refund_status"])}, and it is expected by ${s(r["expected_by"])}.`,
    (r) => `Your ${s(r["amount"])} refund (order ${s(r["order_number"])}): status "${s(r["refund_status"])}", expected by ${s(r["expected_by"])}.`
  ],
  get_invoice: [
    (r) => `Here is invoice ${s(r["invoice_number"])} (issued ${s(r["issued_on"])}, total ${s(r["total"])}) as a PDF: ${s(r["download_url"])}.`,
    (r) => `You can download invoice ${s(r["invoice_number"])} here: ${s(r["download_url"])}. It was issued on ${s(r["issued_on"])} for ${s(r["total"])}.`
  ],
  check_invoice: [
    (r) =>
      r["payment_status"] === "paid"
        ? `Invoice ${s(r["invoice_number"])} for ${s(r["total"])} is paid; the payment was received on ${s(r["paid_on"])}.`
        : r["payment_status"] === "unpaid"
          ? `Invoice ${s(r["invoice_number"])} for ${s(r["total"])} is unpaid, with payment due by ${s(r["due_date"])}.`
          : `Invoice ${s(r["invoice_number"])} for ${s(r["total"])} is overdue: payment was due on ${s(r["due_date"])}.`,
    (r) => `Invoice ${s(r["invoice_number"])}: total ${s(r["total"])}, status ${s(r["payment_status"])} (${r["paid_on"] ? `paid on ${s(r["paid_on"])}` : r["payment_status"] === "overdue" ? `it was due on ${s(r["due_date"])}` : `due by ${s(r["due_date"])}`}).`
  ],
  change_shipping_address: [
    (r) => `Order ${s(r["order_number"])} hasn't shipped, so its address can still be changed until ${s(r["change_before"])}. Enter the new address here: ${s(r["address_page"])}.`,
    (r) => `You can update the delivery address of order ${s(r["order_number"])} at ${s(r["address_page"])} before ${s(r["change_before"])}.`
  ],
  add_shipping_address: [
    (r) => `I've opened a new address form for you${r["city"] ? ` for ${s(r["city"])}` : ""}${r["country"] ? `${r["city"] ? ", " : " for "}${s(r["country"])}` : ""}: ${s(r["address_form"])}. You currently have ${s(r["saved_addresses"])} saved ${r["saved_addresses"] === 1 ? "address" : "addresses"}.`,
    (r) => `Add the new shipping address here: ${s(r["address_form"])}. It will sit next to the ${s(r["saved_addresses"])} ${r["saved_addresses"] === 1 ? "address" : "addresses"} already on your account.`
  ],
  create_account: [
    (r) => `I've started a ${plan(r["account_type"])} account for you. Finish signing up with this link: ${s(r["signup_link"])} (it stays valid for ${s(r["link_valid_for"])}).`,
    (r) => `Your ${plan(r["account_type"])} account is ready to be set up: open ${s(r["signup_link"])} within ${s(r["link_valid_for"])} to choose your password.`
  ],
  delete_account: [
    (r) => `Your account is ${s(r["status"])} on ${s(r["deletion_date"])}. If you change your mind, you can restore it until ${s(r["restore_until"])}.`,
    (r) => `Done: the account will be deleted on ${s(r["deletion_date"])}. Until ${s(r["restore_until"])} you can still restore it.`
  ],
  update_account: [
    (r) => `You can change your ${list((r["editable_fields"] as ReadonlyArray<string>) ?? [])} on your settings page: ${s(r["settings_page"])}.`,
    (r) => `Head to ${s(r["settings_page"])} to edit your account; the fields you can change are ${list((r["editable_fields"] as ReadonlyArray<string>) ?? [])}.`
  ],
  switch_account: [
    (r) => `Your account moves to the ${plan(r["new_plan"])} plan from ${s(r["effective_from"])}${r["price_change"] === "none" ? ", with no change in price" : `, at ${s(r["price_change"])}`}.`,
    (r) => `Done: you'll be on ${plan(r["new_plan"])} starting ${s(r["effective_from"])}. Price change: ${s(r["price_change"])}.`
  ],
  send_password_reset: [
    (r) => `I've sent a reset link to ${s(r["sent_to"])}. It expires in ${s(r["expires_in"])}, so please use it soon.`,
    (r) => `A reset link is on its way to ${s(r["sent_to"])}; it is valid for ${s(r["expires_in"])}.`
  ],
  manage_newsletter: [
    (r) =>
      r["subscription"] === "active"
        ? `You're subscribed: your subscription is active and the newsletter will arrive ${s(r["frequency"])}. You can change your preferences at ${s(r["preferences_page"])}.`
        : `Your newsletter subscription is cancelled; the last issue you'll have received was sent on ${s(r["last_issue_sent"])}. You can sign up again any time at ${s(r["preferences_page"])}.`,
    (r) =>
      r["subscription"] === "active"
        ? `Done! Your subscription is active: you'll get our newsletter ${s(r["frequency"])}, and you can manage it at ${s(r["preferences_page"])}.`
        : `Done: your subscription is cancelled and no more newsletters will be sent (the last one went out on ${s(r["last_issue_sent"])}). Changed your mind? Visit ${s(r["preferences_page"])}.`
  ],
  report_payment_issue: [
    (r) => `I've opened case ${s(r["case_id"])}${r["order_number"] ? ` for order ${s(r["order_number"])}` : ""} about the payment. Our billing team will reply within ${s(r["reply_within"])}.`,
    (r) => `Your payment issue is logged as case ${s(r["case_id"])}; expect a reply within ${s(r["reply_within"])}.`
  ],
  transfer_to_human_agent: [
    (r) => `I've passed you to a human agent. You're number ${s(r["position_in_queue"])} in the queue, with an estimated wait of ${s(r["estimated_wait"])}.`,
    (r) => `An agent will be with you shortly: you're ${s(r["position_in_queue"])} in line, about ${s(r["estimated_wait"])} away.`
  ],
  get_contact_info: [
    (r) => `You can reach customer service by phone at ${s(r["phone"])} (${s(r["hours"])}), by e-mail at ${s(r["email"])}, or through live chat at ${s(r["live_chat"])}.`,
    (r) => `Call us at ${s(r["phone"])} (${s(r["hours"])}), write to ${s(r["email"])}, or chat with us at ${s(r["live_chat"])}.`
  ],
  create_ticket: [
    (r) => `I've recorded your ${s(r["category"])} as ticket ${s(r["ticket"])}, and our team will reply within ${s(r["reply_within"])}.`,
    (r) =>
      r["category"] === "review"
        ? `Thank you! I've opened ticket ${s(r["ticket"])} for your review: write your feedback in reply and our team will follow up within ${s(r["reply_within"])}.`
        : `Your complaint is logged under ticket ${s(r["ticket"])}; expect a reply within ${s(r["reply_within"])}.`
  ],
  get_policy: [(r) => sayPolicy(r)]
}

const sayPolicy = (r: Result): string => {
  switch (r["topic"]) {
    case "cancellation_fee":
      return `Cancelling is free within ${s(r["free_cancellation_window"])}. After that the fee is ${s(r["fee_after_window"])}, and an order can no longer be cancelled once ${s(r["no_cancellation_after"])}.`
    case "refund":
      return `You can return an item within ${s(r["return_window"])} if it is ${s(r["condition"])}. Refunds go back to ${s(r["refunded_to"])} within ${s(r["refund_time"])}.`
    case "payment_methods":
      return `We accept ${list(r["methods"] as ReadonlyArray<string>)}.`
    case "delivery_options": {
      const opts = (r["options"] as ReadonlyArray<Result>).map((o) => `${s(o["name"])} (${s(o["time"])}, ${s(o["price"])})`)
      return `We offer ${list(opts)}. Shipping is free on orders over ${s(r["free_shipping_over"])}.`
    }
    case "delivery_period":
      return `Domestic orders arrive within ${s(r["domestic"])} and international ones within ${s(r["international"])}. Orders placed before ${s(r["order_cutoff"])} leave the same day.`
    default:
      return `To register you need ${s(r["requirements"])}. Sign up at ${s(r["signup_url"])}; the verification link we send is valid for ${s(r["verification_link_valid_for"])}.`
  }
}

const NOT_FOUND: ReadonlyArray<(what: string, value: string) => string> = [
  (what, v) => `I couldn't find an ${what} with the number ${v}. Could you double-check it and send it again?`,
  (what, v) => `I'm sorry, but no ${what} matches ${v}. Could you check the number for a typo?`,
  (what, v) => `I wasn't able to find ${what} ${v} in our system. Could you confirm the number?`
]

const NOT_ALLOWED: Readonly<Record<string, ReadonlyArray<Say>>> = {
  cancel_order: [
    (r) => `I'm sorry, but order ${s(r["order_number"])} can't be cancelled because ${s(r["reason"])} (it left our warehouse on ${s(r["shipped_on"])}). Once it arrives, you can return it for a refund.`,
    (r) => `Unfortunately order ${s(r["order_number"])} could not be cancelled: ${s(r["reason"])}. It left our warehouse on ${s(r["shipped_on"])}, so you can send it back after delivery instead.`
  ],
  change_order: [
    (r) => `I'm sorry, order ${s(r["order_number"])} can't be changed anymore because ${s(r["reason"])}.`,
    (r) => `Unfortunately changes to order ${s(r["order_number"])} are not possible: ${s(r["reason"])}.`
  ],
  get_refund: [
    (r) => `I'm sorry, but I can't request a refund for order ${s(r["order_number"])}: ${s(r["reason"])} (it was delivered on ${s(r["delivered_on"])}).`,
    (r) => `Unfortunately order ${s(r["order_number"])} is not eligible for a refund because ${s(r["reason"])}; it was delivered on ${s(r["delivered_on"])}.`
  ],
  change_shipping_address: [
    (r) => `I'm sorry, the address of order ${s(r["order_number"])} can't be changed because ${s(r["reason"])} (it left our warehouse on ${s(r["shipped_on"])}).`,
    (r) => `Unfortunately it's too late to change the address of order ${s(r["order_number"])}: ${s(r["reason"])}. It left our warehouse on ${s(r["shipped_on"])}.`
  ],
  delete_account: [
    (r) => `I can't close your account yet because ${s(r["reason"])} (order ${s(r["open_order"])}). Once it has arrived, I can close the account for you.`,
    (r) => `Unfortunately the account can't be deleted right now: ${s(r["reason"])} (${s(r["open_order"])}).`
  ]
}

const WHAT: Readonly<Record<string, string>> = { invoice_number: "invoice", order_number: "order" }

/** One or two sentences stating one result. */
export const say = (tool: ToolSpec, args: Args, r: Result, w: World): string => {
  if (r["error"] === "not_found") {
    const [arg, value] = Object.entries(args)[0] ?? ["order_number", ""]
    return w.pick(NOT_FOUND)(WHAT[arg] ?? "order", value)
  }
  if (r["error"] === "not_allowed") return w.pick(NOT_ALLOWED[tool.name] ?? [() => "I'm sorry, but that isn't possible."])(r, args, w)
  return w.pick(SUCCESS[tool.name]!)(r, args, w)
}

/** the tools that only look something up: "Here's what I found" opens their answers, not an action's */
const LOOKUPS = new Set(["track_order", "track_refund", "get_refund", "get_invoice", "check_invoice", "get_policy", "get_contact_info"])
const LOOKUP_OPENERS: ReadonlyArray<string> = ["", "", "", "Thanks for your patience. ", "I've checked for you. ", "Here's what I found. ", "Thank you for waiting. "]
const ACTION_OPENERS: ReadonlyArray<string> = ["", "", "", "Thanks for your patience. ", "Thank you for waiting. "]
export const openers = (tool: string): ReadonlyArray<string> => (LOOKUPS.has(tool) ? LOOKUP_OPENERS : ACTION_OPENERS)
export const CLOSERS: ReadonlyArray<string> = ["", "", " Is there anything else I can help you with?", " Let me know if there's anything else I can do.", " Anything else I can help with?"]
const LOOKUP_PARALLEL: ReadonlyArray<string> = ["Here is what I found for both. ", "I've looked at both. ", "", "Thanks for waiting. Here are both results. "]
const ACTION_PARALLEL: ReadonlyArray<string> = ["", "Thanks for waiting. Here are both results. ", "Here's how both went. "]
export const parallelOpeners = (tool: string): ReadonlyArray<string> => (LOOKUPS.has(tool) ? LOOKUP_PARALLEL : ACTION_PARALLEL)
