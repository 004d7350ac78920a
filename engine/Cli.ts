/**
 * The `pipeline` command line: a thin layer over the engine's Effect API.
 *
 *   pipeline run [TARGET] [--dry-run] [--json] [-f] [--force-downstream] [--config FILE] [--set k=v]... [--wait]
 *                [--remote NAME|URL|none] [--executor slurm|STAGE=slurm]... [--ci]
 *   pipeline status [TARGET] [--json] [--ci]
 *   pipeline push [TARGET] [--remote NAME|URL]
 *   pipeline pull [TARGET] [--only] [--remote NAME|URL]
 *   pipeline metrics diff [REV] [--json] [--remote NAME|URL]
 *   pipeline params diff [REV] [--json]
 *   pipeline report [--out FILE]
 *   pipeline watch [TARGET] [--debounce MS] [--config FILE] [--set k=v]...
 *   pipeline dag [--format text|mermaid]
 *   pipeline verify
 *   pipeline gc [--older-than DATE|AGE] [--max-size SIZE] [--dry-run]
 *
 * Exit codes: 0 success; 1 a stage failed (or verify found damage); 2 usage or
 * config error; 3 disk budget or another pre-flight check failed; 4 `status
 * --ci` found the lock stale.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Cause from "effect/Cause"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import { Argument, CliOutput, Command, Flag } from "effect/cli"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as fs from "node:fs"
import * as Dag from "./Dag.ts"
import {
  ConfigError,
  CorruptCacheError,
  exitCode,
  RemoteFailed,
  GraphError,
  render,
  StageFailed,
  StaleLockError,
  UsageError,
  type PipelineError
} from "./Errors.ts"
import * as Executor from "./Executor.ts"
import * as Remote from "./Remote.ts"
import * as Compare from "./Compare.ts"
import * as Report from "./Report.ts"
import * as Watch from "./Watch.ts"
import * as Slurm from "./Slurm.ts"
import * as Params from "./Params.ts"
import { writeFileAtomic } from "../cache/Atomic.ts"
import * as RemoteBackends from "../cache/Remote.ts"
import * as Maintenance from "./Maintenance.ts"
import * as Planner from "./Planner.ts"
import * as PlanView from "./PlanView.ts"
import { Output } from "./Progress.ts"
import { ChildProcesses, FileSystem } from "./Services.ts"
import type { AnyStage } from "./Stage.ts"
import { formatBytes, formatSeconds, parseBytes } from "./Units.ts"
import * as WorkspaceLock from "./WorkspaceLock.ts"
import { Workspace } from "./Workspace.ts"

const KNOWN = new Set(["ConfigError", "UsageError", "GraphError", "DiskBudgetError", "WorkspaceLockedError", "StageFailed", "StaleLockError", "CorruptCacheError", "RemoteFailed"])
const isPipelineError = (u: unknown): u is PipelineError => typeof u === "object" && u !== null && KNOWN.has((u as { _tag?: string })._tag ?? "")

/** Runs code that may throw our tagged errors; anything else stays a defect (a bug). */
const attempt = <A>(f: () => A): Effect.Effect<A, PipelineError> =>
  Effect.try({ try: f, catch: (e) => e }).pipe(Effect.catch((e) => (isPipelineError(e) ? Effect.fail(e) : Effect.die(e))))

export interface Definition {
  readonly root: string
  readonly stages: ReadonlyArray<AnyStage>
  readonly version?: string
}

const loadWorkspace = (def: Definition, config: Option.Option<string>, sets: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const files = yield* FileSystem
    return yield* Workspace.load(def.root, def.stages, { root: def.root, config: Option.getOrUndefined(config), sets, fs: files })
  })

const configFlag = Flag.String("config").pipe(Flag.withDescription("params file (default pipeline.yaml)"), Flag.optional)
const setFlag = Flag.String("set").pipe(Flag.withDescription("override a param for this run: --set train.lr=1e-4"), Flag.atLeast(0))
const jsonFlag = Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("print JSON"))
const remoteFlag = Flag.String("remote").pipe(
  Flag.withDescription("a remote cache: a name from pipeline.yaml's remotes, a URL (s3://bucket/prefix, http(s)://host/path, file:///dir), or none"),
  Flag.optional
)

