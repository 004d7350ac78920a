/**
 * The executor runs a plan. Every stage is a fiber that waits for the stages it
 * reads from, takes the resources it declared (memory, GPU) so the machine is
 * never oversubscribed, re-decides with the real digests of its inputs (an
 * upstream rerun that produced the same bytes stops here: early cut-off), and
 * then restores, skips or runs.
 *
 * A run writes into a staging directory; only when the stage succeeds are its
 * outputs moved into the store, recorded in the run-cache, linked into
 * `out/<stage>/` and written to the lock, in that order, so `kill -9` at any
 * moment leaves the store, the run-cache and the lock consistent.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Semaphore from "effect/Semaphore"
import * as os from "node:os"
import * as path from "node:path"
import { randomBytes } from "node:crypto"
import { writeFileAtomic } from "../cache/Atomic.ts"
import { symlinkOnPath } from "../cache/Paths.ts"
import { removeTree, swapInto, treeSize } from "../cache/Store.ts"
import * as Disk from "./DiskBudget.ts"
import { DiskBudgetError, StageFailed, stageErrorFrom } from "./Errors.ts"
import type { FileRec, LockEntry, OutputRec } from "./Lockfile.ts"
import { redact, secretValues } from "./Params.ts"
import { type Decision, decide } from "./Decide.ts"
import * as Dag from "./Dag.ts"
import * as DiskPlan from "./DiskPlan.ts"
import { type Known, knownFromLock, outputState } from "./Fingerprint.ts"
import * as Planner from "./Planner.ts"
import * as Slurm from "./Slurm.ts"
import type * as Params from "./Params.ts"
import { Output, type Console } from "./Progress.ts"
import type { ChildProcesses } from "./Services.ts"
import { memoryMB as runMemoryMB, type AnyStage } from "./Stage.ts"
import { formatBytes, formatSeconds } from "./Units.ts"
import type { Workspace } from "./Workspace.ts"

export type Outcome = "ran" | "cached" | "restored" | "failed" | "skipped"

export interface StageResult {
  readonly name: string
  readonly action: Outcome
  readonly reasons: ReadonlyArray<string>
  readonly seconds: number | null
  readonly bytes: number | null
  readonly error?: string
  /** a stage run as a Slurm job: its id, node, and seconds queued and running */
  readonly job?: Slurm.JobReport
}

const sum = (xs: ReadonlyArray<{ size: number }>) => xs.reduce((a, x) => a + x.size, 0)

/** Builds out/<stage>/ in a temp dir (`build` writes its outputs there), then swaps it in. */
export const materialize = (ws: Workspace, stage: AnyStage, outputs: ReadonlyArray<OutputRec>, build: (dir: string) => void): void => {
  const built = path.join(ws.tmpDir, `mat-${stage.name}-${randomBytes(4).toString("hex")}`)
  ws.fs.mkdirSync(built, { recursive: true })
  try {
    build(built)
    swapInto(built, path.join(ws.outDir, stage.name), ws.fs)
    // the stat cache learnt the built paths; teach it the final ones
    for (const o of outputs) {
      if (o.kind === "file") ws.stats.record(ws.abs(o.path), o.digest)
      else for (const e of ws.store.readTree(o.digest)?.entries ?? []) ws.stats.record(path.join(ws.abs(o.path), e.path), e.digest)
    }
  } finally {
    removeTree(built, ws.fs)
  }
}

/** Scratch space that survives failures; wiped when the stage's key changes. */
const scratchFor = (ws: Workspace, stage: string, key: string): string => {
  const dir = path.join(ws.scratchRoot, stage)
  const keyFile = path.join(dir, ".key")
  let prev: string | undefined
  try {
    prev = ws.fs.readFileSync(keyFile, "utf8")
  } catch {
    prev = undefined
  }
  if (prev !== undefined && prev !== key) removeTree(dir, ws.fs)
  ws.fs.mkdirSync(dir, { recursive: true })
  if (prev !== key) writeFileAtomic(keyFile, key, undefined, ws.fs)
  return dir
}

interface Shared {
  readonly ws: Workspace
  readonly plan: Planner.Plan
  readonly out: Console
  readonly known: Known
  readonly done: Set<string>
  readonly results: Map<string, StageResult>
  readonly gates: Map<string, Deferred.Deferred<boolean>>
  readonly lockWrite: Semaphore.Semaphore
  readonly memory: Semaphore.Semaphore
  readonly memoryMB: number
  readonly gpu: Semaphore.Semaphore
  readonly gpus: number
  failed: boolean
  readonly secrets: ReadonlyArray<string>
  readonly executors: Params.Executors
}

