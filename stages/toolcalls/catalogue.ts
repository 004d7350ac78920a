/**
 * The tool catalogue: JSON-schema functions in the OpenAI/Qwen `tools` format,
 * and what each returns.
 *
 * Arguments are of three sorts:
 * - identifying (`id`): an order or invoice number. Taken verbatim from the
 *   user's words (extract.ts); when a required one is missing from every user
 *   turn, the assistant asks for it instead of calling.
 * - from the user's words by vocabulary (`fromUser`): an account tier, a city,
 *   a country. Enumerated values use the enum's spelling.
 * - from the intent (`enum` without `fromUser`): a policy topic, a ticket
 *   category, set by the intent's mapping in the params (`toolcalls.tools`).
 *
 * Results carry the facts an answer needs, as display strings (world.ts): a
 * policy lookup returns the policy, a contact lookup the contact details.
 * Tools that can fail return `{"error": "not_found" | "not_allowed", …}` with
 * the reason. `group` names tools a model could confuse (tracking an order or
 * a refund; contact details or a human agent): distractors are drawn from the
 * same group first.
 */
import type { IdLabel } from "./extract.ts"
import { ACCOUNT_TIERS } from "../entities/data.ts"
import { policy, POLICY_TOPICS, type PolicyTopic, type Result, type World } from "./world.ts"

export type ErrorKind = "not_found" | "not_allowed"

export interface ArgSpec {
  readonly description: string
  readonly enum?: ReadonlyArray<string>
  /** an identifier, taken verbatim from a user turn; the label it prefers */
  readonly id?: IdLabel
  /** a value found in the user's words by vocabulary */
  readonly fromUser?: "tier" | "city" | "country"
  /** how to ask for it when it is required and missing */
  readonly ask?: ReadonlyArray<string>
  /** what a user says to give it, `{v}` the value */
  readonly give?: ReadonlyArray<string>
  /** a value read from the user's words by meaning ("stop sending me newsletters" → unsubscribe) */
  readonly derive?: (userText: string) => string
}

export interface ToolSpec {
  readonly name: string
  readonly description: string
  readonly group: string
  readonly args: Readonly<Record<string, ArgSpec>>
  readonly required: ReadonlyArray<string>
  /**
   * asks before acting unless the user plainly asked for it (it cancels, deletes, unsubscribes or
   * changes what the customer pays); a function when only some arguments are (unsubscribe, not subscribe)
   */
  readonly destructive?: boolean | ((args: Readonly<Record<string, string>>) => boolean)
  /** the errors it can return */
  readonly errors: ReadonlyArray<ErrorKind>
  /** a field whose value is one of `values`: an answer names the result's value and no other */
  readonly status?: { readonly field: string; readonly values: ReadonlyArray<string> }
  readonly result: (args: Readonly<Record<string, string>>, w: World) => Result
  readonly error: (kind: ErrorKind, args: Readonly<Record<string, string>>, w: World) => Result
}

const ORDER: ArgSpec = {
  description: "The customer's order number, exactly as the customer wrote it",
  id: "order",
  ask: [
    "Could you please share your order number so I can look into this for you?",
    "I'd be glad to help. What is the order number?",
    "To get started, may I have the order number, please?",
    "Sure. Which order is it? Please send me the order number."
  ],
  give: ["It's {v}.", "The order number is {v}.", "{v}", "Sure, it's {v}.", "Here you go: {v}", "Order {v}."]
}
const INVOICE: ArgSpec = {
  description: "The invoice number, exactly as the customer wrote it",
  id: "invoice",
  ask: ["Could you please share the invoice number?", "Which invoice is it? Please send me its number.", "May I have the invoice number, please?"],
  give: ["It's {v}.", "The invoice number is {v}.", "{v}", "Invoice {v}.", "Sure: {v}"]
}
const TIERS = ACCOUNT_TIERS.map((t) => t.toLowerCase())
const TIER: ArgSpec = {
  description: "The account type or plan",
  enum: TIERS,
  fromUser: "tier",
  ask: ["Which account type would you like?", "Could you tell me which plan you have in mind?", "Which account type is this about?"],
  give: ["The {v} one.", "{v}, please.", "I'd like the {v} plan.", "{v}."]
}

const notFound = (what: string, value: string | undefined): Result => ({ error: "not_found", message: `No ${what} with the number ${value ?? ""} was found.` })

