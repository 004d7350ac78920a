/**
 * split: seeded train/validation split, stratified by intent. Near-duplicate
 * instructions (same text after lower-casing and stripping punctuation) are
 * grouped so a group never straddles the split.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import { Stage, StageError } from "../engine/index.ts"
import { readJsonl, writeJsonl } from "./lib/jsonl.ts"
import { hash32, Rng } from "./lib/rng.ts"
import { withDefault } from "./lib/schema.ts"
import { toolcalls, type Conversation } from "./toolcalls.ts"

export const SplitParams = Schema.Struct({
  // above 0: eval and the trainer's validation need a validation set
  valFraction: withDefault(Schema.Finite.check(Schema.isGreaterThan(0), Schema.isLessThanOrEqualTo(0.9)), 0.1),
  seed: withDefault(Schema.Int, 42)
})

const norm = (s: string) => s.toLowerCase().replace(/[^\p{L}\p{N}\s]/gu, "").replace(/\s+/g, " ").trim()

export const split = Stage.make({
  name: "split",
  description: "stratified, grouped train/val split",
  module: import.meta.url,
  params: { split: SplitParams },
  inputs: { conversations: toolcalls.out.conversations },
  outputs: { train: Stage.file("train.jsonl"), val: Stage.file("val.jsonl"), stats: Stage.file("stats.json", { metrics: true }) },
  estimate: ({ inputSizes }) => ({
    bytes: { train: Math.round((inputSizes["conversations"] ?? 0) * 0.9), val: Math.round((inputSizes["conversations"] ?? 0) * 0.1), stats: 4000 },
    seconds: 1
  }),
  run: (ctx) =>
    Effect.gen(function* () {
      const { valFraction, seed } = ctx.params.split
      const all = readJsonl<Conversation>(ctx.inputs.conversations)
      const byIntent = new Map<string, Map<string, Array<Conversation>>>()
      for (const c of all) {
        const user = c.messages.find((m) => m.role === "user")?.content ?? ""
        const groups = byIntent.get(c.intent) ?? new Map<string, Array<Conversation>>()
        byIntent.set(c.intent, groups)
        const k = norm(user)
        const g = groups.get(k)
        if (g) g.push(c)
        else groups.set(k, [c])
      }
      const train: Array<Conversation> = []
      const val: Array<Conversation> = []
      const perIntent: Record<string, { train: number; val: number }> = {}
      for (const intent of [...byIntent.keys()].sort()) {
        const groups = [...byIntent.get(intent)!.entries()].sort(([a], [b]) => (a < b ? -1 : 1))
        new Rng(seed ^ hash32(intent)).shuffle(groups)
        const size = groups.reduce((a, [, g]) => a + g.length, 0)
        const wantVal = Math.round(size * valFraction)
        let nVal = 0
        const stats = { train: 0, val: 0 }
        for (const [, g] of groups) {
          if (nVal < wantVal) {
            val.push(...g)
            nVal += g.length
            stats.val += g.length
          } else {
            train.push(...g)
            stats.train += g.length
          }
        }
        perIntent[intent] = stats
      }
      if (val.length === 0 || train.length === 0)
        return yield* new StageError({
          message: `split.valFraction ${valFraction} of ${all.length} conversations leaves ${train.length} to train on and ${val.length} to validate with; both need at least one`
        })
      writeJsonl(ctx.outputs.train, train)
      writeJsonl(ctx.outputs.val, val)
      fs.writeFileSync(ctx.outputs.stats, JSON.stringify({ train: train.length, val: val.length, perIntent }, null, 2) + "\n")
      yield* ctx.log(`train ${train.length}, val ${val.length}, ${Object.keys(perIntent).length} intents`)
    })
})
