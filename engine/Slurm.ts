/**
 * Running a stage as a Slurm job. Planning, keys, caching, budgets and the
 * lock stay as they are: only the stage's body runs elsewhere.
 *
 * The workspace is on a filesystem the nodes share. The controller writes a
 * job description (stage, key, the plan's code fingerprint, the params file
 * and `--set`s, input and staging paths) and a batch script that runs
 * `pipeline exec-stage <job.json>` on the node with the same Node and project,
 * submits it (`sbatch --parsable`) and polls `scontrol show job` (no
 * accounting database needed), streaming the job's log back with the
 * `[stage]` prefix. On the node the stage writes into the staging directory
 * as it does locally and records how it ended in `result.json`; the
 * controller then stores outputs, run-cache and lock as for a local stage, so
 * a crash anywhere leaves the cache consistent. If the code on the node
 * differs from the plan's, the job fails with that reason. Interrupting the
 * run cancels the job (`scancel`).
 *
 * The executor is not part of the key: a stage run on the cluster and one run
 * locally have the same key and give the same outputs.
 */
import * as Effect from "effect/Effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { canonicalJson } from "../cache/Canonical.ts"
import { writeFileAtomic } from "../cache/Atomic.ts"
import { StageError } from "./Errors.ts"
import type { ExecutorSpec } from "./Params.ts"
import type { Progress } from "./Progress.ts"
import { ChildProcesses } from "./Services.ts"
import { memoryMB, type AnyStage } from "./Stage.ts"
import type { Workspace } from "./Workspace.ts"

export type SlurmSpec = Extract<ExecutorSpec, { kind: "slurm" }>

export interface Job {
  readonly version: 1
  readonly stage: string
  readonly key: string
  readonly code: Readonly<Record<string, string>>
  readonly config: string | undefined
  readonly sets: ReadonlyArray<string>
  readonly inputs: Readonly<Record<string, string>>
  readonly outputs: Readonly<Record<string, string>>
  readonly scratchDir: string
  readonly resultFile: string
}

export interface JobResult {
  readonly ok: boolean
  readonly error?: string
}

/** What the job asks the cluster for: the executor's options and the stage's declared resources. */
export const request = (spec: SlurmSpec, stage: AnyStage, params: unknown, estimatedMemoryBytes = 0): Array<string> => {
  const r: Array<string> = []
  const wants = stage.resources(params)
  const mem = memoryMB(wants, estimatedMemoryBytes)
  if (spec.partition !== undefined) r.push(`--partition=${spec.partition}`)
  if (spec.time !== undefined) r.push(`--time=${spec.time}`)
  const gpus = wants.gpu ?? 0
  if (spec.gres !== undefined) r.push(`--gres=${spec.gres}`)
  else if (gpus > 0) r.push(`--gres=gpu:${gpus}`)
  if (mem > 0) r.push(`--mem=${mem}M`)
  if (spec.cpus !== undefined) r.push(`--cpus-per-task=${spec.cpus}`)
  return [...r, ...spec.extra]
}

/** `sbatch`, `scontrol`, `scancel`, … through the ChildProcesses service; their output as lines. */
const command = (file: string, args: ReadonlyArray<string>, cwd: string) =>
  Effect.gen(function* () {
    const processes = yield* ChildProcesses
    const lines: Array<string> = []
    const r = yield* Effect.tryPromise({
      try: (signal) => processes.exec(file, args, { cwd, env: process.env as Record<string, string>, signal, onLine: (l) => lines.push(l) }),
      catch: (e) => new StageError({ message: `${file}: ${(e as Error).message}` })
    })
    if (r.failed) {
      const why = lines.filter((l) => l.trim() !== "").slice(-1)[0] ?? r.reason ?? `exit ${r.exitCode}`
      return yield* new StageError({ message: `${file} ${args[0] ?? ""}: ${why.replace(/^\w+: error: /, "")}` })
    }
    return lines
  })

/** Why the cluster cannot take this stage (no Slurm here, an unknown partition), or undefined. */
export const preflight = (spec: SlurmSpec, stage: AnyStage, cwd: string): Effect.Effect<string | undefined, never, ChildProcesses> =>
  Effect.gen(function* () {
    const lines = yield* command("sinfo", ["-h", "-o", "%R", ...(spec.partition !== undefined ? ["-p", spec.partition] : [])], cwd)
    if (spec.partition !== undefined && !lines.some((l) => l.trim() === spec.partition))
      return `executors.${stage.name}: Slurm has no partition ${spec.partition} (partitions: ${(yield* command("sinfo", ["-h", "-o", "%R"], cwd)).map((l) => l.trim()).join(", ")})`
    return undefined
  }).pipe(Effect.catch((e) => Effect.succeed(`executors.${stage.name}: cannot reach Slurm (${e.message})`)))

const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"])