/** Stages the plan runs on Slurm that the cluster cannot take (no Slurm, an unknown partition), checked before anything runs. */
const clusterProblems = (ws: Workspace, plan: Planner.Plan, executors: Params.Executors) =>
  Effect.map(
    Effect.forEach(
      plan.stages.filter((s) => s.action === "run" && Executor.executorOf(executors, s.name).kind === "slurm"),
      (s) => Slurm.preflight(Executor.executorOf(executors, s.name) as Slurm.SlurmSpec, ws.dag.byName.get(s.name)!, ws.root),
      { concurrency: 4 }
    ),
    (xs) => [...new Set(xs.filter((x): x is string => x !== undefined))]
  )

/**
 * The remote a command talks to: `--remote NAME` or URL; without it, the one remote configured
 * or the one marked `default: true` when `fallback`, else none. `--remote none`: none.
 */
const selectRemote = (ws: Workspace, flag: Option.Option<string>, fallback: boolean): Effect.Effect<RemoteBackends.Backend | undefined, ConfigError> => {
  const remotes = ws.engine.remotes
  const asked = Option.getOrUndefined(flag)
  const names = [...remotes.keys()]
  if (asked === undefined) {
    if (!fallback || remotes.size === 0) return Effect.succeed(undefined)
    const pick = remotes.size === 1 ? names[0]! : names.find((n) => remotes.get(n)!.default)
    if (pick === undefined) return Effect.fail(new ConfigError({ message: `${remotes.size} remotes are configured (${names.join(", ")}) and none is marked default: true; pick one with --remote` }))
    return Effect.succeed(RemoteBackends.open(pick, remotes.get(pick)!))
  }
  if (asked === "none") return Effect.succeed(undefined)
  const spec = remotes.get(asked)
  if (spec !== undefined) return Effect.succeed(RemoteBackends.open(asked, spec))
  if (!/^(s3|https?|file):\/\//.test(asked)) return Effect.fail(new ConfigError({ message: `--remote ${asked}: no such remote in ${ws.configName} (remotes: ${names.join(", ") || "none"}); or give a URL` }))
  const problem = RemoteBackends.urlProblem(asked)
  if (problem !== undefined) return Effect.fail(new ConfigError({ message: `--remote ${problem}` }))
  return Effect.succeed(RemoteBackends.open("remote", { url: asked }))
}

const targetArg = Argument.String("target").pipe(Argument.withDescription("stage to bring up to date (default: all)"), Argument.optional)

const checkTarget = (ws: Workspace, target: Option.Option<string>): Effect.Effect<string | undefined, UsageError> => {
  const t = Option.getOrUndefined(target)
  return t !== undefined && !ws.dag.byName.has(t)
    ? Effect.fail(new UsageError({ message: `unknown stage ${t} (stages: ${ws.dag.order.join(", ")})` }))
    : Effect.succeed(t)
}

const runCommand = (def: Definition) =>
  Command.make(
    "run",
    {
      target: targetArg,
      dryRun: Flag.Boolean("dry-run").pipe(Flag.withDefault(false), Flag.withDescription("print the plan; run and write nothing")),
      json: jsonFlag,
      force: Flag.Boolean("force").pipe(Flag.withDefault(false), Flag.withAlias("f"), Flag.withDescription("rerun the target even if it is up to date")),
      forceDownstream: Flag.Boolean("force-downstream").pipe(Flag.withDefault(false), Flag.withDescription("rerun everything after the first stage that runs")),
      config: configFlag,
      set: setFlag,
      wait: Flag.Boolean("wait").pipe(Flag.withDefault(false), Flag.withDescription("wait for another run to release the workspace instead of failing")),
      remote: remoteFlag,
      executor: Flag.String("executor").pipe(
        Flag.withDescription("where stages run: slurm (every stage), train=slurm (one), local; over the params file's executors"),
        Flag.atLeast(0)
      ),
      ci: Flag.Boolean("ci").pipe(Flag.withDefault(false), Flag.withDescription("non-interactive: plain lines, no progress redraw (CI logs)"))
    },
    (o) =>
      Effect.gen(function* () {
        const ws = yield* loadWorkspace(def, o.config, o.set)
        const target = yield* checkTarget(ws, o.target)
        const options = { target, force: o.force, forceDownstream: o.forceDownstream }
        const executors = Params.overrideExecutors(ws.engine.executors, o.executor)
        if (typeof executors === "string") return yield* new UsageError({ message: executors })
        const remote = yield* selectRemote(ws, o.remote, true)
        if (o.dryRun) {
          // the plan is shown even when a pre-flight check fails (a profile for a GPU, planned on a laptop)
          const plan = yield* Planner.plan(ws, { ...options, planDespitePreflight: true })
          const problems = [...Planner.preflightProblems(ws, plan.stages.map((s) => s.name)), ...(yield* clusterProblems(ws, plan, executors))]
          const previews = new Map(problems.length === 0 ? yield* Planner.previews(ws, plan) : [])
          for (const s of plan.stages) {
            const where = Executor.executorOf(executors, s.name)
            if (where.kind === "slurm" && s.action === "run")
              previews.set(s.name, [`on slurm: ${Slurm.request(where, ws.dag.byName.get(s.name)!, ws.params.get(s.name), s.estimate.memoryBytes).join(" ") || "the default partition"}`, ...(previews.get(s.name) ?? [])])
            const short = where.kind === "local" && s.action === "run" ? Executor.memoryShort(ws, ws.dag.byName.get(s.name)!, s.estimate.memoryBytes) : undefined
            if (short !== undefined) previews.set(s.name, [...(previews.get(s.name) ?? []), short])
          }
          if (o.json) console.log(JSON.stringify({ ...PlanView.toJson(plan, undefined, previews), preflight: problems }, null, 2))
          else console.log([...PlanView.render(plan, previews), ...problems.map((p) => `pre-flight: ${p}`)].join("\n"))
          if (remote !== undefined && !o.json) {
            const can = yield* Effect.orElseSucceed(Remote.restorable(ws, remote, plan), () => undefined)
            console.log(can === undefined ? `remote ${remote.name}: cannot be reached` : `remote ${remote.name} can restore: ${can.length === 0 ? "none of the stages that run" : can.join(", ")}${can.length > 0 ? " (and what they make computable after)" : ""}`)
          }
          // the exit code the real run would have at its pre-flight check, so CI can gate on a dry run
          if (plan.totals.stagesToRun > 0 && !plan.disk.ok) return yield* PlanView.budgetError(plan)
          if (problems.length > 0) return yield* new ConfigError({ message: problems[0]! })
          return
        }
        yield* Effect.scoped(
          Effect.gen(function* () {
            yield* WorkspaceLock.acquire(ws.stateDir, { wait: o.wait, command: `run${target ? ` ${target}` : ""}` })
            const out = yield* Output
            let pushTo = remote
            const remoteJson: { name?: string; url?: string; fetched?: Remote.Transfer; restored?: Array<string>; pushed?: Remote.Transfer; error?: string } = {}
            if (remote !== undefined) {
              Object.assign(remoteJson, { name: remote.name, url: remote.url })
              const got = yield* Remote.prefetch(ws, remote, options, (l) => {
                remoteJson.error = l
                out.line(`warning: ${l}`)
              })
              if (!got.ok) pushTo = undefined
              else {
                // a stage decided again once its upstream has run may find its result there too
                ws.fetchFromRemote = (outputs) => Remote.fetchOutputs(ws, remote, outputs, got.transfer)
                Object.assign(remoteJson, { fetched: got.transfer, restored: got.stages })
                if (got.stages.length > 0) out.line(`remote ${remote.name}: ${Remote.describe("fetched", got.transfer)} for ${got.stages.join(", ")}`)
              }
            }
            const withRemote = <A extends object>(j: A) => (remote === undefined ? j : { ...j, remote: remoteJson })
            const plan = yield* Planner.plan(ws, options)
            const cluster = yield* clusterProblems(ws, plan, executors)
            if (cluster.length > 0) return yield* new ConfigError({ message: cluster[0]! })
            // a result left on the remote by this plan is recorded by the executor (lock and .pipeline/on-remote.json)
            const toRecord = plan.stages.some((s) => s.action === "cached" && s.source !== null && s.restore !== undefined && ws.onRemote(s.name, s.restore.key) === undefined)
            if (plan.totals.stagesToRun === 0 && !toRecord) {
              for (const s of plan.stages) out.line(`  ${s.name}: cached`)
              out.line(`nothing to do: ${plan.stages.length} stages up to date`)
              ws.saveCaches()
              if (o.json) console.log(JSON.stringify(withRemote(PlanView.toJson(plan, new Map(plan.stages.map((s) => [s.name, { action: "cached", bytes: 0, seconds: 0 }])))), null, 2))
              return
            }
            for (const l of PlanView.render(plan)) out.line(l)
            if (!plan.disk.ok) return yield* PlanView.budgetError(plan)
            const started = Date.now()
            const results = yield* Executor.execute(ws, plan, executors)
            const counts = new Map<string, number>()
            for (const r of results.values()) counts.set(r.action, (counts.get(r.action) ?? 0) + 1)
            out.line(`done in ${formatSeconds((Date.now() - started) / 1000)}: ${[...counts].map(([a, n]) => `${n} ${a}`).join(", ")}`)
            const ran = [...results.values()].filter((r) => r.action === "ran").map((r) => r.name)
            if (pushTo !== undefined && ran.length > 0) {
              const pushed = yield* Effect.result(Remote.push(ws, pushTo, ran, (l) => out.line(`warning: ${l}`)))
              out.line(Result.isSuccess(pushed) ? `remote ${pushTo.name}: ${Remote.describe("pushed", pushed.success)}` : `warning: remote ${pushTo.name}: ${pushed.failure.message}; not pushed`)
              if (Result.isSuccess(pushed)) remoteJson.pushed = pushed.success
              else remoteJson.error = pushed.failure.message
            }
            if (o.json) console.log(JSON.stringify(withRemote(PlanView.toJson(plan, results)), null, 2))
            const failure = Executor.firstFailure(results)
            if (failure) return yield* failure
          })
        ).pipe(Effect.provide(o.ci ? Output.plain(o.json ? process.stderr : process.stdout) : o.json ? Output.stderr : Output.stdout))
      })
  ).pipe(Command.withDescription("bring the target (default: every stage) up to date"))

/** The outputs stages declared as metrics, read from out/ (JSON files; other formats by name only). */
const declaredMetrics = (ws: Workspace, names: ReadonlyArray<string>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const n of names) {
    const stage = ws.dag.byName.get(n)!
    for (const o of Object.values(stage.outputs)) {
      if (!o.metrics) continue
      const rel = `out/${n}/${o.path}`
      try {
        const text = fs.readFileSync(ws.abs(rel), "utf8")
        out[rel] = rel.endsWith(".jsonl") ? text.trim().split("\n").slice(-1).map((l) => JSON.parse(l))[0] : JSON.parse(text)
      } catch {
        /* not produced yet */
      }
    }
  }
  return out
}

