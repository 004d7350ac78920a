/**
 * The planner turns params, inputs, the lock and the cache into a plan: for
 * every stage in the target's closure, what will happen (run / cached /
 * restore, Decide.ts), why (Fingerprint.ts), what it will write and how long
 * it will take, and whether it all fits on disk (DiskPlan.ts). The plan is
 * data: `--dry-run` prints it (PlanView.ts), the executor runs it.
 */
import * as Effect from "effect/Effect"
import { canonicalJson } from "../cache/Canonical.ts"
import { isWithin } from "../cache/Paths.ts"
import * as Dag from "./Dag.ts"
import { type Decision, decide, pendingDecision } from "./Decide.ts"
import * as DiskPlan from "./DiskPlan.ts"
import { ConfigError, type GraphError } from "./Errors.ts"
import { depSize, type Known, knownFromLock, outputState } from "./Fingerprint.ts"
import type { AnyStage, Estimate } from "./Stage.ts"
import * as Disk from "./DiskBudget.ts"
import { formatBytes } from "./Units.ts"
import type { Workspace } from "./Workspace.ts"

export interface PlannedStage extends Decision {
  readonly name: string
  readonly estimate: { readonly diskBytes: number; readonly seconds: number; readonly scratchBytes: number; readonly memoryBytes: number }
  /** estimated bytes per output */
  readonly outputBytes: Readonly<Record<string, number>>
}

export interface Plan {
  readonly target: string | null
  readonly stages: ReadonlyArray<PlannedStage>
  readonly disk: DiskPlan.DiskReport
  readonly warnings: ReadonlyArray<string>
  readonly totals: { readonly stagesToRun: number; readonly seconds: number }
}

export interface PlanOptions {
  readonly target?: string | undefined
  readonly force?: boolean
  readonly forceDownstream?: boolean
  /** skip the disk simulation (status) */
  readonly skipDisk?: boolean
  /** make the plan even when a stage's pre-flight check fails (`--dry-run` shows the plan, then the problems) */
  readonly planDespitePreflight?: boolean
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
  for (const rel of stage.deps(params)) inputSizes[rel] = depSize(ws, ws.abs(rel))
  try {
    return stage.estimate({ params, inputSizes })
  } catch {
    return ZERO_ESTIMATE
  }
}

/**
 * The time the last recorded run took, when it tells this run's time: same
 * params, and inputs of about the same size (within 2×), scaled by the input
 * bytes. Otherwise undefined, and the stage's own estimate is used: a merge
 * that took 0.8 s on the tiny model says nothing about an 8 GB one.
 */
export const recordedSeconds = (ws: Workspace, stage: AnyStage, sizes: ReadonlyMap<string, number>): number | undefined => {
  const prev = ws.lock[stage.name]
  if (!prev || canonicalJson(prev.params) !== canonicalJson(ws.params.get(stage.name))) return undefined
  const before = prev.inputs.reduce((a, i) => a + i.size, 0)
  const params = ws.params.get(stage.name)
  let after = 0
  for (const ref of Object.values(stage.inputs)) after += sizes.get(`${ref.stage}.${ref.output}`) ?? 0
  for (const rel of stage.deps(params)) after += depSize(ws, ws.abs(rel))
  if (before === 0 || after === 0) return before === after ? prev.duration : undefined
  const ratio = after / before
  return ratio >= 0.5 && ratio <= 2 ? prev.duration * ratio : undefined
}

/** Plans the stages in `names` (run order). */
const planStages = (
  ws: Workspace,
  names: ReadonlyArray<string>,
  options: PlanOptions
): Effect.Effect<{ stages: Array<PlannedStage>; sizes: Map<string, number> }, ConfigError> =>
  Effect.gen(function* () {
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
      else d = yield* decide(ws, stage, known, forced)
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
          const why = `output missing: ${rec.path} (${ud.source !== null ? `on remote ${ud.source}` : "temporary"}, needed by ${name})`
          const entry = ws.lock[ref.stage]!
          const hit = ws.cache.get(ref.stage, entry.key, { known: entry, needed: (o) => o.path === rec.path })
          const restore = hit !== undefined
          decisions.set(
            ref.stage,
            hit
              ? { ...ud, action: "restore", source: hit.source, reasons: [why], restore: hit.entry, hit }
              : { ...ud, action: "run", reasons: [why] }
          )
          // a rerun producer may write other bytes: the reader decides again once it has run
          if (!restore && !d.pending.includes(ref.stage)) decisions.set(name, { ...decisions.get(name)!, pending: [...d.pending, ref.stage] })
          changed = true
        }
      }
    }
    // A result known from a remote is fetched only when something needs it here: the target (or,
    // without one, a stage nothing else in the plan reads) or a stage that runs. The others stay
    // on the remote, and the run records where (`pull` fetches them on demand).
    for (const name of names) {
      const d = decisions.get(name)!
      if (d.action !== "restore" || d.hit?.fetch !== true) continue
      const rs = Dag.consumers(ws.dag, name).filter((n) => decisions.has(n))
      const wanted = options.target !== undefined ? name === options.target : rs.length === 0
      if (wanted || rs.some((r) => decisions.get(r)!.action === "run")) continue
      decisions.set(name, {
        ...d,
        action: "cached",
        reasons: [`outputs on remote ${d.hit.source} (not fetched: nothing that runs reads them)`],
        hit: undefined
      })
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
      const last = recordedSeconds(ws, stage, sizes)
      const diskBytes = Object.values(est.bytes).reduce((a, b) => a + b, 0)
      return {
        name,
        ...d,
        estimate: { diskBytes, seconds: last ?? est.seconds, scratchBytes: est.scratchBytes ?? 0, memoryBytes: est.memoryBytes ?? 0 },
        outputBytes: est.bytes
      }
  })
  return { stages, sizes }
  })

