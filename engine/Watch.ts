/**
 * `pipeline watch [TARGET]`: reruns what a change makes stale, as it happens.
 *
 * It watches (chokidar) the params file, every stage's code (its module and
 * the project files it imports, as the code fingerprint finds them), each
 * stage's external inputs and `pipeline.ts`. After a change, debounced, it
 * runs `pipeline run [TARGET]` in a child process: a fresh process loads the
 * changed code, so a stage never runs old code under a new key. The run plans
 * as any run does: only the affected stages rerun, and it says why.
 *
 * A change during a run is weighed first: the stages it makes stale are those
 * whose params, code or external inputs it changed, and everything downstream
 * of them (a change to pipeline.ts makes every stage stale). When a stage
 * running now is among them, the run is interrupted (SIGINT: the run stops its
 * stages through Effect's interruption, stages that finished stay cached, the
 * lock is written only for stages that succeeded); otherwise it goes on (a
 * training run is not thrown away for an edit to the eval), the watch
 * interrupts it the moment it starts a stale stage, and either way starts
 * again when it ends. Which stages run now is read from the executor's
 * staging directories (`.pipeline/tmp/run-<stage>-<hex>`). Ctrl-C stops the
 * run the same way and exits.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { canonicalJson } from "../cache/Canonical.ts"
import * as Dag from "./Dag.ts"
import type { Workspace } from "./Workspace.ts"

export interface WatchOptions {
  readonly target: string | undefined
  /** the `--config` and `--set` arguments, passed on to each run */
  readonly passThrough: ReadonlyArray<string>
  readonly debounceMs: number
  /** the workspace as it is now (params may have changed: called before each run) */
  readonly load: () => Promise<Workspace | string>
  readonly log: (line: string) => void
}

/**
 * The stages a change to `files` makes stale, going from the workspace `before` to `after`:
 * those whose params, code (fingerprint) or external inputs differ, and their downstream;
 * "all" when pipeline.ts changed or the DAG is not the same.
 */
export const staleAfter = (before: Workspace, after: Workspace, files: ReadonlySet<string>): Set<string> | "all" => {
  if (files.has(path.join(after.root, "pipeline.ts"))) return "all"
  const edges = (w: Workspace) => canonicalJson(w.dag.stages.map((s) => [s.name, Object.values(s.inputs).map((r) => `${r.stage}.${r.output}`)]))
  if (edges(before) !== edges(after)) return "all"
  const stale = new Set<string>()
  for (const s of after.dag.stages) {
    const old = before.dag.byName.get(s.name)!
    const params = after.params.get(s.name)
    const changed =
      canonicalJson(before.params.get(s.name)) !== canonicalJson(params) ||
      canonicalJson(before.codeOf(old)) !== canonicalJson(after.codeOf(s)) ||
      s.deps(params).some((d) => files.has(path.resolve(after.root, d)))
    if (!changed) continue
    stale.add(s.name)
    for (const d of Dag.downstream(after.dag, s.name)) stale.add(d)
  }
  return stale
}

/** The stages a run is running now: the executor's staging directories, `run-<stage>-<8 hex>`. */
export const runningStages = (ws: Workspace): Array<string> => {
  let names: Array<string>
  try {
    names = fs.readdirSync(ws.tmpDir)
  } catch {
    return []
  }
  return names.flatMap((n) => (/^run-.+-[0-9a-f]{8}$/.test(n) ? [n.slice(4, -9)] : []))
}

