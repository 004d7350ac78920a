/**
 * The `pipeline` command line: a thin layer over the engine's Effect API.
 *
 *   pipeline run [TARGET] [--dry-run] [--json] [-f] [--force-downstream] [--config FILE] [--set k=v]... [--wait]
 *   pipeline status [TARGET] [--json] [--ci]
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
import * as Cause from "effect/Cause"
import * as Option from "effect/Option"
import { Argument, CliOutput, Command, Flag } from "effect/cli"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as fs from "node:fs"
import * as Dag from "./Dag.ts"
import {
  ConfigError,
  CorruptCacheError,
  exitCode,
  GraphError,
  render,
  StaleLockError,
  UsageError,
  type PipelineError
} from "./Errors.ts"
import * as Executor from "./Executor.ts"
import * as Maintenance from "./Maintenance.ts"
import * as Planner from "./Planner.ts"
import * as PlanView from "./PlanView.ts"
import { Output } from "./Progress.ts"
import { ChildProcesses, FileSystem } from "./Services.ts"
import type { AnyStage } from "./Stage.ts"
import { formatBytes, formatSeconds, parseBytes } from "./Units.ts"
import * as WorkspaceLock from "./WorkspaceLock.ts"
import { Workspace } from "./Workspace.ts"

const KNOWN = new Set(["ConfigError", "UsageError", "GraphError", "DiskBudgetError", "WorkspaceLockedError", "StageFailed", "StaleLockError", "CorruptCacheError"])
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
      wait: Flag.Boolean("wait").pipe(Flag.withDefault(false), Flag.withDescription("wait for another run to release the workspace instead of failing"))
    },
    (o) =>
      Effect.gen(function* () {
        const ws = yield* loadWorkspace(def, o.config, o.set)
        const target = yield* checkTarget(ws, o.target)
        const options = { target, force: o.force, forceDownstream: o.forceDownstream }
        if (o.dryRun) {
          const plan = yield* Planner.plan(ws, options)
          const previews = yield* Planner.previews(ws, plan)
          if (o.json) console.log(JSON.stringify(PlanView.toJson(plan, undefined, previews), null, 2))
          else console.log(PlanView.render(plan, previews).join("\n"))
          // the exit code the real run would have at its pre-flight check, so CI can gate on a dry run
          if (plan.totals.stagesToRun > 0 && !plan.disk.ok) return yield* PlanView.budgetError(plan)
          return
        }
        yield* Effect.scoped(
          Effect.gen(function* () {
            yield* WorkspaceLock.acquire(ws.stateDir, { wait: o.wait, command: `run${target ? ` ${target}` : ""}` })
            const out = yield* Output
            const plan = yield* Planner.plan(ws, options)
            if (plan.totals.stagesToRun === 0) {
              for (const s of plan.stages) out.line(`  ${s.name}: cached`)
              out.line(`nothing to do: ${plan.stages.length} stages up to date`)
              ws.saveCaches()
              if (o.json) console.log(JSON.stringify(PlanView.toJson(plan, new Map(plan.stages.map((s) => [s.name, { action: "cached", bytes: 0, seconds: 0 }]))), null, 2))
              return
            }
            for (const l of PlanView.render(plan)) out.line(l)
            if (!plan.disk.ok) return yield* PlanView.budgetError(plan)
            const started = Date.now()
            const results = yield* Executor.execute(ws, plan)
            const counts = new Map<string, number>()
            for (const r of results.values()) counts.set(r.action, (counts.get(r.action) ?? 0) + 1)
            out.line(`done in ${formatSeconds((Date.now() - started) / 1000)}: ${[...counts].map(([a, n]) => `${n} ${a}`).join(", ")}`)
            if (o.json) console.log(JSON.stringify(PlanView.toJson(plan, results), null, 2))
            const failure = Executor.firstFailure(results)
            if (failure) return yield* failure
          })
        ).pipe(Effect.provide(o.json ? Output.stderr : Output.stdout))
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
      set: setFlag
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
            console.log(`  ${PlanView.pad(s.name, width)}  ${s.action === "cached" ? "up to date" : `stale (${s.action === "restore" ? "restorable from cache: " : ""}${s.reasons.join("; ")})`}`)
          console.log(stale.length === 0 ? "everything is up to date" : `${stale.length} of ${plan.stages.length} stages stale`)
          for (const l of PlanView.metricsTable(metrics)) console.log(l)
        }
        if (o.ci && stale.length > 0) return yield* new StaleLockError({ message: `${stale.length} stages are stale: ${stale.map((s) => s.name).join(", ")}` })
      })
  ).pipe(Command.withDescription("what is stale and why (no side effects)"))

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
    Command.withSubcommands([runCommand(def), statusCommand(def), dagCommand(def), verifyCommand(def), gcCommand(def)])
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
  const exit = await Effect.runPromiseExit(program)
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
