/**
 * The tool catalogue: JSON-schema functions in the OpenAI/Qwen `tools` format.
 *
 * Arguments are of two sorts. Identifying arguments (an order, invoice or
 * tracking number, an account type) are taken from the row's entities and used
 * only when their value appears verbatim in the user's turn; when a required
 * one is missing the assistant asks for it instead of calling. Enumerated
 * arguments (a policy topic, a ticket category) come from the intent's mapping
 * in the params (`toolcalls.tools`), never from the row.
 */
import type { Rng } from "../lib/rng.ts"

export interface ArgSpec {
  readonly description: string
  readonly enum?: ReadonlyArray<string>
  /** entity kinds the value may come from, verbatim from the user's turn */
  readonly from?: ReadonlyArray<string>
  /** how to ask for it when it is required and missing */
  readonly ask?: ReadonlyArray<string>
}

export interface ToolSpec {
  readonly name: string
  readonly description: string
  readonly args: Readonly<Record<string, ArgSpec>>
  readonly required: ReadonlyArray<string>
  /** a plausible, deterministic result object */
  readonly result: (args: Readonly<Record<string, string>>, rng: Rng) => Record<string, unknown>
}

const pick = <A>(rng: Rng, xs: ReadonlyArray<A>): A => xs[rng.nextU32() % xs.length]!
const day = (rng: Rng, from = 1) => {
  const d = new Date(Date.UTC(2026, 0, 1) + (from + (rng.nextU32() % 300)) * 86_400_000)
  return d.toISOString().slice(0, 10)
}

const ORDER: ArgSpec = {
  description: "The customer's order number, exactly as the customer wrote it",
  from: ["Order Number"],
  ask: [
    "Could you please share your order number so I can look into this for you?",
    "I'd be glad to help. What is the order number?",
    "To get started, may I have the order number, please?"
  ]
}
const INVOICE: ArgSpec = {
  description: "The invoice number, exactly as the customer wrote it",
  from: ["Invoice Number"],
  ask: ["Could you please share the invoice number?", "Which invoice is it? Please send me its number.", "May I have the invoice number, please?"]
}
const ACCOUNT_TYPE: ArgSpec = {
  description: "The account type or plan, as the customer named it",
  from: ["Account Type", "Account Category"],
  ask: ["Which account type would you like?", "Could you tell me which plan you have in mind?", "Which account type is this about?"]
}