const field = (line: string, name: string): string | undefined => new RegExp(`(?:^|\\s)${name}=(\\S*)`).exec(line)?.[1]

export interface JobReport {
  readonly jobId: string
  readonly node: string | undefined
  readonly queuedSeconds: number | undefined
  readonly runSeconds: number | undefined
}

/** Runs `stage` with `ctx`'s inputs and outputs as a Slurm job; fails with a one-line StageError. */
export const run = (
  ws: Workspace,
  stage: AnyStage,
  spec: SlurmSpec,
  ctx: {
    readonly key: string
    /** the planner's estimate of the run's peak memory (Estimate.memoryBytes) */
    readonly memoryBytes: number
    readonly code: Readonly<Record<string, string>>
    readonly inputs: Readonly<Record<string, string>>
    readonly outputs: Readonly<Record<string, string>>
    readonly scratchDir: string
    readonly progress: Progress
    readonly log: (line: string) => Effect.Effect<void>
  },
  report: (r: JobReport) => void
): Effect.Effect<void, StageError, ChildProcesses> =>
  Effect.gen(function* () {
    const dir = path.join(ws.stateDir, "jobs", `${stage.name}-${randomBytes(4).toString("hex")}`)
    fs.mkdirSync(dir, { recursive: true })
    const job: Job = {
      version: 1,
      stage: stage.name,
      key: ctx.key,
      code: ctx.code,
      config: ws.loadedWith.config,
      sets: ws.loadedWith.sets,
      inputs: ctx.inputs,
      outputs: ctx.outputs,
      scratchDir: ctx.scratchDir,
      resultFile: path.join(dir, "result.json")
    }
    const jobFile = path.join(dir, "job.json")
    const logFile = path.join(dir, "job.log")
    writeFileAtomic(jobFile, JSON.stringify(job, null, 2) + "\n")
    const bin = process.argv[1]!
    const script = [
      "#!/bin/sh",
      `#SBATCH --job-name=pipeline-${stage.name}`,
      `#SBATCH --output=${logFile}`,
      ...request(spec, stage, ws.params.get(stage.name), ctx.memoryBytes).map((r) => `#SBATCH ${r}`),
      `cd ${JSON.stringify(ws.root)} || exit 1`,
      `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} exec-stage ${JSON.stringify(jobFile)}`,
      ""
    ].join("\n")
    const scriptFile = path.join(dir, "job.sh")
    writeFileAtomic(scriptFile, script, 0o755)
    const submitted = yield* command("sbatch", ["--parsable", scriptFile], ws.root)
    const jobId = (submitted.find((l) => /^\d+/.test(l.trim())) ?? "").trim().split(";")[0]!
    if (jobId === "") return yield* new StageError({ message: `sbatch did not give a job id (${submitted.join(" ").slice(0, 200)})` })
    // for `status`: a job left behind by a run that was killed before it could cancel it
    writeFileAtomic(path.join(dir, "id"), `${jobId}\n`)
    yield* ctx.log(`slurm job ${jobId} submitted (${request(spec, stage, ws.params.get(stage.name), ctx.memoryBytes).join(" ") || "default partition"})`)

    let offset = 0
    let partial = ""
    const drain = Effect.gen(function* () {
      const st = fs.statSync(logFile, { throwIfNoEntry: false })
      if (st === undefined || st.size <= offset) return
      const fd = fs.openSync(logFile, "r")
      const buf = Buffer.alloc(st.size - offset)
      fs.readSync(fd, buf, 0, buf.length, offset)
      fs.closeSync(fd)
      offset = st.size
      const text = partial + buf.toString("utf8")
      const lines = text.split("\n")
      partial = lines.pop() ?? ""
      for (const l of lines) {
        const p = /^@progress (\d+(?:\.\d+)?) (\d+(?:\.\d+)?) (\S+)(?: (.*))?$/.exec(l)
        if (p) {
          yield* ctx.progress.total(Number(p[2]), p[3]!)
          yield* ctx.progress.update(Number(p[1]), p[4])
        } else yield* ctx.log(l)
      }
    })

    let state = "PENDING"
    let node: string | undefined
    let info = ""
    const poll = Effect.gen(function* () {
      for (;;) {
        yield* drain
        const lines = yield* Effect.orElseSucceed(command("scontrol", ["show", "job", "-o", jobId], ws.root), () => [] as Array<string>)
        info = lines.join(" ")
        state = field(info, "JobState") ?? (fs.existsSync(job.resultFile) ? "COMPLETED" : state)
        const n = field(info, "NodeList")
        if (n !== undefined && n !== "(null)" && n !== "") node = n
        if (TERMINAL.has(state)) break
        // a job no longer known to the controller (MinJobAge passed) has ended: its result says how
        if (lines.length === 0 && fs.existsSync(job.resultFile)) break
        yield* Effect.sleep("500 millis")
      }
      yield* Effect.sleep("100 millis")
      yield* drain
      if (partial !== "") yield* ctx.log(partial)
    })
    yield* poll.pipe(
      // interrupted (Ctrl-C, a watch restarting): the job goes too
      Effect.onInterrupt(() => Effect.orElseSucceed(Effect.asVoid(command("scancel", [jobId], ws.root)), () => undefined))
    )
    const seconds = (name: string) => {
      const v = field(info, name)
      return v === undefined ? undefined : Date.parse(v) / 1000
    }
    const start = seconds("StartTime")
    const end = seconds("EndTime")
    const submit = seconds("SubmitTime")
    report({
      jobId,
      node,
      queuedSeconds: start !== undefined && submit !== undefined ? Math.max(0, start - submit) : undefined,
      runSeconds: start !== undefined && end !== undefined ? Math.max(0, end - start) : undefined
    })
    const result = (() => {
      try {
        return JSON.parse(fs.readFileSync(job.resultFile, "utf8")) as JobResult
      } catch {
        return undefined
      }
    })()
    if (result?.ok === true && state === "COMPLETED") {
      fs.rmSync(dir, { recursive: true, force: true })
      return
    }
    const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").trim().split("\n").filter((l) => !l.startsWith("@progress")).slice(-3).join(" | ") : ""
    const why = result?.error ?? (tail !== "" ? `last lines: ${tail}` : "no log")
    return yield* new StageError({ message: `slurm job ${jobId} ${state}${node ? ` on ${node}` : ""}: ${why} (log: ${ws.rel(logFile)})` })
  })

