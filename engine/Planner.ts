/**
 * The planner turns params, inputs, the lock and the cache into a plan: for
 * every stage in the target's closure, what will happen (run / cached /
 * restore), why, what it will write and how long it will take, and whether it
 * all fits on disk. The plan is data: `--dry-run` prints it, the executor runs
 * it, and the executor re-decides a stage with `decide` once its upstream has
 * actually run (that is where early cut-off happens).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { canonicalJson } from "../cache/Canonical.ts"
import * as Digest from "../cache/Digest.ts"
import { isWithin, symlinkOnPath } from "../cache/Paths.ts"
import { digestTree, treeSize } from "../cache/Store.ts"
import * as Dag from "./Dag.ts"
import * as Disk from "./DiskBudget.ts"
import { ConfigError } from "./Errors.ts"
import type { FileRec, LockEntry, OutputRec } from "./Lockfile.ts"
import type { AnyStage, Estimate } from "./Stage.ts"
import { formatBytes } from "./Units.ts"
import type { Workspace } from "./Workspace.ts"

export type Action = "run" | "cached" | "restore"

/** Everything a stage's key is computed from. */
export interface Fingerprint {
  readonly stage: string
  readonly code: Readonly<Record<string, Digest.Digest>>
  readonly params: unknown
  readonly inputs: ReadonlyArray<FileRec>
  readonly versions: Readonly<Record<string, string>>
  readonly outputs: Readonly<Record<string, { readonly path: string; readonly kind: string }>>
}

export const stageKey = (fp: Fingerprint): Digest.Digest => Digest.ofBytes(canonicalJson(fp))

export interface Decision {
  readonly action: Action
  readonly source: "local" | null
  readonly reasons: ReadonlyArray<string>
  /** undefined while an upstream stage still has to run */
  readonly key: Digest.Digest | undefined
  readonly fingerprint: Fingerprint | undefined
  /** the entry to restore (action restore) */
  readonly restore: LockEntry | undefined
  /** upstream stages whose outputs are not known yet */
  readonly pending: ReadonlyArray<string>
  /** set by -f / --force-downstream: run even if the key turns out unchanged */
  readonly forced: boolean
}

export interface PlannedStage extends Decision {
  readonly name: string
  readonly estimate: { readonly diskBytes: number; readonly seconds: number; readonly scratchBytes: number }
  /** estimated bytes per output */
  readonly outputBytes: Readonly<Record<string, number>>
}

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

export interface Plan {
  readonly target: string | null
  readonly stages: ReadonlyArray<PlannedStage>
  readonly disk: DiskReport
  readonly warnings: ReadonlyArray<string>
  readonly totals: { readonly stagesToRun: number; readonly seconds: number }
}

export interface PlanOptions {
  readonly target?: string | undefined
  readonly force?: boolean
  readonly forceDownstream?: boolean
  /** skip the disk simulation (status) */
  readonly skipDisk?: boolean
}

// ---------------------------------------------------------------- reasons

const show = (v: unknown): string =>
  v === undefined ? "(none)" : typeof v === "string" ? (v === "" ? '""' : v) : JSON.stringify(v)

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)

/** `train.lr 0.001 -> 0.0001` for every leaf that differs. */
export const paramChanges = (before: unknown, after: unknown, prefix = ""): Array<string> => {
  if (isPlainObject(before) && isPlainObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()
    return keys.flatMap((k) => paramChanges(before[k], after[k], prefix ? `${prefix}.${k}` : k))
  }
  return canonicalJson(before) === canonicalJson(after) ? [] : [`${prefix} ${show(before)} -> ${show(after)}`]
}

/** `code changed: a.ts, b.ts (+3 more)`: the files whose digest changed, were added or dropped. */
const codeChanged = (before: Readonly<Record<string, string>>, after: Readonly<Record<string, string>>): string | undefined => {
  const files = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort().filter((f) => before[f] !== after[f])
  if (files.length === 0) return undefined
  return `code changed: ${files.slice(0, 3).join(", ")}${files.length > 3 ? ` (+${files.length - 3} more)` : ""}`
}

