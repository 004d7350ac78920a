/**
 * The disk check. A plan is simulated in run order: each stage's outputs (and
 * its scratch space, while it runs) appear as it runs; a temporary output
 * disappears once the last stage in the plan that reads it has finished. The
 * peak of that curve, added to what the workspace already holds, must fit in
 * the free space of the filesystem and in the configured budget.
 */
import { formatBytes } from "./Units.ts"

export interface SimOutput {
  /** `stage.output` */
  readonly id: string
  readonly bytes: number
  readonly temporary: boolean
  /** stages in the plan that read it */
  readonly consumers: ReadonlyArray<string>
  /** already on disk before the run (counted in the workspace's used bytes) */
  readonly existing: boolean
}

export interface SimStage {
  readonly name: string
  /** bytes this stage will write (0 when cached or restored by link) */
  readonly newBytes: number
  readonly scratchBytes: number
  readonly outputs: ReadonlyArray<SimOutput>
}

export interface SimResult {
  /** highest number of bytes the plan adds on top of what is there now */
  readonly requiredBytes: number
  readonly peakAtStage: string | null
  /** the first stage during which the plan holds more than `limitBytes` */
  readonly firstOverAt: string | null
}

export const simulate = (stages: ReadonlyArray<SimStage>, limitBytes = Infinity): SimResult => {
  let firstOver: string | null = null
  let current = 0
  let peak = 0
  let peakAt: string | null = null
  const live = new Map<string, { bytes: number; waiting: Set<string> }>()
  const order = new Set(stages.map((s) => s.name))
  const track = (o: SimOutput) => {
    const waiting = new Set(o.consumers.filter((c) => order.has(c)))
    if (o.temporary && waiting.size > 0) live.set(o.id, { bytes: o.bytes, waiting })
  }
  for (const s of stages) for (const o of s.outputs) if (o.existing) track(o)
  for (const s of stages) {
    const during = current + s.scratchBytes + s.newBytes
    if (firstOver === null && during > limitBytes) firstOver = s.name
    if (peakAt === null || during > peak) {
      peak = during
      peakAt = s.name
    }
    current += s.newBytes
    for (const o of s.outputs) if (!o.existing) track(o)
    for (const [id, t] of live) {
      t.waiting.delete(s.name)
      if (t.waiting.size === 0) {
        current -= t.bytes
        live.delete(id)
      }
    }
  }
  return { requiredBytes: Math.max(0, peak), peakAtStage: peakAt, firstOverAt: firstOver }
}

export interface Limits {
  readonly usedBytes: number
  readonly freeBytes: number
  readonly budgetBytes: number | undefined
}

/** How many bytes over the limits a result is (≤ 0 when it fits). */
export const excess = (r: SimResult, l: Limits): number => {
  const overFree = r.requiredBytes - l.freeBytes
  const overBudget = l.budgetBytes === undefined ? -Infinity : l.usedBytes + r.requiredBytes - l.budgetBytes
  return Math.max(overFree, overBudget)
}

export const fitsIn = (r: SimResult, l: Limits): boolean => excess(r, l) <= 0

/** New bytes the limits allow: the free space, and the budget less what is used. */
export const allowance = (l: Limits): number => Math.min(l.freeBytes, l.budgetBytes === undefined ? Infinity : l.budgetBytes - l.usedBytes)

export const describeLimits = (r: Pick<SimResult, "requiredBytes">, l: Limits): string => {
  const parts = [`needs ${formatBytes(r.requiredBytes)} more`]
  if (l.budgetBytes !== undefined)
    parts.push(`${formatBytes(l.usedBytes + r.requiredBytes)} in all against a budget of ${formatBytes(l.budgetBytes)} (${formatBytes(l.usedBytes)} used)`)
  parts.push(`${formatBytes(l.freeBytes)} free on disk`)
  return parts.join("; ")
}

/** Every subset of `items`, in order, smallest first (items are few: GGUF types). */
export const subsets = <A>(items: ReadonlyArray<A>): Array<Array<A>> => {
  const out: Array<Array<A>> = []
  const n = Math.min(items.length, 12)
  for (let mask = 1; mask < 1 << n; mask++) out.push(items.filter((_, i) => i < n && (mask & (1 << i)) !== 0))
  return out.sort((a, b) => a.length - b.length)
}
