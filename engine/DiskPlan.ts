/**
 * The disk check of a plan: its stages fed to the simulation of
 * DiskBudget.ts (what each writes, what is temporary and when it goes), the
 * peak against the free disk and the budget, and, when it does not fit, the
 * computed ways to fit: subsets of a stage's variants, outputs made
 * temporary, what gc would free, a bigger budget.
 */
import * as Disk from "./DiskBudget.ts"
import type { Action } from "./Decide.ts"
import { formatBytes } from "./Units.ts"
import type { Workspace } from "./Workspace.ts"

export interface DiskReport {
  readonly requiredBytes: number
  readonly peakBytes: number
  readonly peakAtStage: string | null
  readonly usedBytes: number
  readonly freeBytes: number
  readonly budgetBytes: number | null
  readonly ok: boolean
  readonly fits: ReadonlyArray<string>
}

/** What the disk check needs of a planned stage. */
export interface DiskStage {
  readonly name: string
  readonly action: Action
  readonly outputBytes: Readonly<Record<string, number>>
  readonly estimate: { readonly scratchBytes: number }
}

export const freeBytes = (ws: Workspace): number => {
  try {
    const s = ws.fs.statfsSync(ws.root)
    return s.bavail * s.bsize
  } catch {
    return Number.POSITIVE_INFINITY
  }
}

interface SimInput {
  readonly name: string
  readonly action: Action
  readonly outputBytes: Readonly<Record<string, number>>
  readonly scratchBytes: number
}

/** Simulation input for a sequence of planned stages, with the temporary set and stage overrides given. */
const simStages = (ws: Workspace, stages: ReadonlyArray<SimInput>, extraTemporary: ReadonlySet<string> = new Set()): Array<Disk.SimStage> => {
  const names = stages.map((s) => s.name)
  return stages.map((s) => {
    const stage = ws.dag.byName.get(s.name)!
    const writes = s.action === "run"
    const outputs = Object.keys(stage.outputs).map((o) => {
      const id = `${s.name}.${o}`
      const consumers = ws.dag.stages
        .filter((c) => names.includes(c.name) && Object.values(c.inputs).some((r) => r.stage === s.name && r.output === o))
        .map((c) => c.name)
      const lockRec = ws.lock[s.name]?.outputs.find((r) => r.path === ws.outputPath(s.name, o))
      const existing = !writes && lockRec !== undefined && ws.fs.existsSync(ws.abs(lockRec.path))
      return {
        id,
        // a cached output that is not on disk (a freed temporary) takes no space
        bytes: writes ? (s.outputBytes[o] ?? 0) : existing || s.action === "restore" ? (lockRec?.size ?? s.outputBytes[o] ?? 0) : 0,
        temporary: ws.isTemporary(s.name, o) || extraTemporary.has(id),
        consumers,
        existing
      }
    })
    return {
      name: s.name,
      newBytes: writes ? Object.values(s.outputBytes).reduce((a, b) => a + b, 0) : 0,
      scratchBytes: writes ? s.scratchBytes : 0,
      outputs
    }
  })
}

/** Rounds up to two significant digits, for suggestions people can type. */
const roundUp = (n: number): number => {
  const p = 10 ** Math.max(0, Math.floor(Math.log10(Math.max(n, 1))) - 1)
  return Math.ceil(n / p) * p
}