const orderTool = (
  name: string,
  description: string,
  group: string,
  result: ToolSpec["result"],
  extra: Partial<Pick<ToolSpec, "destructive" | "status" | "errors">> & { readonly notAllowed?: ToolSpec["result"] } = {}
): ToolSpec => ({
  name,
  description,
  group,
  args: { order_number: ORDER },
  required: ["order_number"],
  errors: extra.errors ?? (extra.notAllowed ? ["not_found", "not_allowed"] : ["not_found"]),
  ...(extra.destructive ? { destructive: true } : {}),
  ...(extra.status ? { status: extra.status } : {}),
  result,
  error: (kind, a, w) => (kind === "not_allowed" && extra.notAllowed ? { error: "not_allowed", ...extra.notAllowed(a, w) } : notFound("order", a["order_number"]))
})

const ORDER_STATUSES = ["processing", "shipped", "in transit", "out for delivery"]
const REFUND_STATUSES = ["pending review", "approved", "being processed", "issued"]
const INVOICE_STATUSES = ["paid", "unpaid", "overdue"]
const CARRIERS = ["UPS", "FedEx", "USPS", "DHL"]

export const CATALOGUE: ReadonlyArray<ToolSpec> = [
  orderTool(
    "track_order",
    "Look up the shipping status and estimated delivery of an order",
    "order-status",
    (a, w) => {
      const status = w.pick(ORDER_STATUSES)
      return {
        order_number: a["order_number"]!,
        status,
        ...(status === "processing" ? {} : { carrier: w.pick(CARRIERS) }),
        estimated_delivery: w.date(1, 10)
      }
    },
    { status: { field: "status", values: ORDER_STATUSES } }
  ),
  orderTool(
    "cancel_order",
    "Cancel an order that has not shipped yet",
    "order-change",
    (a, w) => ({ order_number: a["order_number"]!, status: "cancelled", refund_amount: w.money(15, 400), refund_time: w.pick(["3-5 business days", "5-7 business days", "2-4 business days"]) }),
    { destructive: true, notAllowed: (a, w) => ({ order_number: a["order_number"]!, reason: "the order has already shipped", shipped_on: w.date(-4, -1) }) }
  ),
  orderTool(
    "change_order",
    "Open an order for changes (items, quantities, options)",
    "order-change",
    (a, w) => ({ order_number: a["order_number"]!, editable: true, editable_until: w.date(0, 2), edit_page: w.page(`/orders/${a["order_number"]!.replace(/^#/, "")}/edit`) }),
    { notAllowed: (a) => ({ order_number: a["order_number"]!, reason: "the order is already being packed" }) }
  ),
  {
    name: "start_order",
    description: "Start a new order for the customer and open a cart",
    group: "order-change",
    args: {},
    required: [],
    errors: [],
    result: (_, w) => {
      const cart = w.ref("C")
      return { cart_id: cart, cart_url: w.page(`/cart/${cart}`), status: "open" }
    },
    error: () => ({ error: "not_allowed" })
  },
  orderTool(
    "get_refund",
    "Request a refund for an order",
    "refund",
    (a, w) => ({ order_number: a["order_number"]!, refund_request: w.ref("R"), amount: w.statedAmount ?? w.money(15, 400), status: "submitted", expected_within: w.pick(["5-7 business days", "3-5 business days", "7-10 business days"]) }),
    { notAllowed: (a, w) => ({ order_number: a["order_number"]!, reason: "the return window for this order has ended", delivered_on: w.date(-90, -45) }) }
  ),
  orderTool(
    "track_refund",
    "Look up the status of a refund for an order",
    "refund",
    (a, w) => ({ order_number: a["order_number"]!, refund_status: w.pick(REFUND_STATUSES), amount: w.statedAmount ?? w.money(15, 400), expected_by: w.date(1, 10) }),
    { status: { field: "refund_status", values: REFUND_STATUSES } }
  ),
  {
    name: "get_invoice",
    description: "Retrieve a copy of an invoice as a PDF",
    group: "invoice",
    args: { invoice_number: INVOICE },
    required: ["invoice_number"],
    errors: ["not_found"],
    result: (a, w) => ({ invoice_number: a["invoice_number"]!, issued_on: w.date(-120, -1), total: w.money(20, 900), download_url: w.page(`/invoices/${encodeURIComponent(a["invoice_number"]!.replace(/^#/, ""))}.pdf`) }),
    error: (_, a) => notFound("invoice", a["invoice_number"])
  },
  {
    name: "check_invoice",
    description: "Look up the details and payment status of an invoice",
    group: "invoice",
    args: { invoice_number: INVOICE },
    required: ["invoice_number"],
    errors: ["not_found"],
    status: { field: "payment_status", values: INVOICE_STATUSES },
    result: (a, w) => {
      const status = w.pick(INVOICE_STATUSES)
      return { invoice_number: a["invoice_number"]!, payment_status: status, total: w.money(20, 900), ...(status === "paid" ? { paid_on: w.date(-60, -1) } : { due_date: status === "unpaid" ? w.date(1, 30) : w.date(-30, -1) }) }
    },
    error: (_, a) => notFound("invoice", a["invoice_number"])
  },
  orderTool(
    "change_shipping_address",
    "Change the delivery address of an order that has not shipped",
    "address",
    (a, w) => ({ order_number: a["order_number"]!, address_editable: true, change_before: w.date(0, 2), address_page: w.page(`/orders/${a["order_number"]!.replace(/^#/, "")}/address`) }),
    { notAllowed: (a, w) => ({ order_number: a["order_number"]!, reason: "the order has already shipped", shipped_on: w.date(-3, -1) }) }
  ),
  {
    name: "add_shipping_address",
    description: "Add a new shipping address to the customer's account",
    group: "address",
    args: {
      city: { description: "City of the new address, as the customer wrote it", fromUser: "city" },
      country: { description: "Country of the new address, as the customer wrote it", fromUser: "country" }
    },
    required: [],
    errors: [],
    result: (a, w) => ({ address_form: w.page("/account/addresses/new"), ...(a["city"] ? { city: a["city"] } : {}), ...(a["country"] ? { country: a["country"] } : {}), saved_addresses: w.int(1, 4) }),
    error: () => ({ error: "not_allowed" })
  },
  {
    name: "create_account",
    description: "Create a new customer account of a given type",
    group: "account",
    args: { account_type: TIER },
    required: ["account_type"],
    errors: [],
    result: (a, w) => ({ account_type: a["account_type"]!, signup_link: w.page(`/signup?plan=${a["account_type"]!}`), link_valid_for: w.pick(["24 hours", "48 hours"]) }),
    error: () => ({ error: "not_allowed" })
  },
  {
    name: "delete_account",
    description: "Close the customer's account (it can be restored during a grace period)",
    group: "account",
    args: { account_type: { ...TIER, ask: undefined, give: undefined } },
    required: [],
    destructive: true,
    errors: ["not_allowed"],
    result: (_, w) => ({ status: "scheduled for deletion", deletion_date: w.date(14, 30), restore_until: w.date(7, 13) }),
    error: (_, __, w) => ({ error: "not_allowed", reason: "the account has an order that has not been delivered yet", open_order: `#${w.int(10000000, 99999999)}` })
  },
  {
    name: "update_account",
    description: "Change details of the customer's account (name, e-mail, phone, address)",
    group: "account",
    args: { account_type: { ...TIER, ask: undefined, give: undefined } },
    required: [],
    errors: [],
    result: (_, w) => ({ editable_fields: ["name", "email", "phone", "address"], settings_page: w.page(w.pick(["/account/settings", "/account/profile", "/settings/account"])) }),
    error: () => ({ error: "not_allowed" })
  },
  {
    name: "switch_account",
    description: "Switch the customer's account to another account type or plan",
    group: "account",
    args: { account_type: TIER },
    required: ["account_type"],
    // it changes what the customer pays: asked before acting, like a cancellation
    destructive: true,
    errors: [],
    result: (a, w) => ({ new_plan: a["account_type"]!, effective_from: w.date(0, 31), price_change: w.pick(["none", `${w.money(2, 15)} more per month`, `${w.money(2, 10)} less per month`]) }),
    error: () => ({ error: "not_allowed" })
  },
  {
    name: "send_password_reset",
    description: "Send the customer a link to reset their password, PIN or access key by e-mail",
    group: "account",
    args: {},
    required: [],
    errors: [],
    result: (_, w) => ({ reset_link_sent: true, sent_to: "the e-mail address on the account", expires_in: w.pick(["30 minutes", "60 minutes", "2 hours", "24 hours"]) }),
    error: () => ({ error: "not_allowed" })
  },
  {
    name: "manage_newsletter",
    description: "Subscribe the customer to the newsletter or unsubscribe them",
    group: "account",
    args: {
      action: {
        description: "subscribe or unsubscribe",
        enum: ["subscribe", "unsubscribe"],
        derive: (text) => (/\b(unsubscri\w*|cancel\w*|stop\w*|opt(ing)?[ -]out|remove me|no longer|don'?t want|do not want|quit\w*|end my)\b/i.test(text) ? "unsubscribe" : "subscribe")
      }
    },
    required: ["action"],
    errors: [],
    destructive: (a) => a["action"] === "unsubscribe",
    status: { field: "subscription", values: ["active", "cancelled"] },
    result: (a, w): Result =>
      a["action"] === "unsubscribe"
        ? { subscription: "cancelled", last_issue_sent: w.date(-14, -1), preferences_page: w.page("/account/newsletter") }
        : { subscription: "active", frequency: w.pick(["weekly", "every two weeks", "monthly"]), preferences_page: w.page("/account/newsletter") },
    error: () => ({ error: "not_allowed" })
  },
  {
    name: "report_payment_issue",
    description: "Report a problem with a payment and open a case",
    group: "ticket",
    args: { order_number: { ...ORDER, ask: undefined, give: undefined } },
    required: [],
    errors: [],
    result: (a, w) => ({ case_id: w.ref("P"), ...(a["order_number"] ? { order_number: a["order_number"] } : {}), status: "open", reply_within: w.pick(["24 hours", "48 hours", "2 business days"]) }),
    error: () => ({ error: "not_allowed" })
  },
  {
    name: "transfer_to_human_agent",
    description: "Hand the conversation over to a human support agent",
    group: "contact",
    args: {},
    required: [],
    errors: [],
    result: (_, w) => ({ queued: true, position_in_queue: w.int(1, 9), estimated_wait: `${w.int(2, 20)} minutes` }),
    error: () => ({ error: "not_allowed" })
  },
  {
    name: "get_contact_info",
    description: "Look up how to reach customer service: phone, e-mail, hours and live chat",
    group: "contact",
    args: {},
    required: [],
    errors: [],
    result: (_, w) => ({ phone: w.company.phone, email: w.company.email, hours: w.company.hours, live_chat: w.page("/help/chat") }),
    error: () => ({ error: "not_allowed" })
  },
  {
    name: "create_ticket",
    description: "Record customer feedback or a complaint",
    group: "ticket",
    args: { category: { description: "What the ticket is about", enum: ["complaint", "review"] } },
    required: ["category"],
    errors: [],
    result: (a, w) => ({ ticket: w.ref("T"), category: a["category"]!, reply_within: w.pick(["24 hours", "2 business days", "3 business days"]) }),
    error: () => ({ error: "not_allowed" })
  },
  {
    name: "get_policy",
    description: "Look up a store policy: cancellation fees, refunds, payment methods, delivery options and times, registration",
    group: "policy",
    args: { topic: { description: "The policy to look up", enum: POLICY_TOPICS } },
    required: ["topic"],
    errors: [],
    result: (a, w) => policy(w.company, w.currency, a["topic"] as PolicyTopic),
    error: () => ({ error: "not_allowed" })
  }
]

export const byName: ReadonlyMap<string, ToolSpec> = new Map(CATALOGUE.map((t) => [t.name, t]))

/** The tool in the `tools` format that the chat template renders. */
export const toolSchema = (t: ToolSpec) => ({
  type: "function",
  function: {
    name: t.name,
    description: t.description,
    parameters: {
      type: "object",
      properties: Object.fromEntries(
        Object.entries(t.args).map(([k, a]) => [k, { type: "string", description: a.description, ...(a.enum ? { enum: a.enum } : {}) }])
      ),
      required: t.required
    }
  }
})

/** Default intent → tool mapping (the params file may override any of it). */
export const DEFAULT_TOOLS: Readonly<Record<string, { readonly tool: string; readonly args?: Readonly<Record<string, string>> } | null>> = {
  track_order: { tool: "track_order" },
  cancel_order: { tool: "cancel_order" },
  change_order: { tool: "change_order" },
  place_order: { tool: "start_order" },
  get_refund: { tool: "get_refund" },
  track_refund: { tool: "track_refund" },
  get_invoice: { tool: "get_invoice" },
  check_invoice: { tool: "check_invoice" },
  change_shipping_address: { tool: "change_shipping_address" },
  set_up_shipping_address: { tool: "add_shipping_address" },
  create_account: { tool: "create_account" },
  delete_account: { tool: "delete_account" },
  edit_account: { tool: "update_account" },
  switch_account: { tool: "switch_account" },
  recover_password: { tool: "send_password_reset" },
  registration_problems: { tool: "get_policy", args: { topic: "registration" } },
  newsletter_subscription: { tool: "manage_newsletter" },
  payment_issue: { tool: "report_payment_issue" },
  contact_human_agent: { tool: "transfer_to_human_agent" },
  contact_customer_service: { tool: "get_contact_info" },
  complaint: { tool: "create_ticket", args: { category: "complaint" } },
  review: { tool: "create_ticket", args: { category: "review" } },
  check_cancellation_fee: { tool: "get_policy", args: { topic: "cancellation_fee" } },
  check_refund_policy: { tool: "get_policy", args: { topic: "refund" } },
  check_payment_methods: { tool: "get_policy", args: { topic: "payment_methods" } },
  delivery_options: { tool: "get_policy", args: { topic: "delivery_options" } },
  delivery_period: { tool: "get_policy", args: { topic: "delivery_period" } }
}