const statusCommand = (def: Definition) =>
  Command.make(
    "status",
    {
      target: targetArg,
      json: jsonFlag,
      ci: Flag.Boolean("ci").pipe(Flag.withDefault(false), Flag.withDescription("exit 4 when any stage is stale")),
      config: configFlag,
      set: setFlag,
      remote: remoteFlag
    },
    (o) =>
      Effect.gen(function* () {
        const ws = yield* loadWorkspace(def, o.config, o.set)
        const target = yield* checkTarget(ws, o.target)
        const plan = yield* Planner.plan(ws, { target, skipDisk: true })
        const stale = plan.stages.filter((s) => s.action !== "cached")
        const metrics = declaredMetrics(ws, plan.stages.map((s) => s.name))
        if (o.json) {
          console.log(JSON.stringify({ ...PlanView.toJson(plan), metrics }, null, 2))
        } else {
          const width = Math.max(...plan.stages.map((s) => s.name.length))
          for (const s of plan.stages)
            console.log(`  ${PlanView.pad(s.name, width)}  ${s.action === "cached" ? `up to date${s.source !== null ? ` (outputs on remote ${s.source}: pipeline pull ${s.name} --only)` : ""}` : `stale (${s.action === "restore" ? "restorable from cache: " : ""}${s.reasons.join("; ")})`}`)
          console.log(stale.length === 0 ? "everything is up to date" : `${stale.length} of ${plan.stages.length} stages stale`)
          for (const l of PlanView.metricsTable(metrics)) console.log(l)
        }
        if (!o.json)
          for (const j of yield* Slurm.leftoverJobs(ws)) console.log(`slurm job ${j.jobId} (${j.stage}) is still ${j.state.toLowerCase()} from an earlier run; scancel ${j.jobId} to stop it`)
        const remote = yield* selectRemote(ws, o.remote, true)
        if (remote !== undefined && stale.length > 0 && !o.json) {
          const can = yield* Effect.orElseSucceed(Remote.restorable(ws, remote, plan), () => undefined)
          remote.close()
          console.log(can === undefined ? `remote ${remote.name} (${remote.url}): cannot be reached` : `remote ${remote.name} can restore: ${can.length === 0 ? "none of the stale stages" : can.join(", ")}`)
        }
        if (o.ci && stale.length > 0) return yield* new StaleLockError({ message: `${stale.length} stages are stale: ${stale.map((s) => s.name).join(", ")}` })
      })
  ).pipe(Command.withDescription("what is stale and why (no side effects)"))

