/**
 * `pipeline verify` and `pipeline gc`: keeping the store honest and small.
 */
import * as path from "node:path"
import type { Digest } from "../cache/Digest.ts"
import { removeTree } from "../cache/Store.ts"
import type { LockEntry } from "./Lockfile.ts"
import { formatBytes } from "./Units.ts"
import type { Workspace } from "./Workspace.ts"

export interface VerifyReport {
  readonly objects: number
  readonly bytes: number
  readonly corrupt: ReadonlyArray<Digest>
  /** run-cache entries and lock stages that need an object that is gone */
  readonly incomplete: ReadonlyArray<string>
  /** run-cache entry files that do not decode (never used; gc removes them) */
  readonly damagedEntries: ReadonlyArray<string>
}

/** Re-hashes every object (ignoring the stat cache); damaged ones go to corrupt/ and are never restored. */
export const verify = (ws: Workspace, onProgress: (done: number, total: number) => void = () => {}): VerifyReport => {
  const objects = [...ws.store.listObjects()]
  const corrupt: Array<Digest> = []
  let bytes = 0
  objects.forEach((o, i) => {
    bytes += o.size
    if (!ws.store.verifyObject(o.digest)) corrupt.push(o.digest)
    onProgress(i + 1, objects.length)
  })
  const incomplete: Array<string> = []
  const check = (label: string, e: LockEntry) => {
    for (const o of e.outputs) if (!ws.store.objectsOf(o).every((d) => ws.store.has(d))) return void incomplete.push(label)
  }
  // a result a run left on a remote (run --remote fetches only what it needs) is not missing here
  for (const [n, e] of Object.entries(ws.lock)) if (ws.onRemote(n, e.key) === undefined) check(`lock: ${n}`, e)
  for (const { entry } of ws.runs.list()) check(`run-cache: ${entry.stage} ${entry.entry.key.slice(7, 19)}`, entry.entry)
  const damagedEntries = [...ws.runs.damaged()].map(([file, why]) => `${ws.rel(file)} (${why})`)
  ws.stats.save()
  return { objects: objects.length, bytes, corrupt, incomplete, damagedEntries }
}

export interface GcPolicy {
  /** drop run-cache entries created before this date (the lock's are always kept) */
  readonly olderThan?: Date | undefined
  /** drop the oldest run-cache entries until the store is at most this big */
  readonly maxBytes?: number | undefined
  readonly dryRun: boolean
}

export interface GcReport {
  readonly removedEntries: ReadonlyArray<{ readonly stage: string; readonly key: string; readonly createdAt: string }>
  readonly removedObjects: number
  readonly freedBytes: number
  readonly keptBytes: number
  readonly lines: ReadonlyArray<string>
}

/**
 * Without a policy, keeps only what the lock needs. With `olderThan` and/or
 * `maxBytes`, keeps the lock's outputs plus the run-cache entries the policy
 * spares. Leftovers of killed runs (staging, temp files) always go.
 */
export const gc = (ws: Workspace, policy: GcPolicy): GcReport => {
  const lockKeys = new Set(Object.values(ws.lock).map((e) => e.key))
  const entries = [...ws.runs.list()].sort((a, b) => (a.entry.createdAt < b.entry.createdAt ? 1 : -1)) // newest first
  const objects = new Map([...ws.store.listObjects()].map((o) => [o.digest, o.size]))
  const objectsOf = (e: LockEntry): Array<Digest> => e.outputs.flatMap((o) => ws.store.objectsOf(o))
  const needed = new Set<Digest>()
  for (const e of Object.values(ws.lock)) for (const d of objectsOf(e)) needed.add(d)
  const keepEntries = new Set<string>()
  const noPolicy = policy.olderThan === undefined && policy.maxBytes === undefined
  let keptBytes = [...needed].reduce((a, d) => a + (objects.get(d) ?? 0), 0)
  for (const { file, entry } of entries) {
    if (lockKeys.has(entry.entry.key)) {
      keepEntries.add(file)
      continue
    }
    if (noPolicy) continue
    if (policy.olderThan && new Date(entry.createdAt) < policy.olderThan) continue
    const extra = objectsOf(entry.entry).filter((d) => !needed.has(d))
    const extraBytes = [...new Set(extra)].reduce((a, d) => a + (objects.get(d) ?? 0), 0)
    if (policy.maxBytes !== undefined && keptBytes + extraBytes > policy.maxBytes) continue
    keepEntries.add(file)
    keptBytes += extraBytes
    for (const d of extra) needed.add(d)
  }
  const removedEntries = entries
    .filter(({ file }) => !keepEntries.has(file))
    .map(({ entry }) => ({ stage: entry.stage, key: entry.entry.key, createdAt: entry.createdAt }))
  const doomed = [...objects].filter(([d]) => !needed.has(d))
  const freedBytes = doomed.reduce((a, [, s]) => a + s, 0)
  const lines: Array<string> = []
  for (const e of removedEntries) lines.push(`run-cache ${e.stage} ${e.key.slice(7, 19)} (${e.createdAt})`)
  for (const [file, why] of ws.runs.damaged()) lines.push(`damaged run-cache entry ${ws.rel(file)} (${why})`)
  lines.push(`${doomed.length} objects, ${formatBytes(freedBytes)}`)
  if (!policy.dryRun) {
    for (const { file } of entries) if (!keepEntries.has(file)) ws.runs.remove(file)
    for (const file of ws.runs.damaged().keys()) ws.runs.remove(file)
    for (const [d] of doomed) ws.store.remove(d)
    removeTree(ws.store.corruptDir, ws.fs)
    removeTree(ws.tmpDir, ws.fs)
    // half-swapped out/<stage> directories left by a kill between two renames
    if (ws.fs.existsSync(ws.outDir)) for (const n of ws.fs.readdirSync(ws.outDir)) if (/^\..+\.tmp-\d+-[0-9a-f]+$/.test(n)) removeTree(path.join(ws.outDir, n), ws.fs)
    // scratch of stages the pipeline no longer has
    if (ws.fs.existsSync(ws.scratchRoot))
      for (const s of ws.fs.readdirSync(ws.scratchRoot)) if (!ws.dag.byName.has(s)) removeTree(path.join(ws.scratchRoot, s), ws.fs)
    ws.stats.save()
  }
  return { removedEntries, removedObjects: doomed.length, freedBytes, keptBytes, lines }
}
