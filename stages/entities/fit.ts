/**
 * Fitting a value to the words around its placeholder. The dataset writes its
 * placeholders into sentences that only read right for some values:
 *
 *   "during {{Customer Support Hours}}"      → "during every day, 7:00 AM - …"
 *   "a refund of {{Refund Amount}} dollars"  → "a refund of $2,616.00 dollars"
 *   "the Live Chat on our {{Website URL}}"   → "on our https://www.…"
 *
 * `fit` returns the piece to write (which always contains the value verbatim,
 * so `entities[kind]` is still found wherever the placeholder was) and how
 * many characters of the following text it replaces (a currency word the
 * symbol already says).
 */

export interface Fitted {
  readonly piece: string
  /** characters of the text after the placeholder that the piece stands for */
  readonly skip: number
}

/** "during" or "within" right before hours: the sentence wants a noun, the value is a list of days and times */
const DURING_BEFORE = /\b(during|within)\s+$/i
/** "our" (after "on", "visit", "via", …) right before a bare URL: the sentence wants a noun */
const OUR_BEFORE = /\b(on|at|visit|via|through|from|check|to)\s+our\s+$/i
/** a currency word after an amount that already carries its symbol */
const CURRENCY_AFTER = /^\s*(us\s+)?(d+o+l+[aeo]*r+s?|bucks|euros?|pounds(\s+sterling)?|usd|eur|gbp)\b/i

export const fit = (family: string, piece: string, before: string, after: string): Fitted => {
  // "during our business hours (every day, 7:00 AM - 8:00 PM MT)"
  if (family === "hours" && DURING_BEFORE.test(before)) return { piece: `our business hours (${piece})`, skip: 0 }
  if (family === "url" && OUR_BEFORE.test(before)) return { piece: `website at ${piece}`, skip: 0 }
  if (family === "money" && (/^[$€£]/.test(piece) || /[$€£]$/.test(before))) {
    const m = CURRENCY_AFTER.exec(after)
    if (m) return { piece, skip: m[0].length }
  }
  return { piece, skip: 0 }
}