export const CATALOGUE: ReadonlyArray<ToolSpec> = [
  {
    name: "track_order",
    description: "Look up the shipping status and estimated delivery of an order",
    args: { order_number: ORDER },
    required: ["order_number"],
    result: (a, rng) => ({ order_number: a["order_number"], status: pick(rng, ["processing", "shipped", "out for delivery", "in transit"]), estimated_delivery: day(rng) })
  },
  {
    name: "cancel_order",
    description: "Cancel an order that has not shipped yet",
    args: { order_number: ORDER },
    required: ["order_number"],
    result: (a, rng) => ({ order_number: a["order_number"], cancellable: rng.next() < 0.8, fee: pick(rng, ["none", "5.00 USD", "10.00 USD"]) })
  },
  {
    name: "change_order",
    description: "Open an order for changes (items, quantities, options)",
    args: { order_number: ORDER },
    required: ["order_number"],
    result: (a, rng) => ({ order_number: a["order_number"], editable: rng.next() < 0.85, editable_until: day(rng) })
  },
  {
    name: "start_order",
    description: "Start a new order for the customer",
    args: {},
    required: [],
    result: (_, rng) => ({ cart_id: `C-${100000 + (rng.nextU32() % 900000)}`, status: "open" })
  },
  {
    name: "get_refund",
    description: "Request a refund for an order",
    args: { order_number: ORDER },
    required: ["order_number"],
    result: (a, rng) => ({ order_number: a["order_number"], refund_request: `R-${100000 + (rng.nextU32() % 900000)}`, status: "submitted" })
  },
  {
    name: "track_refund",
    description: "Look up the status of a refund for an order",
    args: { order_number: ORDER },
    required: ["order_number"],
    result: (a, rng) => ({ order_number: a["order_number"], status: pick(rng, ["pending review", "approved", "processing", "issued"]), expected_by: day(rng) })
  },
  {
    name: "get_invoice",
    description: "Retrieve a copy of an invoice",
    args: { invoice_number: INVOICE },
    required: ["invoice_number"],
    result: (a) => ({ invoice_number: a["invoice_number"], available: true, format: "PDF" })
  },
  {
    name: "check_invoice",
    description: "Look up the details and payment status of an invoice",
    args: { invoice_number: INVOICE },
    required: ["invoice_number"],
    result: (a, rng) => ({ invoice_number: a["invoice_number"], status: pick(rng, ["paid", "due", "overdue"]), issued: day(rng) })
  },
  {
    name: "change_shipping_address",
    description: "Change the delivery address of an order",
    args: { order_number: ORDER },
    required: ["order_number"],
    result: (a, rng) => ({ order_number: a["order_number"], address_editable: rng.next() < 0.8 })
  },
  {
    name: "add_shipping_address",
    description: "Add a new shipping address to the customer's account",
    args: {
      city: { description: "City of the new address, as the customer wrote it", from: ["Delivery City"] },
      country: { description: "Country of the new address, as the customer wrote it", from: ["Delivery Country"] }
    },
    required: [],
    result: () => ({ address_form: "opened" })
  },
  {
    name: "create_account",
    description: "Create a new customer account of a given type",
    args: { account_type: ACCOUNT_TYPE },
    required: ["account_type"],
    result: (a) => ({ account_type: a["account_type"], signup_link_sent: true })
  },
  {
    name: "delete_account",
    description: "Start closing the customer's account",
    args: { account_type: { ...ACCOUNT_TYPE, ask: undefined } },
    required: [],
    result: () => ({ confirmation_required: true })
  },
  {
    name: "update_account",
    description: "Change details of the customer's account",
    args: { account_type: { ...ACCOUNT_TYPE, ask: undefined } },
    required: [],
    result: () => ({ editable_fields: ["name", "email", "phone", "address"] })
  },
  {
    name: "switch_account",
    description: "Switch the customer's account to another account type or plan",
    args: { account_type: ACCOUNT_TYPE },
    required: ["account_type"],
    result: (a, rng) => ({ account_type: a["account_type"], effective: day(rng) })
  },
  {
    name: "send_password_reset",
    description: "Send the customer a password reset link",
    args: {},
    required: [],
    result: () => ({ reset_link_sent: true, expires_in_minutes: 30 })
  },
  {
    name: "subscribe_newsletter",
    description: "Manage the customer's newsletter subscription",
    args: {},
    required: [],
    result: () => ({ subscription_page: "opened" })
  },
  {
    name: "report_payment_issue",
    description: "Report a problem with a payment",
    args: { order_number: { ...ORDER, ask: undefined } },
    required: [],
    result: (_, rng) => ({ ticket: `P-${100000 + (rng.nextU32() % 900000)}`, status: "open" })
  },
  {
    name: "transfer_to_human_agent",
    description: "Hand the conversation over to a human support agent",
    args: {},
    required: [],
    result: (_, rng) => ({ queued: true, estimated_wait_minutes: 1 + (rng.nextU32() % 15) })
  },
  {
    name: "create_ticket",
    description: "Record customer feedback or a complaint",
    args: { category: { description: "What the ticket is about", enum: ["complaint", "review"] } },
    required: ["category"],
    result: (a, rng) => ({ ticket: `T-${100000 + (rng.nextU32() % 900000)}`, category: a["category"] })
  },
  {
    name: "get_policy",
    description: "Look up a store policy or help topic",
    args: {
      topic: {
        description: "The policy or help topic",
        enum: ["cancellation_fee", "refund", "payment_methods", "delivery_options", "delivery_period", "registration", "customer_service_contact"]
      }
    },
    required: ["topic"],
    result: (a) => ({ topic: a["topic"], found: true })
  }
]

export const byName = new Map(CATALOGUE.map((t) => [t.name, t]))

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
  newsletter_subscription: { tool: "subscribe_newsletter" },
  payment_issue: { tool: "report_payment_issue" },
  contact_human_agent: { tool: "transfer_to_human_agent" },
  contact_customer_service: { tool: "get_policy", args: { topic: "customer_service_contact" } },
  complaint: { tool: "create_ticket", args: { category: "complaint" } },
  review: { tool: "create_ticket", args: { category: "review" } },
  check_cancellation_fee: { tool: "get_policy", args: { topic: "cancellation_fee" } },
  check_refund_policy: { tool: "get_policy", args: { topic: "refund" } },
  check_payment_methods: { tool: "get_policy", args: { topic: "payment_methods" } },
  delivery_options: { tool: "get_policy", args: { topic: "delivery_options" } },
  delivery_period: { tool: "get_policy", args: { topic: "delivery_period" } }
}
