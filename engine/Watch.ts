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
 * A change during a run interrupts it (SIGINT: the run stops its stages
 * through Effect's interruption, stages that finished stay cached, the lock
 * is written only for stages that succeeded) and starts again. Ctrl-C stops
 * the run the same way and exits.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
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
    return true
  }

  const start = async () => {
    if (stopping || starting) return
    starting = true
    const ok = await refresh().finally(() => (starting = false))
    if (!ok || stopping) return
    if (again) again = false
    o.log(`watch: pipeline ${args.join(" ")}`)
    // its own process group: a Ctrl-C in the terminal reaches the watch alone, which stops the run once
    const c = spawn(process.execPath, [bin, ...args], { cwd: process.cwd(), stdio: "inherit", detached: true })
    child = c
    c.on("exit", (code, signal) => {
      child = undefined
      if (stopping) return
      if (again) {
        again = false
        void start()
        return
      }
      o.log(`watch: ${signal === "SIGINT" ? "interrupted" : code === 0 ? "up to date" : `the run failed (exit ${code})`}; waiting for changes (Ctrl-C to stop)`)
    })
  }

  const changed = (file: string) => {
    if (pending) clearTimeout(pending)
    pending = setTimeout(() => {
      pending = undefined
      o.log(`watch: ${path.relative(process.cwd(), file) || file} changed`)
      if (child !== undefined) {
        // the running stages may now be stale: stop the run cleanly, then start again
        if (!again) child.kill("SIGINT")
        again = true
      } else if (!starting) void start()
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