/** The remote push and pull talk to: `--remote`, else the default one; a config error when there is none. */
const requireRemote = (ws: Workspace, flag: Option.Option<string>) =>
  Effect.flatMap(selectRemote(ws, flag, true), (r) =>
    r === undefined ? Effect.fail(new ConfigError({ message: `no remote: add one to ${ws.configName} (remotes: { team: { url: s3://bucket/prefix } }) or give --remote URL` })) : Effect.succeed(r)
  )

const pushCommand = (def: Definition) =>
  Command.make(
    "push",
    { target: targetArg, remote: remoteFlag, config: configFlag, set: setFlag },
    (o) =>
      Effect.gen(function* () {
        const ws = yield* loadWorkspace(def, o.config, o.set)
        const target = yield* checkTarget(ws, o.target)
        const remote = yield* requireRemote(ws, o.remote)
        const names = yield* Dag.closure(ws.dag, target)
        const t = yield* Remote.push(ws, remote, names, (l) => console.log(l)).pipe(
          Effect.mapError((e) => new RemoteFailed({ message: `push to ${remote.name}: ${e.message} (what was sent stays; push again to go on)` })),
          Effect.ensuring(Effect.sync(() => remote.close()))
        )
        console.log(`${remote.name} (${remote.url}): ${Remote.describe("pushed", t)}`)
      })
  ).pipe(Command.withDescription("upload the target's outputs and run-cache entries (default: every stage) that the remote lacks"))

