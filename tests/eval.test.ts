/** eval's sample and summary: drawn across intents, seeded; losses weighted by tokens; gates. */
import { describe, expect, it } from "vitest"
import { missedGates, summarize } from "../stages/evaluate.ts"
import { stratifiedSample } from "../stages/evaluate/sample.ts"
import { addTally, emptyTally, type EvalConversation, metricsOf, parseOutput, referenceKind, rougeL, scoreTurn } from "../stages/evaluate/generation.ts"

describe("the eval sample", () => {
  // val.bin is written in intent order: 27 intents of 30 examples, then 5 of an intent that is rare
  const intents = [...Array.from({ length: 27 }, (_, k) => Array.from({ length: 30 }, () => `intent_${String(k).padStart(2, "0")}`)).flat(), ...Array(5).fill("rare")]

  it("covers every intent before taking a second example of any, whatever the file's order", () => {
    const s = stratifiedSample(intents, 28, 42)
    expect(new Set(s.map((i) => intents[i])).size).toBe(28)
    const t = stratifiedSample(intents, 60, 42)
    const counts = new Map<string, number>()
    for (const i of t) counts.set(intents[i]!, (counts.get(intents[i]!) ?? 0) + 1)
    expect(Math.max(...counts.values()) - Math.min(...counts.values())).toBeLessThanOrEqual(1)
  })

  it("is seeded: the same seed, the same sample; another seed, another; never more than there are", () => {
    expect(stratifiedSample(intents, 40, 1)).toEqual(stratifiedSample(intents, 40, 1))
    expect(stratifiedSample(intents, 40, 1)).not.toEqual(stratifiedSample(intents, 40, 2))
    expect(stratifiedSample(intents.slice(0, 10), 64, 1)).toEqual(Array.from({ length: 10 }, (_, i) => i))
    const s = stratifiedSample(intents, 100, 3)
    expect(new Set(s).size).toBe(100)
    expect([...s].sort((a, b) => a - b)).toEqual(s)
  })
})

describe("the eval summary", () => {
  it("weights losses by tokens, overall and per intent, and reports perplexity and the base", () => {
    const { metrics, report } = summarize(
      [{ line: 2, intent: "a" }, { line: 3, intent: "a" }, { line: 9, intent: "b" }],
      { type: "result", generated: [], adapter: [{ lossSum: 10, tokens: 10 }, { lossSum: 30, tokens: 10 }, { lossSum: 4, tokens: 20 }], base: [{ lossSum: 50, tokens: 10 }, { lossSum: 50, tokens: 10 }, { lossSum: 80, tokens: 20 }] }
    )
    expect(metrics).toEqual({ samples: 3, intents: 2, valLoss: 1.1, valPerplexity: Math.round(Math.exp(1.1) * 1e4) / 1e4, baseValLoss: 4.5, baseValPerplexity: Math.round(Math.exp(4.5) * 1e4) / 1e4 })
    expect(report).toContain("| a | 2 | 2.0000 | 7.39 | 5.0000 | -3.0000 |")
    expect(report).toContain("| b | 1 | 0.2000 | 1.22 | 4.0000 | -3.8000 |")
  })

  it("gates: losses and perplexities at most, the others at least", () => {
    expect(missedGates({ valLoss: 2, valPerplexity: 7.4, samples: 10 }, { valLoss: 2.5, valPerplexity: 5, samples: 20 })).toEqual(["valPerplexity 7.4000 > 5", "samples 10.0000 < 20"])
  })
})

