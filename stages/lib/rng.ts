/** A small seeded PRNG (SplitMix32 → xorshift128+ style mixing), deterministic across machines. */
export class Rng {
  private s: number
  private spare: number | undefined

  constructor(seed: number) {
    this.s = (seed >>> 0) ^ 0x9e3779b9
  }

  /** uniform uint32 (SplitMix32) */
  nextU32(): number {
    this.s = (this.s + 0x9e3779b9) >>> 0
    let z = this.s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }

  /** uniform in [0, 1) */
  next(): number {
    return this.nextU32() / 4294967296
  }

  /** Shuffles `xs` in place (Fisher-Yates, from the end) and returns it. */
  shuffle<A>(xs: Array<A>): Array<A> {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.nextU32() % (i + 1)
      ;[xs[i], xs[j]] = [xs[j]!, xs[i]!]
    }
    return xs
  }

  /** standard normal (Box-Muller) */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare
      this.spare = undefined
      return v
    }
    const u = Math.max(this.next(), 1e-12)
    const v = this.next()
    const r = Math.sqrt(-2 * Math.log(u))
    this.spare = r * Math.sin(2 * Math.PI * v)
    return r * Math.cos(2 * Math.PI * v)
  }
}

/** A stable 32-bit hash of a string (FNV-1a), for seeding per row. */
export const hash32 = (s: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0
  return h
}