const pullCommand = (def: Definition) =>
  Command.make(
    "pull",
    {
      target: targetArg,
      only: Flag.Boolean("only").pipe(Flag.withDefault(false), Flag.withDescription("the target's own outputs, not its ancestors'")),
      remote: remoteFlag,
      config: configFlag,
      set: setFlag
    },
    (o) =>
      Effect.gen(function* () {
        const ws = yield* loadWorkspace(def, o.config, o.set)
        const target = yield* checkTarget(ws, o.target)
        if (o.only && target === undefined) return yield* new UsageError({ message: "pull --only needs a target stage" })
        const remote = yield* requireRemote(ws, o.remote)
        const t = yield* Effect.scoped(
          Effect.andThen(
            WorkspaceLock.acquire(ws.stateDir, { wait: false, command: `pull${target ? ` ${target}` : ""}` }),
            Remote.pull(ws, remote, target, o.only, (l) => console.log(l)).pipe(
              Effect.mapError((e) => (e._tag === "RemoteError" ? new RemoteFailed({ message: `pull from ${remote.name}: ${e.message} (what arrived intact stays; pull again to go on)` }) : e)),
              Effect.ensuring(Effect.sync(() => remote.close()))
            )
          )
        )
        console.log(`${remote.name} (${remote.url}): ${Remote.describe("fetched", t)}`)
      })
  ).pipe(Command.withDescription("fetch the target's outputs as pipeline.lock records them (default: every stage) and put them in out/"))