/**
 * On the node (`pipeline exec-stage JOB`): checks that the code here is the plan's, runs the
 * stage into the staging paths the job names, and records how it ended (atomically).
 */
export const execStage = (ws: Workspace, job: Job): Effect.Effect<boolean, never, ChildProcesses> =>
  Effect.gen(function* () {
    const done = (r: JobResult) => {
      writeFileAtomic(job.resultFile, JSON.stringify(r) + "\n")
      return r.ok
    }
    const stage = ws.dag.byName.get(job.stage)
    if (stage === undefined) return done({ ok: false, error: `no stage ${job.stage} in the pipeline on this node` })
    const here = ws.codeOf(stage)
    if (canonicalJson(here) !== canonicalJson(job.code)) {
      const changed = [...new Set([...Object.keys(here), ...Object.keys(job.code)])].filter((f) => here[f] !== job.code[f])
      return done({ ok: false, error: `the code on this node differs from the plan's (${changed.slice(0, 3).join(", ")}${changed.length > 3 ? ", …" : ""})` })
    }
    const progress: Progress = {
      total: (n, unit) => Effect.sync(() => void (progressState = { total: n, unit })),
      update: (d, note) => Effect.sync(() => console.log(`@progress ${d} ${progressState.total} ${progressState.unit}${note ? ` ${note}` : ""}`))
    }
    let progressState = { total: 0, unit: "steps" }
    const r = yield* stage
      .run({
        name: stage.name,
        key: job.key,
        owns: (abs) => ws.owns(abs),
        params: ws.params.get(stage.name),
        inputs: job.inputs,
        outputs: job.outputs,
        workspace: ws.root,
        scratchDir: job.scratchDir,
        progress,
        log: (line) => Effect.sync(() => console.log(line))
      })
      .pipe(
        Effect.map((): JobResult => ({ ok: true })),
        Effect.catch((e) => Effect.succeed<JobResult>({ ok: false, error: e.message })),
        Effect.catchDefect((d) => Effect.succeed<JobResult>({ ok: false, error: d instanceof Error ? d.message : String(d) }))
      )
    return done(r)
  })

/** Jobs of earlier runs still queued or running (their controller was killed): `stage`, id, state. */
export const leftoverJobs = (ws: Workspace): Effect.Effect<Array<{ stage: string; jobId: string; state: string }>, never, ChildProcesses> =>
  Effect.gen(function* () {
    const root = path.join(ws.stateDir, "jobs")
    if (!fs.existsSync(root)) return []
    const found: Array<{ stage: string; jobId: string }> = []
    for (const d of fs.readdirSync(root)) {
      const id = fs.existsSync(path.join(root, d, "id")) ? fs.readFileSync(path.join(root, d, "id"), "utf8").trim() : ""
      if (/^\d+$/.test(id)) found.push({ stage: d.replace(/-[0-9a-f]{8}$/, ""), jobId: id })
    }
    if (found.length === 0) return []
    const lines = yield* Effect.orElseSucceed(command("squeue", ["-h", "-o", "%i %T"], ws.root), () => [] as Array<string>)
    const states = new Map(lines.map((l) => l.trim().split(/\s+/) as [string, string]))
    return found.filter((f) => states.has(f.jobId)).map((f) => ({ ...f, state: states.get(f.jobId)! }))
  })