/** Each planned stage's own pre-flight check (e.g. a publish target inside the workspace), as one line each. */
export const preflightProblems = (ws: Workspace, names: ReadonlyArray<string>): Array<string> =>
  names.flatMap((name) => {
    const stage = ws.dag.byName.get(name)!
    const problem = stage.preflight?.({ params: ws.params.get(name), workspace: ws.root, owns: (abs) => ws.owns(abs) })
    return problem === undefined ? [] : [`stage ${name}: ${problem}`]
  })

/** The pre-flight checks as a config error, before anything runs. */
const preflight = (ws: Workspace, names: ReadonlyArray<string>): Effect.Effect<void, ConfigError> => {
  const problems = preflightProblems(ws, names)
  return problems.length === 0 ? Effect.void : Effect.fail(new ConfigError({ message: problems[0]! }))
}

/** The plan for `options.target` (default: every stage). Wrong params or inputs are failures (ConfigError), not throws. */
export const plan = (ws: Workspace, options: PlanOptions): Effect.Effect<Plan, ConfigError | GraphError> =>
  Effect.gen(function* () {
    const names = yield* Dag.closure(ws.dag, options.target)
    if (options.planDespitePreflight !== true) yield* preflight(ws, names)
    const { stages, sizes } = yield* planStages(ws, names, options)
    const toRun = stages.filter((s) => s.action === "run")
    const emptyDisk: DiskPlan.DiskReport = {
      requiredBytes: 0, peakBytes: 0, peakAtStage: null, usedBytes: 0, freeBytes: 0, budgetBytes: ws.engine.budgetBytes ?? null, ok: true, fits: []
    }
    const work = stages.some((s) => s.action !== "cached")
    const disk = options.skipDisk || !work ? emptyDisk : DiskPlan.diskReport(ws, stages, sizes)
    const warnings: Array<string> = []
    // External inputs are the user's choice, wherever they are; the plan says when one is outside.
    for (const name of names) {
      const stage = ws.dag.byName.get(name)!
      for (const rel of stage.deps(ws.params.get(name)))
        if (!isWithin(ws.abs(rel), ws.root)) warnings.push(`${name}: input ${rel} lies outside the workspace${rel === ws.abs(rel) ? "" : ` (${ws.abs(rel)})`}`)
    }
    // Downstream stages that are not part of this run would still have to fit later.
    const everything = yield* Dag.closure(ws.dag, undefined)
    if (!options.skipDisk && options.target !== undefined && names.length < everything.length) {
      const all = yield* planStages(ws, everything, { ...options, target: undefined, force: false })
      const later = all.stages.map((s) => (names.includes(s.name) ? stages.find((x) => x.name === s.name)! : s))
      const full = DiskPlan.diskReport(ws, later, all.sizes)
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
  })

/**
 * For `--dry-run`: what each stage that runs would do outside the store (the
 * stages that declare an external preview), once its inputs are in place.
 */
export const previews = (ws: Workspace, plan: Plan): Effect.Effect<Map<string, ReadonlyArray<string>>> =>
  Effect.gen(function* () {
    const out = new Map<string, ReadonlyArray<string>>()
    for (const s of plan.stages) {
      const stage = ws.dag.byName.get(s.name)
      const preview = stage?.external?.preview
      if (stage === undefined || preview === undefined || s.action !== "run" || s.key === undefined) continue
      const inputs: Record<string, string> = {}
      for (const [k, ref] of Object.entries(stage.inputs)) inputs[k] = ws.abs(ws.outputPath(ref.stage, ref.output))
      if (!Object.values(inputs).every((p) => ws.fs.existsSync(p))) continue
      const key = s.key
      out.set(s.name, yield* preview({ params: ws.params.get(s.name), workspace: ws.root, key, inputs, digestFile: (abs) => ws.stats.hashFile(abs).digest }))
    }
    return out
  })