const revArg = Argument.String("rev").pipe(Argument.withDescription("a git revision (default HEAD)"), Argument.optional)

const metricsCommand = (def: Definition) =>
  Command.make("metrics").pipe(
    Command.withSubcommands([
      Command.make("diff", { rev: revArg, json: jsonFlag, remote: remoteFlag, config: configFlag, set: setFlag }, (o) =>
        Effect.gen(function* () {
          const ws = yield* loadWorkspace(def, o.config, o.set)
          const rev = Option.getOrElse(o.rev, () => "HEAD")
          const remote = yield* selectRemote(ws, o.remote, true)
          const d = yield* Compare.metricsDiff(ws, rev, remote).pipe(Effect.ensuring(Effect.sync(() => remote?.close())))
          if (o.json) console.log(JSON.stringify({ rev, rows: d.rows, missing: d.missing }, null, 2))
          else {
            for (const l of Compare.metricsTable(d.rows, rev)) console.log(l)
            for (const m of d.missing) console.log(`not compared: ${m}`)
          }
        })
      ).pipe(Command.withDescription("the declared metrics of the workspace against a git revision's lock"))
    ]),
    Command.withDescription("compare metrics")
  )

const paramsCommand = (def: Definition) =>
  Command.make("params").pipe(
    Command.withSubcommands([
      Command.make("diff", { rev: revArg, json: jsonFlag, config: configFlag, set: setFlag }, (o) =>
        Effect.gen(function* () {
          const ws = yield* loadWorkspace(def, o.config, o.set)
          const rev = Option.getOrElse(o.rev, () => "HEAD")
          const rows = yield* Compare.paramsDiff(ws, rev)
          if (o.json) console.log(JSON.stringify({ rev, rows }, null, 2))
          else for (const l of Compare.paramsTable(rows, rev)) console.log(l)
        })
      ).pipe(Command.withDescription("the params of the workspace against those a git revision's lock recorded"))
    ]),
    Command.withDescription("compare params")
  )

const reportCommand = (def: Definition) =>
  Command.make(
    "report",
    {
      out: Flag.String("out").pipe(Flag.withDefault("report.html"), Flag.withDescription("the HTML file to write (default report.html)")),
      config: configFlag,
      set: setFlag
    },
    (o) =>
      Effect.gen(function* () {
        const ws = yield* loadWorkspace(def, o.config, o.set)
        const plan = yield* Planner.plan(ws, { skipDisk: true, planDespitePreflight: true })
        const now = new Date(yield* Clock.currentTimeMillis)
        const file = yield* attempt(() => {
          const abs = ws.abs(o.out)
          writeFileAtomic(abs, Report.render(ws, plan, now))
          return abs
        })
        console.log(`wrote ${ws.rel(file)} (${formatBytes(fs.statSync(file).size)})`)
      })
  ).pipe(Command.withDescription("write a self-contained HTML report: the DAG, durations, sizes, plots, metrics, disk"))

const watchCommand = (def: Definition) =>
  Command.make(
    "watch",
    {
      target: targetArg,
      config: configFlag,
      set: setFlag,
      debounce: Flag.Int("debounce").pipe(Flag.withDefault(300), Flag.withDescription("milliseconds of quiet after a change before a run"))
    },
    (o) =>
      Effect.gen(function* () {
        const ws = yield* loadWorkspace(def, o.config, o.set)
        const target = yield* checkTarget(ws, o.target)
        const files = yield* FileSystem
        const passThrough = [...Option.match(o.config, { onNone: () => [], onSome: (c) => ["--config", c] }), ...o.set.flatMap((x) => ["--set", x])]
        const code = yield* Effect.promise(() =>
          Watch.watch({
            target,
            passThrough,
            debounceMs: o.debounce,
            log: (l) => console.log(l),
            load: () =>
              Effect.runPromise(
                Workspace.load(def.root, def.stages, { root: def.root, config: Option.getOrUndefined(o.config), sets: o.set, fs: files }).pipe(
                  Effect.catch((e) => Effect.succeed(e.message))
                )
              )
          })
        )
        if (code !== 0) return yield* new ConfigError({ message: `watch ended with ${code}` })
      })
  ).pipe(Command.withDescription("rerun what goes stale as params, code or inputs change (Ctrl-C to stop)"))

