/**
 * What happens to one stage whose upstream outputs are known: it is cached,
 * restored from the run-cache, or run, and why. The planner decides every
 * stage it can before anything runs; the executor decides a stage again once
 * its upstream has actually run (that is where early cut-off happens).
 */
import * as Effect from "effect/Effect"
import type { Hit } from "../cache/Cache.ts"
import type * as Digest from "../cache/Digest.ts"
import { type Fingerprint, fingerprint, type Known, codeChanged, outputState, paramChanges, reasonsFor, stageKey } from "./Fingerprint.ts"
import type { ConfigError } from "./Errors.ts"
import type { LockEntry, OutputRec } from "./Lockfile.ts"
import type { AnyStage } from "./Stage.ts"
import type { Workspace } from "./Workspace.ts"

export type Action = "run" | "cached" | "restore"

export interface Decision {
  readonly action: Action
  /**
   * where a restore comes from: "local", or a remote's name; for a cached stage, the remote
   * that holds its outputs when they were left there (with `restore` the entry), else null
   */
  readonly source: string | null
  readonly reasons: ReadonlyArray<string>
  /** undefined while an upstream stage still has to run */
  readonly key: Digest.Digest | undefined
  readonly fingerprint: Fingerprint | undefined
  /** the entry to restore (action restore) */
  readonly restore: LockEntry | undefined
  /** the cache hit that restores it (action restore) */
  readonly hit?: Hit<LockEntry> | undefined
  /** upstream stages whose outputs are not known yet */
  readonly pending: ReadonlyArray<string>
  /** set by -f / --force-downstream: run even if the key turns out unchanged */
  readonly forced: boolean
}


/**
 * Decides one stage whose upstream outputs are all known. Temporary outputs
 * that are gone are fine here; the plan asks for them back only when a stage
 * that reads them has to run.
 */
/** For a stage with an effect outside the store: why that effect is not in place for `key`, or undefined. */
const externalProblem = (ws: Workspace, stage: AnyStage, key: Digest.Digest): Effect.Effect<string | undefined> => {
  const r = stage.external?.check({ params: ws.params.get(stage.name), workspace: ws.root, key, digestFile: (abs) => ws.stats.hashFile(abs).digest })
  return Effect.isEffect(r) ? r : Effect.succeed(r)
}

export const decide = (ws: Workspace, stage: AnyStage, upstream: Known, forced: boolean): Effect.Effect<Decision, ConfigError> =>
  Effect.flatMap(fingerprint(ws, stage, upstream), (fp) => {
    const d = decideFrom(ws, stage, fp, forced)
    // a cache hit or a restore does not redo what the stage does outside the store: check that too
    if (d.action === "run" || stage.external === undefined) return Effect.succeed(d)
    return Effect.map(externalProblem(ws, stage, d.key!), (problem): Decision =>
      problem === undefined ? d : { ...d, action: "run", source: null, reasons: [...d.reasons, problem], restore: undefined, hit: undefined }
    )
  })

const decideFrom = (ws: Workspace, stage: AnyStage, fp: Fingerprint, forced: boolean): Decision => {
  const key = stageKey(fp)
  const prev = ws.lock[stage.name]
  const base = { key, fingerprint: fp, pending: [], forced }
  if (forced) return { ...base, action: "run", source: null, reasons: ["forced"], restore: undefined }
  const run = (reasons: Array<string>): Decision => ({ ...base, action: "run", source: null, reasons, restore: undefined })
  if (prev && prev.key === key) {
    const problems: Array<string> = []
    const broken: Array<OutputRec> = []
    // a run that left this result on a remote (nothing it ran read it) did not bring its outputs here
    const onRemote = ws.onRemote(stage.name, key)
    let away = false
    for (const o of prev.outputs) {
      const state = outputState(ws, o)
      if (state === "missing" && (ws.isTemporaryPath(stage.name, o.path) || onRemote !== undefined)) {
        away ||= !ws.isTemporaryPath(stage.name, o.path)
        continue
      }
      if (state !== "ok") {
        problems.push(`output ${state}: ${o.path}`)
        broken.push(o)
      }
    }
    if (problems.length === 0)
      return away
        ? { ...base, action: "cached", source: onRemote!, reasons: [`outputs on remote ${onRemote} (not fetched: nothing that ran read them)`], restore: prev }
        : { ...base, action: "cached", source: null, reasons: [], restore: undefined }
    const fix = ws.cache.get(stage.name, key, { known: prev, needed: (o) => broken.includes(o) })
    if (fix) return { ...base, action: "restore", source: fix.source, reasons: problems, restore: fix.entry, hit: fix }
    // a fresh clone: the committed lock knows the stage, this workspace has none of it
    if (broken.length === prev.outputs.length && problems.every((p) => p.startsWith("output missing")) && !broken.some((o) => ws.store.has(o.digest)))
      return run(["never run here (the lock has it; out/ and the cache do not)"])
    return run(problems.map((p) => `${p} (not in cache)`))
  }
  const reasons = reasonsFor(fp, prev)
  const hit = ws.cache.get(stage.name, key)
  if (hit) return { ...base, action: "restore", source: hit.source, reasons, restore: hit.entry, hit }
  return run(reasons)
}

/** Reasons that can be told before the upstream has run (params, code, versions). */
export const pendingDecision = (ws: Workspace, stage: AnyStage, pending: Array<string>, forced: boolean): Decision => {
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
