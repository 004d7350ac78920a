/**
 * Which validation examples eval measures: a seeded sample drawn across intents, not the
 * first N lines (val.bin is written in intent order, so the first 16 covered 4 of 27 intents).
 * Examples are shuffled within each intent, then taken round-robin over the intents (in a
 * shuffled order) until `n` are chosen, so every intent is represented as evenly as its size
 * allows. Returns indices into the examples, ascending.
 */
import { hash32, Rng } from "../lib/rng.ts"

export const stratifiedSample = (intents: ReadonlyArray<string>, n: number, seed: number): Array<number> => {
  const by = new Map<string, Array<number>>()
  intents.forEach((intent, i) => {
    const list = by.get(intent)
    if (list) list.push(i)
    else by.set(intent, [i])
  })
  const names = new Rng(seed).shuffle([...by.keys()].sort())
  const queues = names.map((name) => new Rng(seed ^ hash32(name)).shuffle(by.get(name)!))
  const out: Array<number> = []
  for (let round = 0; out.length < Math.min(n, intents.length); round++)
    for (const q of queues) {
      if (out.length >= n) break
      if (round < q.length) out.push(q[round]!)
    }
  return out.sort((a, b) => a - b)
}