/** Where a stage runs: its own executor, else the default. */
export const executorOf = (executors: Params.Executors, stage: string): Params.ExecutorSpec => executors.stages.get(stage) ?? executors.default

/** Re-runs the disk check for the stages still to run, with the sizes known now. */
const recheckDisk = (sh: Shared, from: string): Effect.Effect<void, DiskBudgetError> => {
  const remaining = sh.plan.stages.filter((s) => s.name === from || (!sh.done.has(s.name) && s.action !== "cached"))
  const sizes = Planner.outputSizes(sh.ws, sh.known)
  const replanned = remaining.map((s) => {
    const bytes = Planner.estimateFor(sh.ws, sh.ws.dag.byName.get(s.name)!, sizes).bytes
    for (const [o, b] of Object.entries(bytes)) sizes.set(`${s.name}.${o}`, b)
    return { ...s, outputBytes: bytes }
  })
  const report = DiskPlan.diskReport(sh.ws, replanned, sizes)
  if (!report.ok) {
    const l = { usedBytes: report.usedBytes, freeBytes: report.freeBytes, budgetBytes: report.budgetBytes ?? undefined }
    return Effect.fail(
      new DiskBudgetError({
        message: `disk check before ${from} failed at stage ${report.peakAtStage}: ${Disk.describeLimits(report, l)}${report.fits.length ? `. Ways to fit: ${report.fits.join("; ")}` : ""}`,
        stage: report.peakAtStage ?? from,
        neededBytes: report.requiredBytes,
        availableBytes: Math.min(report.freeBytes, (report.budgetBytes ?? Infinity) - report.usedBytes),
        fits: [...report.fits]
      })
    )
  }
  return Effect.void
}

/** Deletes temporary outputs once every stage of the plan that reads them has finished. */
const freeTemporaries = (sh: Shared): void => {
  const planned = new Set(sh.plan.stages.map((s) => s.name))
  // Objects that non-temporary outputs share, and those restores still to come need, stay.
  const keep = new Set<string>()
  const protect = (n: string, outputs: ReadonlyArray<OutputRec>) => {
    for (const o of outputs) if (!sh.ws.isTemporaryPath(n, o.path)) for (const d of sh.ws.store.objectsOf(o)) keep.add(d)
  }
  for (const [n, e] of Object.entries(sh.ws.lock)) protect(n, e.outputs)
  for (const [n, outs] of sh.known) protect(n, outs)
  for (const s of sh.plan.stages) if (!sh.done.has(s.name) && s.restore) protect(s.name, s.restore.outputs)
  for (const producer of sh.plan.stages) {
    const stage = sh.ws.dag.byName.get(producer.name)!
    for (const [o, decl] of Object.entries(stage.outputs)) {
      if (!sh.ws.isTemporary(producer.name, o) || producer.name === sh.plan.target) continue
      const readers = sh.ws.dag.stages.filter((c) => planned.has(c.name) && Object.values(c.inputs).some((r) => r.stage === producer.name && r.output === o))
      const succeeded = (r: AnyStage) => ["ran", "cached", "restored"].includes(sh.results.get(r.name)?.action ?? "")
      if (readers.length === 0 || !readers.every(succeeded)) continue
      const rel = `out/${producer.name}/${decl.path}`
      const rec = (sh.known.get(producer.name) ?? []).find((r) => r.path === rel)
      const abs = sh.ws.abs(rel)
      if (!sh.ws.fs.existsSync(abs)) continue
      const link = symlinkOnPath(sh.ws.outDir, abs)
      if (link !== undefined) {
        sh.ws.warn(`${sh.ws.rel(link)} is a symbolic link: temporary ${rel} was left alone (the engine deletes only inside out/<stage>/)`)
        continue
      }
      removeTree(abs, sh.ws.fs)
      sh.ws.stats.forget(abs)
      if (rec) for (const d of sh.ws.store.objectsOf(rec).reverse()) if (!keep.has(d)) sh.ws.store.remove(d)
      sh.out.line(`  ${producer.name}: freed temporary ${rel}${rec ? ` (${formatBytes(rec.size)})` : ""}`)
    }
  }
}

const withLockWrite = <A>(sh: Shared, f: () => A) => sh.lockWrite.withPermits(1)(Effect.sync(f))