/** On a Slurm node: runs one stage of a job the controller wrote (engine/Slurm.ts). */
const execStageCommand = (def: Definition) =>
  Command.make("exec-stage", { job: Argument.String("job").pipe(Argument.withDescription("the job description (.pipeline/jobs/…/job.json)")) }, (o) =>
    Effect.gen(function* () {
      const job = yield* attempt(() => JSON.parse(fs.readFileSync(o.job, "utf8")) as Slurm.Job)
      const files = yield* FileSystem
      const ws = yield* Workspace.load(def.root, def.stages, { root: def.root, config: job.config, sets: job.sets, fs: files })
      const ok = yield* Slurm.execStage(ws, job)
      if (!ok) return yield* new StageFailed({ stage: job.stage, message: JSON.parse(fs.readFileSync(job.resultFile, "utf8")).error ?? "failed" })
    })
  ).pipe(Command.withDescription("(on a Slurm node) run one stage of a job"))

const dagCommand = (def: Definition) =>
  Command.make(
    "dag",
    { format: Flag.Literals("format", ["text", "mermaid"]).pipe(Flag.withDefault("text" as const)) },
    (o) =>
      Effect.gen(function* () {
        const dag = yield* Dag.make(def.stages)
        console.log(o.format === "mermaid" ? Dag.toMermaid(dag) : Dag.toText(dag))
      })
  ).pipe(Command.withDescription("print the pipeline's graph"))

const verifyCommand = (def: Definition) =>
  Command.make("verify", { config: configFlag }, (o) =>
    Effect.gen(function* () {
      const ws = yield* loadWorkspace(def, o.config, [])
      const r = yield* attempt(() => Maintenance.verify(ws))
      console.log(`verified ${r.objects} objects (${formatBytes(r.bytes)})`)
      for (const d of r.corrupt) console.log(`  corrupt: ${d} (moved to .pipeline/cache/corrupt; it will not be restored)`)
      for (const i of r.incomplete) console.log(`  incomplete: ${i} (its outputs will be recomputed when needed)`)
      for (const d of r.damagedEntries) console.log(`  damaged run-cache entry: ${d} (never used; pipeline gc removes it)`)
      if (r.corrupt.length > 0) return yield* new CorruptCacheError({ message: `${r.corrupt.length} corrupt objects in the cache` })
    })
  ).pipe(Command.withDescription("re-hash the cache and report corrupt objects"))

const AGE_UNITS: Record<string, number> = { h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }

/** `--older-than`: a date, or an age counted back from now (`7d`). */
export const cutoff = (value: string, now: number): Date => {
  const age = /^\s*(\d+(?:\.\d+)?)\s*([hdw])\s*$/.exec(value)
  return age ? new Date(now - Number(age[1]) * AGE_UNITS[age[2]!]!) : new Date(value)
}