/** Runs until SIGINT/SIGTERM; resolves with the exit code. */
export const watch = async (o: WatchOptions): Promise<number> => {
  const { watch: chokidar } = await import("chokidar")
  const bin = process.argv[1]!
  const args = ["run", ...(o.target ? [o.target] : []), ...o.passThrough]
  let child: ChildProcess | undefined
  /** a run being started (the workspace loading): a change now waits for it, it does not start another */
  let starting = false
  let pending: NodeJS.Timeout | undefined
  let again = false
  let stopping = false
  let watched = new Set<string>()
  /** the workspace as the running child loaded it (its code fingerprints taken when it started) */
  let current: Workspace | undefined
  /** files changed since the last debounce, and since the running child started */
  const touched = new Set<string>()
  const sinceStart = new Set<string>()
  /** while a run goes on after a change: the stages it must not run (interrupted when one starts) */
  let guard: NodeJS.Timeout | undefined
  const watcher = chokidar([], { ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 50, pollInterval: 20 } })

  const refresh = async () => {
    const ws = await o.load()
    if (typeof ws === "string") {
      o.log(`error: ${ws}; waiting for a change`)
      return false
    }
    const now = new Set(ws.definitionFiles())
    const add = [...now].filter((f) => !watched.has(f))
    const drop = [...watched].filter((f) => !now.has(f))
    if (add.length > 0) watcher.add(add)
    if (drop.length > 0) watcher.unwatch(drop)
    watched = now
    current = ws
    return true
  }

  const start = async () => {
    if (stopping || starting) return
    starting = true
    const ok = await refresh().finally(() => (starting = false))
    if (!ok || stopping) return
    if (again) again = false
    sinceStart.clear()
    o.log(`watch: pipeline ${args.join(" ")}`)
    // its own process group: a Ctrl-C in the terminal reaches the watch alone, which stops the run once
    const c = spawn(process.execPath, [bin, ...args], { cwd: process.cwd(), stdio: "inherit", detached: true })
    child = c
    c.on("exit", (code, signal) => {
      child = undefined
      if (guard !== undefined) clearInterval(guard)
      guard = undefined
      if (stopping) return
      if (again) {
        again = false
        void start()
        return
      }
      o.log(`watch: ${signal === "SIGINT" ? "interrupted" : code === 0 ? "up to date" : `the run failed (exit ${code})`}; waiting for changes (Ctrl-C to stop)`)
    })
  }

  const interrupt = (why: string) => {
    if (child === undefined || child.killed) return
    o.log(`watch: ${why}: interrupting the run`)
    child.kill("SIGINT")
  }

  /**
   * A change while a run goes on: interrupt it now if it runs a stage the changes since it
   * started made stale, else the moment it starts one.
   */
  const weigh = async () => {
    // set first: a run that ends while the workspace loads is started again
    again = true
    const before = current
    const after = await o.load()
    if (child === undefined || before !== current) return
    if (typeof after === "string") return o.log(`watch: ${after}; the run goes on, and the next one will say it again`)
    const stale = before === undefined ? "all" : staleAfter(before, after, sinceStart)
    if (stale === "all") return interrupt("every stage may be stale")
    if (guard !== undefined) clearInterval(guard)
    guard = undefined
    if (stale.size === 0) {
      again = false
      return o.log("watch: the changes make no stage stale; the run goes on")
    }
    const check = () => {
      const hit = runningStages(after).filter((n) => stale.has(n))
      if (hit.length > 0) {
        if (guard !== undefined) clearInterval(guard)
        guard = undefined
        interrupt(`${hit.join(", ")} ${hit.length === 1 ? "is" : "are"} stale`)
      }
      return hit.length > 0
    }
    if (check()) return
    const running = runningStages(after)
    o.log(`watch: stale now: ${[...stale].join(", ")}${running.length > 0 ? `; ${running.join(", ")} not affected, going on` : ""}; the run starts again when it ends`)
    guard = setInterval(check, 100)
  }

  const changed = (file: string) => {
    touched.add(file)
    if (pending) clearTimeout(pending)
    pending = setTimeout(() => {
      pending = undefined
      const files = new Set(touched)
      touched.clear()
      o.log(`watch: ${[...files].map((f) => path.relative(process.cwd(), f) || f).join(", ")} changed`)
      for (const f of files) sinceStart.add(f)
      if (child !== undefined) void weigh()
      else if (!starting) void start()
    }, o.debounceMs)
  }
  watcher.on("change", changed).on("add", changed).on("unlink", changed)

  return await new Promise<number>((resolve) => {
    const stop = () => {
      if (stopping) return
      stopping = true
      if (pending) clearTimeout(pending)
      const done = () => void watcher.close().then(() => resolve(0))
      if (child !== undefined) {
        child.once("exit", done)
        child.kill("SIGINT")
      } else done()
    }
    process.once("SIGINT", stop)
    process.once("SIGTERM", stop)
    void start()
  })
}