/** What a thrown value says, in one line. */
const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const sizeOf = (ws: Workspace, p: string): number => {
  try {
    return ws.fs.statSync(p).isDirectory() ? treeSize(p, ws.fs) : ws.fs.statSync(p).size
  } catch {
    return 0
  }
}

/**
 * A failure caused by a full disk, said as such: the stage, what it had
 * written, what is free, and how much more it needed by its own estimate. A
 * full disk shows up as ENOSPC or EDQUOT, and on some filesystems (FUSE,
 * network mounts) as a bare EIO: that one counts only when the disk is
 * indeed (nearly) full.
 */
export const diskFull = (ws: Workspace, planned: Planner.PlannedStage, written: number, message: string): string | undefined => {
  const code = /\b(ENOSPC|EDQUOT)\b/.exec(message)?.[1] ?? (/no space left on device/i.test(message) ? "ENOSPC" : /quota exceeded/i.test(message) ? "EDQUOT" : undefined)
  const free = DiskPlan.freeBytes(ws)
  const eio = code === undefined && /\bEIO\b|input\/output error/i.test(message) && free < 1024 * 1024
  if (code === undefined && !eio) return undefined
  const needs = planned.estimate.diskBytes + planned.estimate.scratchBytes
  const short = needs - written - free
  return (
    `disk full (${code ?? "EIO with 0 bytes free"}): the workspace's disk ran out of space (${formatBytes(written)} written by the stage, ${formatBytes(free)} free now); ` +
    (short > 0 ? `by its estimate it needs ${formatBytes(needs)}, about ${formatBytes(short)} more than there is` : `it declares only ${formatBytes(needs)}, so its estimate is too low`) +
    ` (${message.replace(/\s+/g, " ").slice(0, 200)})`
  )
}

/** The memory this machine gives stages (resources.memory in the params file, else all of it), in MB. */
export const machineMemoryMB = (ws: Workspace): number => Math.max(1, Math.floor(ws.engine.memoryMB ?? os.totalmem() / 1e6))

/**
 * A line when a stage run here needs more memory than the machine gives (a Qwen3-4B base in fp32
 * on a laptop): said in the plan and when the stage starts, since the kernel would kill it late.
 */
export const memoryShort = (ws: Workspace, stage: AnyStage, estimatedBytes: number): string | undefined => {
  const need = runMemoryMB(stage.resources(ws.params.get(stage.name)), estimatedBytes)
  const have = machineMemoryMB(ws)
  return need > have
    ? `needs about ${formatBytes(need * 1e6)} of memory, more than the ${formatBytes(have * 1e6)} here: it may be killed; run it on a bigger machine (--executor ${stage.name}=slurm)`
    : undefined
}