describe("scoring generated turns", () => {
  const tools: EvalConversation["tools"] = [
    { function: { name: "cancel_order", parameters: { properties: { order_number: {} }, required: ["order_number"] } } },
    { function: { name: "create_ticket", parameters: { properties: { category: { enum: ["complaint", "review"] } }, required: ["category"] } } }
  ]
  const conv: EvalConversation = {
    line: 7,
    intent: "cancel_order",
    tools,
    messages: [
      { role: "system", content: "S" },
      { role: "user", content: "cancel my order please" },
      { role: "assistant", content: "Which order is it? Please send me the order number." },
      { role: "user", content: "It's #12345." },
      { role: "assistant", content: "", tool_calls: [{ type: "function", function: { name: "cancel_order", arguments: { order_number: "#12345" } } }] },
      { role: "tool", content: '{"order_number":"#12345","status":"cancelled","refund_amount":"$84.79"}' },
      { role: "assistant", content: "Done: order #12345 is cancelled, and $84.79 will be refunded." }
    ]
  }
  const call = (args: object, name = "cancel_order") => `<tool_call>\n${JSON.stringify({ name, arguments: args })}\n</tool_call><|im_end|>`

  it("reads outputs as calls, questions or answers, and the data's turns the same way", () => {
    expect(parseOutput(call({ order_number: "#1" })).kind).toBe("call")
    expect(parseOutput("Which order is it?<|im_end|>\nrubbish").kind).toBe("ask")
    expect(parseOutput("It is cancelled.").kind).toBe("answer")
    expect(parseOutput("It is cancelled. Is there anything else I can help you with?").kind).toBe("answer") // a closing courtesy, not a question
    expect(parseOutput("Sure. Which order is it? Please send me the order number.").kind).toBe("ask")
    expect(parseOutput("<tool_call>\n{broken\n</tool_call>").badBlocks).toBe(1)
    expect([2, 4, 6].map((i) => referenceKind(conv.messages, i))).toEqual(["ask", "call", "answer"])
  })

  it("credits the right call, and counts a wrong argument, an invented one and a schema break", () => {
    const right = metricsOf(scoreTurn(conv, 4, call({ order_number: "#12345" })))
    expect(right).toMatchObject({ decisionAccuracy: 1, toolNameAccuracy: 1, argExactMatch: 1, argAccuracy: 1, jsonValidity: 1, schemaValidity: 1, argNotInUserRate: 0 })
    const invented = metricsOf(scoreTurn(conv, 4, call({ order_number: "#99999" })))
    expect(invented).toMatchObject({ decisionAccuracy: 1, toolNameAccuracy: 1, argExactMatch: 0, argAccuracy: 0, argNotInUserRate: 1 })
    const wrongTool = metricsOf(scoreTurn(conv, 4, call({ category: "refund" }, "create_ticket")))
    expect(wrongTool).toMatchObject({ toolNameAccuracy: 0, schemaValidity: 0 })
    const asked = metricsOf(scoreTurn(conv, 4, "Which order?"))
    expect(asked).toMatchObject({ decisionAccuracy: 0, clarificationPrecision: 0 })
  })

  it("measures clarifications, answers that state the result, leaks and ROUGE-L", () => {
    const ask = scoreTurn(conv, 2, "Which order is it? Please send me the order number.")
    expect(metricsOf(ask)).toMatchObject({ decisionAccuracy: 1, clarificationPrecision: 1, clarificationRecall: 1, rougeL: 1 })
    const noAsk = metricsOf(scoreTurn(conv, 2, call({ order_number: "#12345" })))
    expect(noAsk).toMatchObject({ decisionAccuracy: 0, clarificationRecall: 0, argNotInUserRate: 1 })
    expect(metricsOf(scoreTurn(conv, 6, "Your refund of $84.79 is on its way."))).toMatchObject({ statesResultRate: 1 })
    expect(metricsOf(scoreTurn(conv, 6, "Order #12345 is done."))).toMatchObject({ statesResultRate: 0 }) // the id is an argument, not a result
    expect(metricsOf(scoreTurn(conv, 6, "Done, {{Refund Amount}} refunded."))).toMatchObject({ leakRate: 1 })
    expect(rougeL("the cat sat on the mat", "the cat sat")).toBeCloseTo((2 * 0.5 * 1) / 1.5, 6)
    expect(rougeL("", "x")).toBe(0)
    const all = [2, 4, 6].map((i) => scoreTurn(conv, i, "x")).reduce(addTally, emptyTally())
    expect(all.turns).toBe(3)
  })
})
