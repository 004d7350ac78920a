/**
 * The remote cache as the engine uses it (cache/Remote.ts has the backends):
 *
 * - `push`: the objects and run-cache entries of the stages' lock entries
 *   that the remote lacks: a HEAD for each first (eight at a time), then the
 *   missing objects, files before the tree manifests that list them, and the
 *   entries last, so an entry on the remote means its objects are there. A
 *   push killed half-way leaves objects the next push finds and skips.
 * - `fetchEntry` / `fetchOutputs`: an entry, then the objects its outputs need
 *   that the local store lacks; each object is checked against its digest on
 *   arrival and only then moved into the store. A corrupt or partial one is
 *   deleted and reported, never stored.
 * - `pull`: the lock's entries of the stages (or only the target's, with
 *   `--only`), fetched and materialised in out/; nothing runs.
 * - `prefetch` (`run --remote`): before a run, the entries of the stages the
 *   plan would run whose key the remote knows, so the plan restores them
 *   instead (`restore (team)`); only the objects of the results something
 *   here needs are fetched, the others stay on the remote.
 *
 * A remote that errors is switched off for the rest of the command with one
 * warning (a cache is an optimisation), except in `push` and `pull`, whose
 * whole job it is: there the error is the command's.
 */
import * as Effect from "effect/Effect"
import * as Semaphore from "effect/Semaphore"
import * as fs from "node:fs"
import * as path from "node:path"
import { randomBytes } from "node:crypto"
import * as Digest from "../cache/Digest.ts"
import { type Backend, entryRel, objectRel, RemoteError } from "../cache/Remote.ts"
import * as Dag from "./Dag.ts"
import { outputState } from "./Fingerprint.ts"
import { materialize } from "./Executor.ts"
import * as Lockfile from "./Lockfile.ts"
import * as Planner from "./Planner.ts"
import { formatBytes } from "./Units.ts"
import type { Workspace } from "./Workspace.ts"

export interface Transfer {
  objects: number
  bytes: number
  /** objects the other side already had */
  present: number
  entries: number
}

const emptyTransfer = (): Transfer => ({ objects: 0, bytes: 0, present: 0, entries: 0 })

export const describe = (verb: string, t: Transfer): string =>
  `${verb} ${t.objects} object${t.objects === 1 ? "" : "s"} (${formatBytes(t.bytes)}) and ${t.entries} entr${t.entries === 1 ? "y" : "ies"}; ${t.present} already there`

/** Every object a lock entry's outputs need, files first, then the trees that list them. */
const objectsOf = (ws: Workspace, stage: string, entry: Lockfile.LockEntry): { files: Array<Digest.Digest>; trees: Array<Digest.Digest>; missing: number } => {
  const files: Array<Digest.Digest> = []
  const trees: Array<Digest.Digest> = []
  let missing = 0
  for (const o of entry.outputs) {
    if (!ws.store.canRestore(o)) {
      // a temporary output freed after its readers ran is not pushed; a pull does not want it
      if (!ws.isTemporaryPath(stage, o.path)) missing++
      continue
    }
    if (o.kind === "file") files.push(o.digest)
    else {
      trees.push(o.digest)
      for (const e of ws.store.readTree(o.digest)?.entries ?? []) files.push(e.digest)
    }
  }
  return { files, trees, missing }
}