const runOne = (sh: Shared, planned: Planner.PlannedStage): Effect.Effect<StageResult, DiskBudgetError, ChildProcesses> =>
  Effect.gen(function* () {
    const { ws, out } = sh
    const stage = ws.dag.byName.get(planned.name)!
    // decided again with the real outputs of its upstream; an input that vanished meanwhile fails the stage
    const again = (forced: boolean) =>
      decide(ws, stage, sh.known, forced).pipe(Effect.mapError((e) => new StageFailed({ stage: stage.name, message: e.message })))
    let d: Decision = planned
    if (planned.pending.length > 0) {
      const fresh = yield* Effect.result(again(planned.forced))
      if (fresh._tag === "Failure") {
        out.line(`✗ ${stage.name}: ${fresh.failure.message}`)
        return { name: stage.name, action: "failed", reasons: [], seconds: null, bytes: null, error: fresh.failure.message } satisfies StageResult
      }
      d = planned.forced ? { ...fresh.success, reasons: planned.reasons.filter((r) => !r.startsWith("upstream runs")) } : fresh.success
      // unchanged, but its outputs are not here (temporary and freed, or left on a remote) and a
      // stage that runs reads them: brought back from a cache, else computed again
      if (d.action === "cached" && d.key !== undefined) {
        const entry = ws.lock[stage.name]
        // readers that run for a reason of their own (one that runs only because its upstream did may be cut off)
        const consumers = new Set(Dag.consumers(ws.dag, stage.name))
        const readers = sh.plan.stages.filter((s) => consumers.has(s.name) && s.action === "run" && s.reasons.some((r) => !r.startsWith("upstream runs")))
        const away = entry?.outputs.filter((o) => outputState(ws, o) !== "ok") ?? []
        if (entry !== undefined && readers.length > 0 && away.length > 0) {
          const why = [`output missing: ${away.map((o) => o.path).join(", ")} (needed by ${readers.map((r) => r.name).join(", ")})`]
          const hit = ws.cache.get(stage.name, d.key, { known: entry, needed: (o) => away.includes(o) })
          d = hit
            ? { ...d, action: "restore", source: hit.source, reasons: why, restore: hit.entry, hit }
            : { ...d, action: "run", source: null, reasons: why, restore: undefined }
        }
      }
    }
    if (d.action === "cached" && d.restore !== undefined && d.source !== null) {
      // its result is on a remote and nothing that runs reads it: recorded, not fetched
      const entry = d.restore
      const remote = d.source
      sh.known.set(stage.name, entry.outputs)
      yield* withLockWrite(sh, () => {
        // where first, then the lock: a kill between leaves a record whose key the lock does not have (ignored)
        ws.setOnRemote(stage.name, entry.key, remote)
        if (ws.lock[stage.name]?.key !== entry.key) {
          ws.lock[stage.name] = entry
          ws.writeLock()
        }
      })
      out.line(`  ${stage.name}: cached on remote ${remote} (not fetched: nothing that runs reads it; \`pipeline pull ${stage.name} --only\` fetches it)`)
      return { name: stage.name, action: "cached", reasons: d.reasons, seconds: 0, bytes: 0 } satisfies StageResult
    }
    if (d.action === "cached") {
      const why = planned.pending.length > 0 ? " (inputs unchanged after upstream rerun: early cut-off)" : ""
      out.line(`  ${stage.name}: cached${why}`)
      return { name: stage.name, action: "cached", reasons: [], seconds: 0, bytes: 0 } satisfies StageResult
    }
    if (d.action === "restore" && d.restore) {
      const entry = d.restore
      const started = yield* Clock.currentTimeMillis
      // a freed temporary output is not brought back unless a stage that runs needs it (the plan asks for that)
      let hit = d.hit ?? ws.cache.get(stage.name, entry.key, { known: entry })
      if (hit?.fetch === true) {
        // known from the remote, objects not here yet (the run's prefetch fetches what it can foresee)
        const fetched = ws.fetchFromRemote === undefined ? `no remote to fetch ${stage.name}'s outputs from` : yield* ws.fetchFromRemote(entry.outputs.filter((o) => !ws.isTemporaryPath(stage.name, o.path))).pipe(
          Effect.match({ onSuccess: () => undefined, onFailure: (e) => `fetching ${stage.name}'s outputs from remote ${hit!.source} failed: ${e.message}` })
        )
        if (fetched !== undefined) {
          out.line(`✗ ${stage.name}: ${fetched}`)
          return { name: stage.name, action: "failed", reasons: d.reasons, seconds: null, bytes: null, error: fetched } satisfies StageResult
        }
        hit = ws.cache.get(stage.name, entry.key, { known: entry, needed: (o) => !ws.isTemporaryPath(stage.name, o.path) })
      }
      const wanted = (o: OutputRec) => !(ws.isTemporaryPath(stage.name, o.path) && !(hit?.available(o) ?? false))
      const restored =
        hit === undefined
          ? `${stage.name}'s outputs are no longer in the cache`
          : yield* Effect.try({ try: () => materialize(ws, stage, entry.outputs.filter(wanted), (dir) => hit.apply(dir, stage.name, wanted)), catch: messageOf }).pipe(
              Effect.match({ onSuccess: () => undefined, onFailure: (m) => m })
            )
      if (restored !== undefined) {
        const message = diskFull(ws, planned, 0, restored) ?? `restoring from the cache failed: ${restored}`
        out.line(`✗ ${stage.name}: ${message}`)
        return { name: stage.name, action: "failed", reasons: d.reasons, seconds: null, bytes: null, error: message } satisfies StageResult
      }
      sh.known.set(stage.name, entry.outputs)
      yield* withLockWrite(sh, () => {
        ws.lock[stage.name] = entry
        ws.writeLock()
        ws.setOnRemote(stage.name, entry.key, undefined)
      })
      out.line(`  ${stage.name}: restored from ${d.source ?? "local"} cache (${d.reasons.join("; ")})`)
      return { name: stage.name, action: "restored", reasons: d.reasons, seconds: ((yield* Clock.currentTimeMillis) - started) / 1000, bytes: sum(entry.outputs) } satisfies StageResult
    }
    // ---- run
    yield* recheckDisk(sh, stage.name)
    const fp = d.fingerprint!
    const key = d.key!
    const reasons = d.reasons.filter((r) => !r.startsWith("upstream runs"))
    out.line(`▶ ${stage.name}: running (${reasons.join("; ")})`)
    const staging = path.join(ws.tmpDir, `run-${stage.name}-${randomBytes(4).toString("hex")}`)
    const scratchDir = scratchFor(ws, stage.name, key)
    const outputs: Record<string, string> = {}
    for (const [o, decl] of Object.entries(stage.outputs)) {
      outputs[o] = path.join(staging, decl.path)
      ws.fs.mkdirSync(decl.kind === "dir" ? outputs[o]! : path.dirname(outputs[o]!), { recursive: true })
    }
    const inputs: Record<string, string> = {}
    for (const [k, ref] of Object.entries(stage.inputs)) inputs[k] = ws.abs(ws.outputPath(ref.stage, ref.output))
    const started = yield* Clock.currentTimeMillis
    const progress = out.progressFor(stage.name)
    const log = (line: string) => Effect.sync(() => out.stageLog(stage.name, redact(line, sh.secrets)))
    const where = executorOf(sh.executors, stage.name)
    let job: Slurm.JobReport | undefined
    const body =
      where.kind === "slurm"
        ? Slurm.run(ws, stage, where, { key, code: fp.code, inputs, outputs, scratchDir, progress, log, memoryBytes: planned.estimate.memoryBytes }, (r) => void (job = r))
        : stage.run({ name: stage.name, key, owns: (abs) => ws.owns(abs), params: ws.params.get(stage.name), inputs, outputs, workspace: ws.root, scratchDir, progress, log })
    const ran = yield* body
      .pipe(
        Effect.catchDefect((defect) => Effect.fail(stageErrorFrom(defect))),
        Effect.map(() => undefined),
        Effect.catch((e) => Effect.succeed(stageErrorFrom(e).message)),
        Effect.ensuring(Effect.sync(() => out.finish(stage.name))),
        // interrupted (Ctrl-C, a watch restarting): half-written outputs go; the scratch directory stays for a resume
        Effect.onInterrupt(() => Effect.sync(() => removeTree(staging, ws.fs)))
      )
    const now = yield* Clock.currentTimeMillis
    const seconds = (now - started) / 1000
    const fail = (raw: string): StageResult => {
      const message = diskFull(ws, planned, sizeOf(ws, staging) + sizeOf(ws, scratchDir), raw) ?? raw
      removeTree(staging, ws.fs)
      out.line(`✗ ${stage.name}: failed after ${formatSeconds(seconds)}: ${redact(message, sh.secrets)}`)
      return { name: stage.name, action: "failed", reasons, seconds, bytes: null, error: redact(message, sh.secrets), ...(job ? { job } : {}) }
    }
    if (ran !== undefined) return fail(ran)
    for (const [o, decl] of Object.entries(stage.outputs)) {
      const st = ws.fs.statSync(outputs[o]!, { throwIfNoEntry: false })
      if (!st || (decl.kind === "file" ? !st.isFile() : !st.isDirectory()))
        return fail(`did not write its output ${o} (${decl.kind} out/${stage.name}/${decl.path})`)
    }
    // into the store, the run-cache and out/: a full disk here fails the stage like any other
    let records: Array<OutputRec>
    try {
      records = Object.entries(stage.outputs).map(([o, decl]) => ws.store.ingest(outputs[o]!, `out/${stage.name}/${decl.path}`, decl.kind))
    } catch (e) {
      return fail(messageOf(e))
    }
    const inputsWithSizes: Array<FileRec> = fp.inputs.map((i) => {
      const upstreamRec = [...sh.known.values()].flat().find((r) => r.path === i.path)
      const size = upstreamRec?.size ?? ws.fs.statSync(ws.abs(i.path), { throwIfNoEntry: false })?.size ?? 0
      return { path: i.path, digest: i.digest, size }
    })
    const entry: LockEntry = {
      key,
      params: fp.params,
      code: fp.code,
      versions: fp.versions,
      inputs: inputsWithSizes,
      outputs: records,
      duration: Math.round(seconds * 1000) / 1000
    }
    try {
      ws.cache.put(stage.name, entry, new Date(now))
      const prefix = `out/${stage.name}/`
      materialize(ws, stage, records, (dir) => {
        for (const o of records) ws.store.materialize(o, path.join(dir, o.path.slice(prefix.length)))
      })
    } catch (e) {
      return fail(messageOf(e))
    }
    sh.known.set(stage.name, records)
    yield* withLockWrite(sh, () => {
      ws.lock[stage.name] = entry
      ws.writeLock()
      ws.setOnRemote(stage.name, entry.key, undefined)
    })
    removeTree(scratchDir, ws.fs)
    removeTree(staging, ws.fs)
    const bytes = sum(records)
    out.line(`✓ ${stage.name}: ran in ${formatSeconds(seconds)}${job ? ` as slurm job ${job.jobId}${job.node ? ` on ${job.node}` : ""}` : ""}, wrote ${formatBytes(bytes)}`)
    return { name: stage.name, action: "ran", reasons, seconds, bytes, ...(job ? { job } : {}) } satisfies StageResult
  })

