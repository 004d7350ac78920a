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

/** Which limit a plan misses, and by how many bytes. */
export interface Shortfall {
  readonly limit: "disk" | "budget"
  readonly bytes: number
}

/**
 * What a plan lacks, or undefined when it fits. A plan that writes nothing new
 * (only cached stages and restores by link) always fits, even when the cache
 * already holds more than the budget: it makes nothing worse.
 */
export const shortfall = (r: Pick<SimResult, "requiredBytes">, l: Limits): Shortfall | undefined => {
  if (r.requiredBytes <= 0) return undefined
  const overDisk = r.requiredBytes - l.freeBytes
  const overBudget = l.budgetBytes === undefined ? -Infinity : l.usedBytes + r.requiredBytes - l.budgetBytes
  if (overDisk <= 0 && overBudget <= 0) return undefined
  return overBudget >= overDisk ? { limit: "budget", bytes: overBudget } : { limit: "disk", bytes: overDisk }
}

export const fitsIn = (r: Pick<SimResult, "requiredBytes">, l: Limits): boolean => shortfall(r, l) === undefined

/** New bytes the limits allow: the free space, and the budget less what is used. */
export const allowance = (l: Limits): number => Math.min(l.freeBytes, l.budgetBytes === undefined ? Infinity : l.budgetBytes - l.usedBytes)

/** "needs 102.8 MB on disk, 58.3 MB free: 44.5 MB short", or the budget's version of it. */
export const describeLimits = (r: Pick<SimResult, "requiredBytes">, l: Limits): string => {
  const s = shortfall(r, l)
  const needs = `needs ${formatBytes(r.requiredBytes)}`
  if (s === undefined) return `${needs}; it fits`
  if (s.limit === "disk") return `${needs} on disk, ${formatBytes(l.freeBytes)} free: ${formatBytes(s.bytes)} short`
  const used = l.usedBytes > l.budgetBytes! ? `the cache already holds ${formatBytes(l.usedBytes)}, over` : `with the ${formatBytes(l.usedBytes)} the cache holds that is ${formatBytes(l.usedBytes + r.requiredBytes)} against`
  return `${needs}; ${used} a budget of ${formatBytes(l.budgetBytes!)}: ${formatBytes(s.bytes)} over`
}

/** Every subset of `items`, in order, smallest first (items are few: GGUF types). */
export const subsets = <A>(items: ReadonlyArray<A>): Array<Array<A>> => {
  const out: Array<Array<A>> = []
  const n = Math.min(items.length, 12)
  for (let mask = 1; mask < 1 << n; mask++) out.push(items.filter((_, i) => i < n && (mask & (1 << i)) !== 0))
  return out.sort((a, b) => a.length - b.length)
}