/** Pushes the lock entries of `names` and their objects that the remote lacks. */
export const push = (ws: Workspace, remote: Backend, names: ReadonlyArray<string>, log: (line: string) => void): Effect.Effect<Transfer, RemoteError> =>
  Effect.gen(function* () {
    const t = emptyTransfer()
    const entries: Array<[string, Lockfile.LockEntry]> = []
    const files = new Set<Digest.Digest>()
    const trees = new Set<Digest.Digest>()
    for (const name of names) {
      const entry = ws.lock[name]
      if (entry === undefined) continue
      const o = objectsOf(ws, name, entry)
      if (o.missing > 0) {
        log(`${name}: not pushed: ${o.missing} of its outputs are not in the local cache (run it first)`)
        continue
      }
      o.files.forEach((d) => files.add(d))
      o.trees.forEach((d) => trees.add(d))
      entries.push([name, entry])
    }
    const send = (digests: ReadonlyArray<Digest.Digest>) =>
      Effect.gen(function* () {
        const there = yield* Effect.forEach(digests, (d) => remote.has(objectRel(d)), { concurrency: 8 })
        const todo = digests.filter((_, i) => !there[i])
        t.present += digests.length - todo.length
        yield* Effect.forEach(
          todo,
          (d) =>
            Effect.gen(function* () {
              const file = ws.store.objectPath(d)
              yield* remote.putFile(objectRel(d), file)
              t.objects++
              t.bytes += fs.statSync(file).size
            }),
          { concurrency: 4, discard: true }
        )
      })
    yield* send([...files])
    yield* send([...trees])
    for (const [name, entry] of entries) {
      if (yield* remote.has(entryRel(name, entry.key))) continue
      yield* remote.putText(entryRel(name, entry.key), JSON.stringify(entry))
      t.entries++
    }
    return t
  })

/** The remote's entry for a stage's key, checked like a local run-cache entry; undefined when it has none. */
export const fetchEntry = (remote: Backend, stage: string, key: Digest.Digest): Effect.Effect<Lockfile.LockEntry | undefined, RemoteError> =>
  Effect.flatMap(remote.getText(entryRel(stage, key)), (text) => {
    if (text === undefined) return Effect.succeed(undefined)
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch {
      return Effect.fail(new RemoteError({ message: `${remote.url}/${entryRel(stage, key)}: not JSON; it is ignored` }))
    }
    const e = Lockfile.decodeEntry(raw, stage)
    if (typeof e === "string") return Effect.fail(new RemoteError({ message: `${remote.url}/${entryRel(stage, key)}: ${e}; it is ignored` }))
    if (e.key !== key) return Effect.fail(new RemoteError({ message: `${remote.url}/${entryRel(stage, key)}: holds the entry of another key; it is ignored` }))
    return Effect.succeed(e)
  })

/** Fetches one object into the store, checked against its digest as it arrives; a bad one is deleted and reported. */
const fetchObject = (ws: Workspace, remote: Backend, d: Digest.Digest, t: Transfer): Effect.Effect<void, RemoteError> =>
  Effect.suspend(() => {
    if (ws.store.intact(d)) {
      t.present++
      return Effect.void
    }
    fs.mkdirSync(ws.tmpDir, { recursive: true })
    const tmp = path.join(ws.tmpDir, `fetch-${Digest.digestHex(d).slice(0, 16)}-${randomBytes(4).toString("hex")}`)
    const hash = Digest.incremental()
    let bytes = 0
    return Effect.gen(function* () {
      const got = yield* remote.getFile(objectRel(d), tmp, (c) => {
        hash.update(c)
        bytes += c.byteLength
      })
      if (got === false) return yield* new RemoteError({ message: `${remote.url}/${objectRel(d)}: missing on the remote (an entry names it)` })
      // hashed as it streamed in, else read back once
      const actual = got === "streamed" ? { digest: hash.digest(), bytes } : Digest.ofFile(tmp)
      if (actual.digest !== d) return yield* new RemoteError({ message: `${remote.url}/${objectRel(d)}: its bytes do not match its digest (corrupt or partial); discarded` })
      yield* Effect.try({
        try: () => ws.store.ingestHashed(tmp, d),
        catch: (e) => new RemoteError({ message: `${objectRel(d)}: could not enter the store: ${(e as Error).message}` })
      })
      t.objects++
      t.bytes += actual.bytes
    }).pipe(
      // a failure, a bad digest or an interruption leaves no download behind (a try/finally in a
      // generator does not run when a yielded effect fails)
      Effect.ensuring(Effect.sync(() => fs.rmSync(tmp, { force: true })))
    )
  })

/**
 * How many objects are fetched at once: small ones four at a time (their cost is the round trip),
 * a large one on its own. Measured on 2 cores, pulling 1.25 GiB from nginx on loopback: 1.6–1.8 s
 * one at a time, 1.5–2.9 s two at a time, 2.4–3.0 s four at a time (one stream keeps the
 * receiving core busy; more streams only add switching between the server and us).
 */