/** Computed ways to make a plan fit: variant subsets, outputs made temporary, gc, a bigger budget. */
const waysToFit = (ws: Workspace, stages: ReadonlyArray<DiskStage>, limits: Disk.Limits, sizes: Map<string, number>): Array<string> => {
  const ways: Array<string> = []
  const base = stages.map((s) => ({ name: s.name, action: s.action, outputBytes: s.outputBytes, scratchBytes: s.estimate.scratchBytes }))
  // 1. subsets of a stage's variants
  for (const s of stages) {
    const stage = ws.dag.byName.get(s.name)!
    const v = stage.variants
    if (!v || s.action !== "run") continue
    const params = ws.params.get(s.name)
    const items = v.items(params)
    if (items.length < 2) continue
    const inputSizes: Record<string, number> = {}
    for (const [name, ref] of Object.entries(stage.inputs)) inputSizes[name] = sizes.get(`${ref.stage}.${ref.output}`) ?? 0
    const per = new Map(items.map((it) => [it, v.bytes(it, { params, inputSizes })]))
    const allVariantBytes = [...per.values()].reduce((a, b) => a + b, 0)
    const results = Disk.subsets(items).map((subset) => {
      const delta = subset.reduce((a, it) => a + per.get(it)!, 0) - allVariantBytes
      const first = Object.keys(s.outputBytes)[0]
      const patched = base.map((b) =>
        b.name === s.name && first !== undefined ? { ...b, outputBytes: { ...b.outputBytes, [first]: (b.outputBytes[first] ?? 0) + delta } } : b
      )
      const r = Disk.simulate(simStages(ws, patched))
      return { subset, fits: Disk.fitsIn(r, limits), total: limits.usedBytes + r.requiredBytes }
    })
    const fitting = results.filter((r) => r.fits)
    const maximal = fitting.filter((r) => !fitting.some((o) => o !== r && o.subset.length > r.subset.length && r.subset.every((x) => o.subset.includes(x))))
    const label = (xs: ReadonlyArray<string>) => xs.join(" + ")
    const phrases = maximal.map((r) => (r.subset.length === 1 ? `${r.subset[0]} alone fits` : `${label(r.subset)} fits`))
    const smallestMisses = results.filter((r) => !r.fits && maximal.some((m) => r.subset.length === m.subset.length + 1 && m.subset.every((x) => r.subset.includes(x))))
    for (const r of smallestMisses) phrases.push(`${label(r.subset)} needs ${formatBytes(r.total)}`)
    if (phrases.length > 0) ways.push(`${v.param}: ${phrases.join("; ")}`)
    else ways.push(`${v.param}: no subset fits`)
  }
  // 2. outputs that could be made temporary
  for (const s of stages) {
    const stage = ws.dag.byName.get(s.name)!
    for (const o of Object.keys(stage.outputs)) {
      const id = `${s.name}.${o}`
      if (ws.isTemporary(s.name, o)) continue
      const r = Disk.simulate(simStages(ws, base, new Set([id])))
      if (Disk.fitsIn(r, limits)) ways.push(`make ${id} temporary (temporary: [${id}]): peak ${formatBytes(limits.usedBytes + r.requiredBytes)}`)
    }
  }
  // 3. gc: bytes in the cache that the lock does not need
  const needed = new Set<string>()
  for (const e of Object.values(ws.lock)) for (const o of e.outputs) for (const d of ws.store.objectsOf(o)) needed.add(d)
  let reclaim = 0
  for (const obj of ws.store.listObjects()) if (!needed.has(obj.digest)) reclaim += obj.size
  const r = Disk.simulate(simStages(ws, base))
  if (reclaim > 0 && Disk.fitsIn(r, { ...limits, usedBytes: limits.usedBytes - reclaim, freeBytes: limits.freeBytes + reclaim }))
    ways.push(`pipeline gc would free ${formatBytes(reclaim)} of cache the lock does not need`)
  if (limits.budgetBytes !== undefined && r.requiredBytes <= limits.freeBytes)
    ways.push(`raise budget.disk to ${formatBytes(roundUp(limits.usedBytes + r.requiredBytes))}`)
  return ways
}

export const diskReport = (ws: Workspace, stages: ReadonlyArray<DiskStage>, sizes: Map<string, number>): DiskReport => {
  const usedBytes = ws.store.usedBytes()
  const limits: Disk.Limits = { usedBytes, freeBytes: freeBytes(ws), budgetBytes: ws.engine.budgetBytes }
  const sim = Disk.simulate(
    simStages(ws, stages.map((s) => ({ name: s.name, action: s.action, outputBytes: s.outputBytes, scratchBytes: s.estimate.scratchBytes }))),
    Disk.allowance(limits)
  )
  const ok = Disk.fitsIn(sim, limits)
  return {
    requiredBytes: sim.requiredBytes,
    peakBytes: usedBytes + sim.requiredBytes,
    // when it does not fit, the stage at which it first stops fitting
    peakAtStage: sim.firstOverAt ?? sim.peakAtStage,
    usedBytes,
    freeBytes: limits.freeBytes,
    budgetBytes: limits.budgetBytes ?? null,
    ok,
    fits: ok ? [] : waysToFit(ws, stages, limits, sizes)
  }
}