export const reasonsFor = (fp: Fingerprint, prev: LockEntry | undefined): Array<string> => {
  if (!prev) return ["no previous run"]
  const reasons: Array<string> = []
  for (const c of paramChanges(prev.params, fp.params)) reasons.push(`params changed: ${c}`)
  const code = codeChanged(prev.code, fp.code)
  if (code) reasons.push(code)
  const before = new Map(prev.inputs.map((i) => [i.path, i.digest]))
  for (const i of fp.inputs) if (before.get(i.path) !== i.digest) reasons.push(`input changed: ${i.path}`)
  const now = new Set(fp.inputs.map((i) => i.path))
  for (const p of before.keys()) if (!now.has(p)) reasons.push(`input removed: ${p}`)
  const vs = [...new Set([...Object.keys(prev.versions), ...Object.keys(fp.versions)])].sort()
  for (const v of vs) if (prev.versions[v] !== fp.versions[v]) reasons.push(`version changed: ${v} ${show(prev.versions[v])} -> ${show(fp.versions[v])}`)
  const declared = Object.values(fp.outputs).map((o) => `out/${fp.stage}/${o.path}`).sort()
  const had = prev.outputs.map((o) => o.path).sort()
  if (canonicalJson(declared) !== canonicalJson(had)) reasons.push("outputs changed")
  return reasons.length > 0 ? reasons : ["key changed"]
}

// ---------------------------------------------------------------- inputs and keys

/** Output records known so far in this run: from the lock, or produced/restored by this run. */
export type Known = Map<string, ReadonlyArray<OutputRec>>

export const knownFromLock = (ws: Workspace): Known => new Map(Object.entries(ws.lock).map(([n, e]) => [n, e.outputs]))

/**
 * A stage's external inputs (a local dataset file, a local model directory),
 * keyed by content: a file by its digest, a directory by its tree digest, both
 * through the stat cache, so an unchanged 8 GB model directory costs a stat
 * per file and an edited config.json inside it changes the key.
 */
const depRecords = (ws: Workspace, stage: AnyStage, params: unknown): Array<FileRec> =>
  stage.deps(params).map((rel) => {
    const abs = ws.abs(rel)
    let st: fs.Stats
    try {
      st = fs.statSync(abs)
    } catch {
      throw new ConfigError({ message: `stage ${stage.name}: input ${rel} does not exist` })
    }
    if (st.isDirectory()) {
      try {
        const t = digestTree(abs, ws.stats)
        return { path: ws.rel(abs), digest: t.digest, size: t.size }
      } catch (e) {
        throw new ConfigError({ message: `stage ${stage.name}: input ${rel} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` })
      }
    }
    if (!st.isFile()) throw new ConfigError({ message: `stage ${stage.name}: input ${rel} is not a file or a directory` })
    try {
      const h = ws.stats.hashFile(abs, st)
      return { path: ws.rel(abs), digest: h.digest, size: h.size }
    } catch (e) {
      throw new ConfigError({ message: `stage ${stage.name}: input ${rel} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` })
    }
  })

/** Size of an external input without reading it (a directory: the sum of its files). */
const depSize = (abs: string): number => {
  try {
    const st = fs.statSync(abs)
    return st.isDirectory() ? treeSize(abs) : st.size
  } catch {
    return 0
  }
}

