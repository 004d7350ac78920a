/** eval's sample and summary: drawn across intents, seeded; losses weighted by tokens; gates. */
import { describe, expect, it } from "vitest"
import { missedGates, summarize } from "../stages/evaluate.ts"
import { stratifiedSample } from "../stages/evaluate/sample.ts"

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
      { type: "result", adapter: [{ lossSum: 10, tokens: 10 }, { lossSum: 30, tokens: 10 }, { lossSum: 4, tokens: 20 }], base: [{ lossSum: 50, tokens: 10 }, { lossSum: 50, tokens: 10 }, { lossSum: 80, tokens: 20 }] }
    )
    expect(metrics).toEqual({ samples: 3, intents: 2, valLoss: 1.1, valPerplexity: Math.round(Math.exp(1.1) * 1e4) / 1e4, baseValLoss: 4.5, baseValPerplexity: Math.round(Math.exp(4.5) * 1e4) / 1e4 })
    expect(report).toContain("| a | 2 | 2.0000 | 7.39 | 5.0000 | -3.0000 |")
    expect(report).toContain("| b | 1 | 0.2000 | 1.22 | 4.0000 | -3.8000 |")
  })

  it("gates: losses and perplexities at most, the others at least", () => {
    expect(missedGates({ valLoss: 2, valPerplexity: 7.4, samples: 10 }, { valLoss: 2.5, valPerplexity: 5, samples: 20 })).toEqual(["valPerplexity 7.4000 > 5", "samples 10.0000 < 20"])
  })
})
