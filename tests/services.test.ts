/**
 * The engine through its services (engine/Services.ts), in process: the
 * fixture pipeline planned and executed with a test clock, and with a file
 * system whose disk fills up at the moment an object enters the store.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/testing/TestClock"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { type Fs, nodeFs } from "../cache/Fs.ts"
import { cutoff } from "../engine/Cli.ts"
import * as Executor from "../engine/Executor.ts"
import * as Maintenance from "../engine/Maintenance.ts"
import * as Planner from "../engine/Planner.ts"
import { Console, Output } from "../engine/Progress.ts"
import type { AnyStage } from "../engine/Stage.ts"
import { ChildProcesses, type Processes } from "../engine/Services.ts"
import { Workspace } from "../engine/Workspace.ts"
import { makeWorkspace, read } from "./helpers.ts"

/** Output that goes nowhere: these tests read results, not lines. */
const quiet = Layer.sync(Output, () => new Console({ write: () => true, isTTY: false } as unknown as NodeJS.WriteStream))

const fixture = Effect.promise(async () => {
  const root = makeWorkspace()
  const def = (await import(pathToFileURL(path.join(root, "pipeline.ts")).href)) as { default: { stages: ReadonlyArray<AnyStage> } }
  return { root, stages: def.default.stages }
})

const load = (f: { root: string; stages: ReadonlyArray<AnyStage> }, sets: ReadonlyArray<string> = [], files: Fs = nodeFs) =>
  Effect.runSync(Workspace.load(f.root, f.stages, { root: f.root, sets, warn: () => {}, fs: files }))

const run = (ws: Workspace, target: string) => Effect.flatMap(Planner.plan(ws, { target }), (plan) => Executor.execute(ws, plan)).pipe(Effect.provide(Layer.merge(quiet, ChildProcesses.node)))

describe("the clock service", () => {
  it.effect("stamps run-cache entries, and gc --older-than 7d counts back from it", () =>
    Effect.gen(function* () {
      const f = yield* fixture
      yield* TestClock.setTime(Date.parse("2026-01-01T00:00:00Z"))
      yield* run(load(f, ["c.repeat=3"]), "c")
      yield* TestClock.adjust("10 days")
      yield* run(load(f, ["c.repeat=4"]), "c")
      yield* run(load(f), "c") // the lock now holds repeat=2, stamped 2026-01-11
      const stamps = [...load(f).runs.list()].map((e) => `${e.entry.stage} ${e.entry.createdAt.slice(0, 10)}`).sort()
      assert.deepStrictEqual(stamps, ["a 2026-01-01", "b 2026-01-01", "c 2026-01-01", "c 2026-01-11", "c 2026-01-11"])
      const now = yield* Clock.currentTimeMillis
      assert.strictEqual(cutoff("7d", now).toISOString(), "2026-01-04T00:00:00.000Z")
      const r = Maintenance.gc(load(f), { olderThan: cutoff("7d", now), dryRun: false })
      // repeat=3 is older than 7 days and not the lock's: it goes; a and b are the lock's, they stay
      assert.deepStrictEqual(
        r.removedEntries.map((e) => `${e.stage} ${e.createdAt.slice(0, 10)}`),
        ["c 2026-01-01"]
      )
    })
  )
})