/** Builds a stage's fingerprint from the known records of its upstream outputs. */
export const fingerprint = (ws: Workspace, stage: AnyStage, upstream: Known): Fingerprint => {
  const params = ws.params.get(stage.name)
  const inputs: Array<FileRec> = []
  for (const ref of Object.values(stage.inputs)) {
    const p = ws.outputPath(ref.stage, ref.output)
    const rec = upstream.get(ref.stage)?.find((o) => o.path === p)
    if (!rec) throw new Error(`internal: no record of ${p} for ${stage.name}`)
    inputs.push({ path: rec.path, digest: rec.digest, size: rec.size })
  }
  inputs.push(...depRecords(ws, stage, params))
  const uniq = [...new Map(inputs.map((i) => [i.path, i])).values()].sort((a, b) => (a.path < b.path ? -1 : 1))
  return {
    stage: stage.name,
    code: ws.codeOf(stage),
    params,
    // sizes are not part of the key (the digest covers them)
    inputs: uniq.map(({ path: p, digest }) => ({ path: p, digest, size: 0 })),
    versions: stage.versions(params, ws.root),
    outputs: Object.fromEntries(Object.entries(stage.outputs).map(([k, o]) => [k, { path: o.path, kind: o.kind }]))
  }
}

export type OutputState = "ok" | "missing" | "modified"

/** Whether a recorded output is in place, byte for byte (stat cache: an untouched file costs one stat). */
export const outputState = (ws: Workspace, rec: OutputRec): OutputState => {
  const abs = ws.abs(rec.path)
  // the engine builds out/<stage>/ itself: a symbolic link below out/ is not its output
  if (symlinkOnPath(ws.outDir, abs) !== undefined) return "modified"
  let st: fs.Stats
  try {
    st = fs.statSync(abs)
  } catch {
    return "missing"
  }
  if (rec.kind === "file") {
    if (!st.isFile()) return "modified"
    return ws.stats.hashFile(abs, st).digest === rec.digest ? "ok" : "modified"
  }
  if (!st.isDirectory()) return "modified"
  if (!ws.store.has(rec.digest)) return "modified"
  const tree = ws.store.readTree(rec.digest)
  if (!tree) return "modified"
  let count = 0
  const walk = (dir: string): void => {
    for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
      if (d.isDirectory()) walk(path.join(dir, d.name))
      else count++
    }
  }
  walk(abs)
  if (count !== tree.entries.length) return "modified"
  for (const e of tree.entries) {
    const f = path.join(abs, e.path)
    try {
      if (ws.stats.hashFile(f).digest !== e.digest) return "modified"
    } catch {
      return "modified"
    }
  }
  return "ok"
}

const restorable = (ws: Workspace, outputs: ReadonlyArray<OutputRec>): boolean => outputs.every((o) => ws.store.canRestore(o))

/**
 * Decides one stage whose upstream outputs are all known. Temporary outputs
 * that are gone are fine here; the plan asks for them back only when a stage
 * that reads them has to run.
 */
/** For a stage with an effect outside the store: why that effect is not in place for `key`, or undefined. */
const externalProblem = (ws: Workspace, stage: AnyStage, key: Digest.Digest): string | undefined =>
  stage.external?.check({ params: ws.params.get(stage.name), workspace: ws.root, key, digestFile: (abs) => ws.stats.hashFile(abs).digest })

export const decide = (ws: Workspace, stage: AnyStage, upstream: Known, forced: boolean): Decision => {
  const fp = fingerprint(ws, stage, upstream)
  const key = stageKey(fp)
  const prev = ws.lock[stage.name]
  const base = { key, fingerprint: fp, pending: [], forced }
  if (forced) return { ...base, action: "run", source: null, reasons: ["forced"], restore: undefined }
  // a cache hit or a restore does not redo what the stage does outside the store: check that too
  const run = (reasons: Array<string>): Decision => ({ ...base, action: "run", source: null, reasons, restore: undefined })
  const unlessExternal = (d: Decision): Decision => {
    const external = externalProblem(ws, stage, key)
    return external === undefined ? d : run([...d.reasons, external])
  }
  if (prev && prev.key === key) {
    const problems: Array<string> = []
    const broken: Array<OutputRec> = []
    for (const o of prev.outputs) {
      const state = outputState(ws, o)
      if (state === "missing" && ws.isTemporaryPath(stage.name, o.path)) continue
      if (state !== "ok") {
        problems.push(`output ${state}: ${o.path}`)
        broken.push(o)
      }
    }
    if (problems.length === 0) return unlessExternal({ ...base, action: "cached", source: null, reasons: [], restore: undefined })
    if (restorable(ws, broken)) return unlessExternal({ ...base, action: "restore", source: "local", reasons: problems, restore: prev })
    return run(problems.map((p) => `${p} (not in cache)`))
  }
  const reasons = reasonsFor(fp, prev)
  const hit = ws.runs.get(stage.name, key)
  if (hit && restorable(ws, hit.entry.outputs)) return unlessExternal({ ...base, action: "restore", source: "local", reasons, restore: hit.entry })
  return run(reasons)
}