const FETCH_SLOTS = 4
const LARGE_OBJECT = 16 * 1024 * 1024
const slotsFor = (size: number): number => (size >= LARGE_OBJECT ? FETCH_SLOTS : 1)

/** Fetches the objects the outputs need that the store lacks: the trees first, then every file (FETCH_SLOTS). */
export const fetchOutputs = (ws: Workspace, remote: Backend, outputs: ReadonlyArray<Lockfile.OutputRec>, t: Transfer): Effect.Effect<void, RemoteError> =>
  Effect.gen(function* () {
    const files = new Map<Digest.Digest, number>()
    for (const o of outputs) {
      if (ws.store.canRestore(o)) {
        t.present += ws.store.objectsOf(o).length
        continue
      }
      if (o.kind === "file") {
        files.set(o.digest, o.size)
        continue
      }
      yield* fetchObject(ws, remote, o.digest, t)
      const tree = ws.store.readTree(o.digest)
      if (tree === undefined) return yield* new RemoteError({ message: `${remote.url}/${objectRel(o.digest)}: not a valid tree; discarded` })
      for (const e of tree.entries) files.set(e.digest, e.size)
    }
    const slots = yield* Semaphore.make(FETCH_SLOTS)
    yield* Effect.forEach(files, ([d, size]) => slots.withPermits(slotsFor(size))(fetchObject(ws, remote, d, t)), { concurrency: FETCH_SLOTS, discard: true })
  })

/** Whether out/ holds exactly the outputs (the planner's own check, through the stat cache). */
const inPlace = (ws: Workspace, outputs: ReadonlyArray<Lockfile.OutputRec>) => outputs.every((o) => outputState(ws, o) === "ok")

/**
 * Pulls the lock's entries for `target`'s closure (every stage without a target; only the
 * target with `only`) and materialises them in out/. Stages the lock does not know are named.
 */
export const pull = (
  ws: Workspace,
  remote: Backend,
  target: string | undefined,
  only: boolean,
  log: (line: string) => void
): Effect.Effect<Transfer, RemoteError | import("./Errors.ts").GraphError> =>
  Effect.gen(function* () {
    const names = only && target !== undefined ? [target] : yield* Dag.closure(ws.dag, target)
    const t = emptyTransfer()
    const absent = names.filter((n) => ws.lock[n] === undefined)
    if (absent.length > 0) log(`not in pipeline.lock, nothing to pull: ${absent.join(", ")}`)
    const known = names.filter((n) => ws.lock[n] !== undefined)
    // temporary outputs are freed once read: out/ does not keep them, and neither does a pull
    const kept = (name: string) => (o: Lockfile.OutputRec) => !ws.isTemporaryPath(name, o.path)
    // every object first (four at a time across stages), then out/, stage by stage
    yield* fetchOutputs(ws, remote, known.flatMap((n) => ws.lock[n]!.outputs.filter(kept(n))), t)
    for (const name of known) {
      const entry = ws.lock[name]!
      const stage = ws.dag.byName.get(name)!
      const outputs = entry.outputs.filter(kept(name))
      ws.runs.put(name, entry, new Date())
      t.entries++
      if (ws.onRemote(name, entry.key) !== undefined) ws.setOnRemote(name, entry.key, undefined)
      if (inPlace(ws, outputs)) continue
      yield* Effect.try({
        try: () => materialize(ws, stage, outputs, (dir) => ws.cache.get(name, entry.key, { known: entry, needed: kept(name) })!.apply(dir, name, kept(name))),
        catch: (e) => new RemoteError({ message: `${name}: materialising its outputs failed: ${(e as Error).message}` })
      })
      log(`${name}: pulled`)
    }
    ws.saveCaches()
    return t
  })

