/**
 * A stage's key and the reasons it changed: the fingerprint is canonical JSON
 * of everything that can change a stage's result (its name, code, params,
 * the digests of its inputs, the versions of what it runs, its declared
 * outputs); the key is its digest. Also what is on disk: the records of
 * outputs known so far, and whether a recorded output is in place.
 */
import * as Effect from "effect/Effect"
import type { Stats } from "node:fs"
import * as path from "node:path"
import { canonicalJson } from "../cache/Canonical.ts"
import * as Digest from "../cache/Digest.ts"
import { symlinkOnPath } from "../cache/Paths.ts"
import { digestTree, treeSize } from "../cache/Store.ts"
import { ConfigError } from "./Errors.ts"
import type { FileRec, LockEntry, OutputRec } from "./Lockfile.ts"
import type { AnyStage } from "./Stage.ts"
import type { Workspace } from "./Workspace.ts"

/** Everything a stage's key is computed from. */
export interface Fingerprint {
  readonly stage: string
  readonly code: Readonly<Record<string, Digest.Digest>>
  readonly params: unknown
  readonly inputs: ReadonlyArray<FileRec>
  readonly versions: Readonly<Record<string, string>>
  readonly outputs: Readonly<Record<string, { readonly path: string; readonly kind: string }>>
}

export const stageKey = (fp: Fingerprint): Digest.Digest => Digest.ofJson(fp)

// ---------------------------------------------------------------- reasons

/** A param value in a reason: one line, at most 60 characters (a long prompt shows its start and its length). */
const show = (v: unknown): string => {
  const s = v === undefined ? "(none)" : typeof v === "string" ? (v === "" ? '""' : v) : JSON.stringify(v)
  const line = s.replace(/\s+/g, " ")
  return line.length <= 60 && line === s ? s : `"${line.slice(0, 40)}…" (${s.length} chars)`
}

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
export const codeChanged = (before: Readonly<Record<string, string>>, after: Readonly<Record<string, string>>): string | undefined => {
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
const depRecords = (ws: Workspace, stage: AnyStage, params: unknown): Effect.Effect<Array<FileRec>, ConfigError> =>
  Effect.forEach(stage.deps(params), (rel) =>
    Effect.gen(function* () {
      const abs = ws.abs(rel)
      const unreadable = (e: unknown) =>
        new ConfigError({ message: `stage ${stage.name}: input ${rel} cannot be read (${e instanceof Error ? ((e as NodeJS.ErrnoException).code ?? e.message) : String(e)})` })
      const st = ws.fs.statSync(abs, { throwIfNoEntry: false })
      if (st === undefined) return yield* new ConfigError({ message: `stage ${stage.name}: input ${rel} does not exist` })
      if (st.isDirectory()) {
        const t = yield* Effect.try({ try: () => digestTree(abs, ws.stats, ws.fs), catch: unreadable })
        return { path: ws.rel(abs), digest: t.digest, size: t.size }
      }
      if (!st.isFile()) return yield* new ConfigError({ message: `stage ${stage.name}: input ${rel} is not a file or a directory` })
      const h = yield* Effect.try({ try: () => ws.stats.hashFile(abs, st), catch: unreadable })
      return { path: ws.rel(abs), digest: h.digest, size: h.size }
    })
  )

/** Size of an external input without reading it (a directory: the sum of its files). */
export const depSize = (ws: Workspace, abs: string): number => {
  try {
    const st = ws.fs.statSync(abs)
    return st.isDirectory() ? treeSize(abs, ws.fs) : st.size
  } catch {
    return 0
  }
}

/**
 * Builds a stage's fingerprint from the known records of its upstream
 * outputs. An external input that is gone or unreadable is a ConfigError; an
 * upstream output with no record is a bug in the engine (a defect).
 */
export const fingerprint = (ws: Workspace, stage: AnyStage, upstream: Known): Effect.Effect<Fingerprint, ConfigError> =>
  Effect.gen(function* () {
    const params = ws.params.get(stage.name)
    const inputs: Array<FileRec> = []
    for (const ref of Object.values(stage.inputs)) {
      const p = ws.outputPath(ref.stage, ref.output)
      const rec = upstream.get(ref.stage)?.find((o) => o.path === p)
      if (!rec) return yield* Effect.die(new Error(`internal: no record of ${p} for ${stage.name}`))
      inputs.push({ path: rec.path, digest: rec.digest, size: rec.size })
    }
    inputs.push(...(yield* depRecords(ws, stage, params)))
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
  })

export type OutputState = "ok" | "missing" | "modified"

/** Whether a recorded output is in place, byte for byte (stat cache: an untouched file costs one stat). */
export const outputState = (ws: Workspace, rec: OutputRec): OutputState => {
  const abs = ws.abs(rec.path)
  // the engine builds out/<stage>/ itself: a symbolic link below out/ is not its output
  if (symlinkOnPath(ws.outDir, abs) !== undefined) return "modified"
  let st: Stats
  try {
    st = ws.fs.statSync(abs)
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
    for (const d of ws.fs.readdirSync(dir, { withFileTypes: true })) {
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