/** Reasons that can be told before the upstream has run (params, code, versions). */
const pendingDecision = (ws: Workspace, stage: AnyStage, pending: Array<string>, forced: boolean): Decision => {
  const prev = ws.lock[stage.name]
  const params = ws.params.get(stage.name)
  const reasons: Array<string> = []
  if (forced) reasons.push("forced")
  if (prev) {
    for (const c of paramChanges(prev.params, params)) reasons.push(`params changed: ${c}`)
    const code = codeChanged(prev.code, ws.codeOf(stage))
    if (code) reasons.push(code)
  } else reasons.push("no previous run")
  reasons.push(`upstream runs: ${pending.join(", ")}`)
  return { action: "run", source: null, reasons, key: undefined, fingerprint: undefined, restore: undefined, pending, forced }
}

// ---------------------------------------------------------------- the plan

const ZERO_ESTIMATE: Estimate = { bytes: {}, seconds: 0 }

/** `stage.output` → bytes, for every output whose record is known. */
export const outputSizes = (ws: Workspace, known: Known): Map<string, number> => {
  const sizes = new Map<string, number>()
  for (const [n, recs] of known) {
    const stage = ws.dag.byName.get(n)
    if (!stage) continue
    for (const [o, decl] of Object.entries(stage.outputs)) {
      const rec = recs.find((r) => r.path === `out/${n}/${decl.path}`)
      if (rec) sizes.set(`${n}.${o}`, rec.size)
    }
  }
  return sizes
}

/** A stage's own estimate, given the sizes of its inputs (real where known, else estimated upstream). */
export const estimateFor = (ws: Workspace, stage: AnyStage, sizes: ReadonlyMap<string, number>): Estimate => {
  const params = ws.params.get(stage.name)
  const inputSizes: Record<string, number> = {}
  for (const [name, ref] of Object.entries(stage.inputs)) inputSizes[name] = sizes.get(`${ref.stage}.${ref.output}`) ?? 0
  for (const rel of stage.deps(params)) inputSizes[rel] = depSize(ws.abs(rel))
  try {
    return stage.estimate({ params, inputSizes })
  } catch {
    return ZERO_ESTIMATE
  }
}