/**
 * Before a run, in two steps. Entries: for each stage the plan would run whose key is known, the
 * remote is asked for its entry (a small JSON file), and the plan is made again with what it
 * said, until no more stage becomes known; a stage known from the remote counts as restorable, so
 * its downstream's key is known too. Objects: only the results the plan then still restores, the
 * target (without one, what nothing else reads) and the inputs of stages that run, are fetched;
 * the rest stay on the remote (the plan says so, and the run records it). Returns what it fetched;
 * on a remote error it warns and stops (the run goes on without the remote).
 */
export const prefetch = (
  ws: Workspace,
  remote: Backend,
  options: Planner.PlanOptions,
  warn: (line: string) => void
): Effect.Effect<{ transfer: Transfer; stages: Array<string>; ok: boolean }> =>
  Effect.suspend(() => {
  const t = emptyTransfer()
  const stages: Array<string> = []
  return Effect.gen(function* () {
    const asked = new Set<string>()
    const planNow = Effect.orElseSucceed(Planner.plan(ws, { ...options, skipDisk: true, planDespitePreflight: true }), () => undefined)
    for (;;) {
      // entries, until the plan stops learning keys
      for (;;) {
        const plan = yield* planNow
        if (plan === undefined) break
        const candidates = plan.stages.filter((s) => s.action === "run" && s.key !== undefined && !s.forced && !asked.has(`${s.name} ${s.key}`))
        if (candidates.length === 0) break
        for (const s of candidates) asked.add(`${s.name} ${s.key}`)
        const entries = yield* Effect.forEach(candidates, (s) => fetchEntry(remote, s.name, s.key!), { concurrency: 8 })
        let found = false
        candidates.forEach((s, i) => {
          const entry = entries[i]
          if (entry === undefined) return
          ws.remoteEntries.set(`${s.name} ${s.key}`, { name: remote.name, entry })
          t.entries++
          found = true
        })
        if (!found) break
      }
      // objects, of the results the plan restores from the remote
      const plan = yield* planNow
      const toFetch = plan?.stages.filter((s) => s.action === "restore" && s.hit?.fetch === true && s.restore !== undefined) ?? []
      let dropped = false
      for (const s of toFetch) {
        const entry = s.restore!
        const whole = yield* fetchOutputs(ws, remote, entry.outputs, t).pipe(
          Effect.as(true),
          // an entry whose objects the remote does not all hold (a temporary output nobody pushed) cannot restore
          Effect.catchIf((e) => e.message.includes("missing on the remote"), () => Effect.succeed(false))
        )
        if (!whole) {
          ws.remoteEntries.delete(`${s.name} ${entry.key}`)
          dropped = true
          continue
        }
        ws.runs.put(s.name, entry, new Date())
        stages.push(s.name)
      }
      // a result that could not be had runs instead: what it feeds is planned again
      if (!dropped) break
    }
    return { transfer: t, stages, ok: true }
  }).pipe(
    Effect.catch((e: RemoteError) =>
      Effect.sync(() => {
        warn(`remote ${remote.name} (${remote.url}): ${e.message}; going on without it`)
        // what it knew but did not fetch cannot be restored without it
        for (const k of [...ws.remoteEntries.keys()]) if (!stages.includes(k.split(" ")[0]!)) ws.remoteEntries.delete(k)
        return { transfer: t, stages, ok: false }
      })
    )
  )
  })

/**
 * Of the stages a plan runs, those whose key the remote has an entry for (asking only; nothing
 * is fetched). A stage waiting on its upstream, with nothing of its own changed, is asked for
 * the key pipeline.lock records: the key it gets when its upstream restores to the lock's outputs.
 */
export const restorable = (ws: Workspace, remote: Backend, plan: Planner.Plan): Effect.Effect<Array<string>, RemoteError> =>
  Effect.map(
    Effect.forEach(
      plan.stages.flatMap((s) => {
        if (s.action === "cached") return []
        const key = s.key ?? (s.reasons.every((r) => r.startsWith("upstream runs")) ? ws.lock[s.name]?.key : undefined)
        return key === undefined ? [] : [{ name: s.name, key }]
      }),
      (s) => Effect.map(remote.has(entryRel(s.name, s.key)), (has) => (has ? [s.name] : [])),
      { concurrency: 8 }
    ),
    (xs) => xs.flat()
  )