/** Runs every stage of the plan. A stage failure is a result (see firstFailure); only the disk check fails the effect. */
export const execute = (ws: Workspace, plan: Planner.Plan, executors: Params.Executors = ws.engine.executors) =>
  Effect.gen(function* () {
    const out = yield* Output
    const memoryMB = machineMemoryMB(ws)
    const gpus = Math.max(1, ws.engine.gpus)
    const sh: Shared = {
      ws,
      plan,
      out,
      known: knownFromLock(ws),
      done: new Set(),
      results: new Map(),
      gates: new Map(),
      lockWrite: yield* Semaphore.make(1),
      memory: yield* Semaphore.make(memoryMB),
      memoryMB,
      gpu: yield* Semaphore.make(gpus),
      gpus,
      failed: false,
      secrets: secretValues(),
      executors
    }
    for (const s of plan.stages) sh.gates.set(s.name, yield* Deferred.make<boolean>())
    ws.fs.mkdirSync(ws.tmpDir, { recursive: true })
    const one = (planned: Planner.PlannedStage) =>
      Effect.gen(function* () {
        const stage = ws.dag.byName.get(planned.name)!
        const ups = [...new Set(Object.values(stage.inputs).map((r) => r.stage))].filter((u) => sh.gates.has(u))
        let ok = true
        for (const u of ups) ok = (yield* Deferred.await(sh.gates.get(u)!)) && ok
        let result: StageResult
        if (!ok || sh.failed) {
          result = { name: stage.name, action: "skipped", reasons: [ok ? "another stage failed" : "an upstream stage failed"], seconds: null, bytes: null }
          if (planned.action !== "cached") out.line(`  ${stage.name}: skipped (${result.reasons[0]})`)
        } else {
          // a stage on the cluster takes nothing of this machine: the cluster's scheduler decides
          const local = executorOf(sh.executors, stage.name).kind === "local"
          const wants = stage.resources(ws.params.get(stage.name))
          const mem = local ? Math.min(sh.memoryMB, runMemoryMB(wants, planned.estimate.memoryBytes)) : 0
          const short = local ? memoryShort(ws, stage, planned.estimate.memoryBytes) : undefined
          if (short !== undefined) out.line(`warning: ${stage.name} ${short}`)
          const gpu = local ? Math.min(sh.gpus, Math.max(0, wants.gpu ?? 0)) : 0
          let body = runOne(sh, planned)
          if (mem > 0) body = sh.memory.withPermits(mem)(body)
          if (gpu > 0) body = sh.gpu.withPermits(gpu)(body)
          result = yield* body.pipe(
            Effect.catchDefect((defect) =>
              Effect.succeed<StageResult>({ name: stage.name, action: "failed", reasons: [], seconds: null, bytes: null, error: stageErrorFrom(defect).message })
            ),
            Effect.onError(() => Deferred.succeed(sh.gates.get(stage.name)!, false))
          )
        }
        if (result.action === "failed") sh.failed = true
        sh.results.set(stage.name, result)
        sh.done.add(stage.name)
        if (result.action !== "failed" && result.action !== "skipped") yield* withLockWrite(sh, () => freeTemporaries(sh))
        yield* Deferred.succeed(sh.gates.get(stage.name)!, result.action !== "failed" && result.action !== "skipped")
      })
    // what was hashed is remembered even when the run stops early (a failed disk check)
    yield* Effect.forEach(plan.stages, one, { concurrency: "unbounded", discard: true }).pipe(Effect.ensuring(Effect.sync(() => ws.saveCaches())))
    return sh.results
  })

/** The first failure among results, as the error the CLI exits with. */
export const firstFailure = (results: ReadonlyMap<string, StageResult>): StageFailed | undefined => {
  const f = [...results.values()].find((r) => r.action === "failed")
  return f ? new StageFailed({ stage: f.name, message: f.error ?? "failed" }) : undefined
}