export const freeBytes = (root: string): number => {
  try {
    const s = fs.statfsSync(root)
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
      const existing = !writes && lockRec !== undefined && fs.existsSync(ws.abs(lockRec.path))
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
const waysToFit = (ws: Workspace, stages: ReadonlyArray<PlannedStage>, limits: Disk.Limits, sizes: Map<string, number>): Array<string> => {
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

export const diskReport = (ws: Workspace, stages: ReadonlyArray<PlannedStage>, sizes: Map<string, number>): DiskReport => {
  const usedBytes = ws.store.usedBytes()
  const limits: Disk.Limits = { usedBytes, freeBytes: freeBytes(ws.root), budgetBytes: ws.engine.budgetBytes }
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

/** Plans the stages in `names` (run order). */
const planStages = (ws: Workspace, names: ReadonlyArray<string>, options: PlanOptions): { stages: Array<PlannedStage>; sizes: Map<string, number> } => {
  const known = knownFromLock(ws)
  const decisions = new Map<string, Decision>()
  const running = new Set<string>()
  let firstRun: string | undefined
  for (const name of names) {
    const stage = ws.dag.byName.get(name)!
    const ups = [...new Set(Object.values(stage.inputs).map((r) => r.stage))]
    const pending = ups.filter((u) => running.has(u))
    const forced =
      (options.force === true && (name === options.target || (options.target === undefined && name === names[names.length - 1]))) ||
      (options.forceDownstream === true && firstRun !== undefined && ups.some((u) => running.has(u)))
    let d: Decision
    const missingUp = ups.filter((u) => !known.has(u))
    if (pending.length > 0) d = pendingDecision(ws, stage, pending, forced)
    else if (missingUp.length > 0) d = pendingDecision(ws, stage, missingUp, forced)
    else d = decide(ws, stage, known, forced)
    if (d.action === "restore" && d.restore) known.set(name, d.restore.outputs)
    decisions.set(name, d)
    if (d.action === "run") {
      running.add(name)
      firstRun ??= name
    }
  }
  // A stage that runs needs its inputs on disk: bring back temporary outputs that were dropped.
  let changed = true
  while (changed) {
    changed = false
    for (const name of names) {
      const d = decisions.get(name)!
      // only a stage that runs reads its inputs (a restore does not)
      if (d.action !== "run") continue
      const stage = ws.dag.byName.get(name)!
      for (const ref of Object.values(stage.inputs)) {
        const ud = decisions.get(ref.stage)
        if (!ud || ud.action !== "cached") continue
        const rec = ws.lock[ref.stage]?.outputs.find((o) => o.path === ws.outputPath(ref.stage, ref.output))
        if (!rec || outputState(ws, rec) === "ok") continue
        const why = `output missing: ${rec.path} (temporary, needed by ${name})`
        const restore = ws.store.canRestore(rec)
        decisions.set(
          ref.stage,
          restore
            ? { ...ud, action: "restore", source: "local", reasons: [why], restore: ws.lock[ref.stage] }
            : { ...ud, action: "run", reasons: [why] }
        )
        // a rerun producer may write other bytes: the reader decides again once it has run
        if (!restore && !d.pending.includes(ref.stage)) decisions.set(name, { ...decisions.get(name)!, pending: [...d.pending, ref.stage] })
        changed = true
      }
    }
  }
  const sizes = outputSizes(ws, knownFromLock(ws))
  const stages = names.map((name): PlannedStage => {
    const stage = ws.dag.byName.get(name)!
    const d = decisions.get(name)!
    const est = estimateFor(ws, stage, sizes)
    if (d.action === "run") for (const [o, b] of Object.entries(est.bytes)) sizes.set(`${name}.${o}`, b)
    else if (d.restore) for (const [o, decl] of Object.entries(stage.outputs)) {
      const rec = d.restore.outputs.find((r) => r.path === `out/${name}/${decl.path}`)
      if (rec) sizes.set(`${name}.${o}`, rec.size)
    }
    // the last recorded run tells the time best, as long as it ran with these params
    const prev = ws.lock[name]
    const last = prev && canonicalJson(prev.params) === canonicalJson(ws.params.get(name)) ? prev.duration : undefined
    const diskBytes = Object.values(est.bytes).reduce((a, b) => a + b, 0)
    return {
      name,
      ...d,
      estimate: { diskBytes, seconds: last ?? est.seconds, scratchBytes: est.scratchBytes ?? 0 },
      outputBytes: est.bytes
    }
  })
  return { stages, sizes }
}

/** Each planned stage's own pre-flight check (e.g. a publish target inside the workspace): a config error, before anything runs. */
const preflight = (ws: Workspace, names: ReadonlyArray<string>): void => {
  for (const name of names) {
    const stage = ws.dag.byName.get(name)!
    const problem = stage.preflight?.({ params: ws.params.get(name), workspace: ws.root, owns: (abs) => ws.owns(abs) })
    if (problem !== undefined) throw new ConfigError({ message: `stage ${name}: ${problem}` })
  }
}

export const plan = (ws: Workspace, options: PlanOptions): Plan => {
  const names = Dag.closure(ws.dag, options.target)
  preflight(ws, names)
  const { stages, sizes } = planStages(ws, names, options)
  const toRun = stages.filter((s) => s.action === "run")
  const emptyDisk: DiskReport = {
    requiredBytes: 0, peakBytes: 0, peakAtStage: null, usedBytes: 0, freeBytes: 0, budgetBytes: ws.engine.budgetBytes ?? null, ok: true, fits: []
  }
  const work = stages.some((s) => s.action !== "cached")
  const disk = options.skipDisk || !work ? emptyDisk : diskReport(ws, stages, sizes)
  const warnings: Array<string> = []
  // External inputs are the user's choice, wherever they are; the plan says when one is outside.
  for (const name of names) {
    const stage = ws.dag.byName.get(name)!
    for (const rel of stage.deps(ws.params.get(name)))
      if (!isWithin(ws.abs(rel), ws.root)) warnings.push(`${name}: input ${rel} lies outside the workspace${rel === ws.abs(rel) ? "" : ` (${ws.abs(rel)})`}`)
  }
  // Downstream stages that are not part of this run would still have to fit later.
  if (!options.skipDisk && options.target !== undefined && names.length < ws.dag.order.length) {
    const all = planStages(ws, ws.dag.order, { ...options, target: undefined, force: false })
    const later = all.stages.map((s) => (names.includes(s.name) ? stages.find((x) => x.name === s.name)! : s))
    const full = diskReport(ws, later, all.sizes)
    const short = Disk.shortfall(full, { usedBytes: full.usedBytes, freeBytes: full.freeBytes, budgetBytes: full.budgetBytes ?? undefined })
    if (!full.ok && short) {
      const limit = short.limit === "budget" ? "the budget allows" : "is free on disk"
      warnings.push(
        `downstream: ${full.peakAtStage} would need ${formatBytes(short.bytes)} more than ${limit}${full.fits.length ? ` (${full.fits.join("; ")})` : ""}`
      )
    }
  }
  return {
    target: options.target ?? null,
    stages,
    disk,
    warnings,
    totals: { stagesToRun: toRun.length + stages.filter((s) => s.action === "restore").length, seconds: toRun.reduce((a, s) => a + s.estimate.seconds, 0) }
  }
}

/** The JSON shape of DESIGN.md (`run --dry-run --json`, and `run --json` with measured values). */
export const toJson = (
  p: Plan,
  measured?: ReadonlyMap<string, { action: string; bytes: number | null; seconds: number | null; reasons?: ReadonlyArray<string> }>
) => ({
  target: p.target,
  stages: p.stages.map((s) => {
    const m = measured?.get(s.name)
    return {
      name: s.name,
      action: m?.action ?? s.action,
      source: s.source,
      reasons: m?.reasons ?? s.reasons,
      estimate: { diskBytes: s.estimate.diskBytes, seconds: s.estimate.seconds },
      bytes: m?.bytes ?? null,
      seconds: m?.seconds ?? null
    }
  }),
  disk: {
    requiredBytes: p.disk.requiredBytes,
    peakBytes: p.disk.peakBytes,
    peakAtStage: p.disk.peakAtStage,
    freeBytes: Number.isFinite(p.disk.freeBytes) ? p.disk.freeBytes : null,
    budgetBytes: p.disk.budgetBytes,
    ok: p.disk.ok,
    fits: p.disk.fits
  },
  warnings: p.warnings,
  totals: p.totals
})