describe("the file system service", () => {
  it.effect("a disk that fills up as an output enters the store: disk full, named, and the cache stays consistent", () =>
    Effect.gen(function* () {
      const f = yield* fixture
      const enospc = (to: string) => Object.assign(new Error(`ENOSPC: no space left on device, rename -> '${to}'`), { code: "ENOSPC" })
      // c's output cannot enter the store; a's and b's can
      const full: Fs = {
        ...nodeFs,
        renameSync: (from, to) => {
          if (String(from).includes(`${path.sep}run-c-`) && String(to).includes(`${path.sep}objects${path.sep}`)) throw enospc(String(to))
          nodeFs.renameSync(from, to)
        }
      }
      const results = yield* run(load(f, [], full), "c")
      assert.deepStrictEqual([...results.values()].map((r) => `${r.name} ${r.action}`), ["a ran", "b ran", "c failed"])
      assert.match(results.get("c")!.error!, /^disk full \(ENOSPC\): the workspace's disk ran out of space/)
      const ws = load(f)
      assert.deepStrictEqual(Object.keys(ws.lock).sort(), ["a", "b"])
      assert.isFalse(fs.existsSync(path.join(f.root, ".pipeline", "runs", "c")))
      assert.deepStrictEqual(fs.readdirSync(path.join(f.root, ".pipeline", "tmp")), [])
      const v = Maintenance.verify(ws)
      assert.deepStrictEqual([v.corrupt, v.incomplete, v.damagedEntries], [[], [], []])
      // with room again, c runs and the rest is cached
      const again = yield* run(load(f), "c")
      assert.deepStrictEqual([...again.values()].map((r) => `${r.name} ${r.action}`), ["a cached", "b cached", "c ran"])
      assert.strictEqual(read(f.root, "out/c/c.txt"), "hello world\n-x".repeat(2))
    })
  )
})

describe("the child-process service", () => {
  const withProcesses = (ws: Workspace, target: string, processes: Processes) =>
    Effect.flatMap(Planner.plan(ws, { target }), (plan) => Executor.execute(ws, plan)).pipe(
      Effect.provide(Layer.merge(quiet, Layer.succeed(ChildProcesses, processes)))
    )
  const refuse = (): never => {
    throw new Error("spawn sh ENOENT")
  }

  it.effect("a command stage gets its expanded argv, cwd and env from the service, and its lines are the stage's log", () =>
    Effect.gen(function* () {
      const f = yield* fixture
      const calls: Array<{ file: string; args: ReadonlyArray<string>; cwd: string }> = []
      const recording: Processes = {
        spawn: refuse,
        exec: async (file, args, o) => {
          calls.push({ file, args, cwd: o.cwd })
          // do what the command says, without a shell: the output is the input plus the word
          const out = args[1]!.match(/> (\S+);/)![1]!
          fs.writeFileSync(out, fs.readFileSync(args[1]!.match(/cat (\S+) >/)![1]!, "utf8") + "recorded\n")
          o.onLine("a line from the command")
          return { failed: false, exitCode: 0, reason: undefined }
        }
      }
      const results = yield* withProcesses(load(f, ["cmd.word=recorded"]), "cmd", recording)
      assert.strictEqual(results.get("cmd")!.action, "ran")
      assert.strictEqual(calls.length, 1)
      assert.strictEqual(calls[0]!.file, "sh")
      assert.strictEqual(calls[0]!.cwd, f.root)
      assert.match(calls[0]!.args[1]!, /^echo running with recorded; cat \S+a\.txt > \S+cmd\.txt; echo recorded >> \S+cmd\.txt$/)
      assert.strictEqual(read(f.root, "out/cmd/cmd.txt"), read(f.root, "out/a/a.txt") + "recorded\n")
    })
  )

  it.effect("a command that cannot start, or exits non-zero, fails its stage with one line, and nothing enters the cache", () =>
    Effect.gen(function* () {
      const f = yield* fixture
      const missing: Processes = { spawn: refuse, exec: async () => refuse() }
      const r1 = yield* withProcesses(load(f, ["cmd.word=x"]), "cmd", missing)
      assert.strictEqual(r1.get("cmd")!.action, "failed")
      assert.strictEqual(r1.get("cmd")!.error, "spawn sh ENOENT")
      const exits: Processes = { spawn: refuse, exec: async () => ({ failed: true, exitCode: 3, reason: "Command failed with exit code 3" }) }
      const r2 = yield* withProcesses(load(f, ["cmd.word=x"]), "cmd", exits)
      assert.strictEqual(r2.get("cmd")!.error, "sh exited with code 3")
      assert.isFalse("cmd" in load(f).lock)
      assert.isFalse(fs.existsSync(path.join(f.root, ".pipeline", "runs", "cmd")))
    })
  )
})

describe("an effect outside the store, checked by an Effect", () => {
  it.live("a cached stage whose remote target lacks its output reruns, with the check's reason; one that has it stays cached", () =>
    Effect.gen(function* () {
      const f = yield* fixture
      yield* run(load(f), "c")
      const withCheck = (answer: string | undefined) =>
        f.stages.map((s) => (s.name === "c" ? { ...s, external: { check: () => Effect.sleep("5 millis").pipe(Effect.as(answer)) } } : s))
      const plan = (stages: ReadonlyArray<AnyStage>) =>
        Planner.plan(Effect.runSync(Workspace.load(f.root, stages, { root: f.root, sets: [], warn: () => {}, fs: nodeFs })), { target: "c" })
      const gone = yield* plan(withCheck("remote target holds another publish"))
      const c = gone.stages.find((s) => s.name === "c")!
      assert.strictEqual(c.action, "run")
      assert.deepStrictEqual(c.reasons, ["remote target holds another publish"])
      const there = yield* plan(withCheck(undefined))
      assert.strictEqual(there.stages.find((s) => s.name === "c")!.action, "cached")
    })
  )
})