const gcCommand = (def: Definition) =>
  Command.make(
    "gc",
    {
      olderThan: Flag.String("older-than").pipe(Flag.withDescription("drop run-cache entries created before DATE (YYYY-MM-DD) or more than an AGE ago (7d, 12h, 2w)"), Flag.optional),
      maxSize: Flag.String("max-size").pipe(Flag.withDescription("cap the cache at SIZE (e.g. 50GB), dropping the oldest entries"), Flag.optional),
      dryRun: Flag.Boolean("dry-run").pipe(Flag.withDefault(false), Flag.withDescription("show what would be removed")),
      config: configFlag
    },
    (o) =>
      Effect.gen(function* () {
        const ws = yield* loadWorkspace(def, o.config, [])
        const olderThan = Option.getOrUndefined(o.olderThan)
        const now = yield* Clock.currentTimeMillis
        const date = olderThan === undefined ? undefined : cutoff(olderThan, now)
        if (date && Number.isNaN(date.getTime())) return yield* new UsageError({ message: `--older-than ${olderThan}: expected a date like 2026-11-01 or an age like 7d` })
        const maxSize = Option.getOrUndefined(o.maxSize)
        const maxBytes = maxSize === undefined ? undefined : parseBytes(maxSize)
        if (maxSize !== undefined && maxBytes === undefined) return yield* new UsageError({ message: `--max-size ${maxSize}: expected a size like 50GB` })
        const run = attempt(() => Maintenance.gc(ws, { olderThan: date, maxBytes, dryRun: o.dryRun }))
        const r = o.dryRun ? yield* run : yield* Effect.scoped(Effect.andThen(WorkspaceLock.acquire(ws.stateDir, { wait: false, command: "gc" }), run))
        const verb = o.dryRun ? "would remove" : "removed"
        for (const l of r.lines) console.log(`  ${verb} ${l}`)
        console.log(`${verb} ${formatBytes(r.freedBytes)}; ${formatBytes(r.keptBytes)} kept`)
      })
  ).pipe(Command.withDescription("remove cache entries and objects by policy (default: keep only what the lock needs)"))

export const command = (def: Definition) =>
  Command.make("pipeline").pipe(
    Command.withDescription("a declarative, cached pipeline runner"),
    Command.withSubcommands([runCommand(def), statusCommand(def), pushCommand(def), pullCommand(def), metricsCommand(def), paramsCommand(def), reportCommand(def), watchCommand(def), execStageCommand(def), dagCommand(def), verifyCommand(def), gcCommand(def)])
  )

/** Runs the CLI and returns the exit code; user errors are one line on stderr. */
/**
 * A usage error is one line on stderr, like every other error, pointing at
 * --help (effect/cli's default prints the whole help before it).
 */
const usagePresenter = CliOutput.layerPresenter({
  present: (event) =>
    event._tag === "InvalidInvocation"
      ? Effect.sync(() =>
          process.stderr.write(`error: ${event.errors.map((e) => e.message.replace(/\s+/g, " ").trim()).join("; ")} (see ${event.commandPath.join(" ")} --help)\n`)
        )
      : CliOutput.defaultPresenter.present(event)
})

export const run = async (def: Definition, argv: ReadonlyArray<string> = process.argv.slice(2)): Promise<number> => {
  const program = Command.runWith(command(def), { version: def.version ?? "0.1.0" })(argv).pipe(
    Effect.provide(usagePresenter),
    Effect.provide(FileSystem.node),
    Effect.provide(ChildProcesses.node),
    Effect.provide(NodeServices.layer)
  )
  // Ctrl-C (or a watch restarting the run) interrupts the program through Effect: stages stop,
  // their finalizers run, and what finished stays cached
  const fiber = Effect.runFork(program)
  const interrupt = () => void Effect.runFork(Fiber.interrupt(fiber))
  process.once("SIGINT", interrupt)
  process.once("SIGTERM", interrupt)
  const exit = await Effect.runPromise(Fiber.await(fiber))
  process.off("SIGINT", interrupt)
  process.off("SIGTERM", interrupt)
  if (Exit.isSuccess(exit)) return 0
  const failure = exit.cause.reasons.find(Cause.isFailReason)
  if (failure) {
    const e = failure.error
    if (isPipelineError(e)) {
      process.stderr.write(`error: ${render(e)}\n`)
      return exitCode(e)
    }
    // effect/cli has already printed usage errors with help
    return 2
  }
  if (exit.cause.reasons.some(Cause.isInterruptReason)) return 130
  process.stderr.write(`internal error (a bug in the pipeline tool, please report it):\n${Cause.pretty(exit.cause)}\n`)
  return 70
}

/** Entry point for `pipeline.ts`: `await main({ root, stages })`. */
export const main = async (def: Definition): Promise<void> => {
  process.exitCode = await run(def)
}

export { ConfigError, GraphError }
