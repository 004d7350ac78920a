/** `pipeline watch` on the fixture pipeline: reruns what a change makes stale; a change mid-run restarts it cleanly; Ctrl-C stops it. */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { cliAsync, makeWorkspace, read, runs, waitFor } from "./helpers.ts"

const settled = (output: () => string, n: number) => waitFor(() => (output().match(/watch: up to date; waiting for changes/g) ?? []).length >= n, 60_000)

describe("pipeline watch", () => {
  it("reruns just the affected stages after a params, input or code change, and exits cleanly on Ctrl-C", async () => {
    const ws = makeWorkspace()
    const w = cliAsync(ws, ["watch", "c", "--debounce", "100"])
    await settled(w.output, 1)
    expect(runs(ws)).toEqual(["a", "b", "c"])

    const yaml = path.join(ws, "pipeline.yaml")
    fs.writeFileSync(yaml, fs.readFileSync(yaml, "utf8").replace("c: { repeat: 2 }", "c: { repeat: 3 }"))
    await settled(w.output, 2)
    expect(runs(ws)).toEqual(["c"])
    expect(w.output()).toMatch(/c: running \(params changed: c\.repeat 2 -> 3\)/)

    fs.writeFileSync(path.join(ws, "input.txt"), "Other Words")
    await settled(w.output, 3)
    expect(runs(ws)).toEqual(["a", "b", "c"])
    expect(read(ws, "out/c/c.txt")).toBe("other words-x".repeat(3))

    w.child.kill("SIGINT")
    const r = await w.done
    expect([0, 130]).toContain(r.code)
    expect(fs.existsSync(path.join(ws, ".pipeline", "lock"))).toBe(false)
  }, 120_000)

  it("a change during a run interrupts it and starts again; the lock holds only what succeeded", async () => {
    const ws = makeWorkspace()
    const w = cliAsync(ws, ["watch", "slow", "--debounce", "100"])
    await waitFor(() => fs.existsSync(path.join(ws, "runs.log")) && read(ws, "runs.log").includes("slow-started"), 60_000)
    // the stage's own code changes while it runs
    const code = path.join(ws, "stages", "special.ts")
    fs.appendFileSync(code, "\n// edited while slow ran\n")
    await waitFor(() => (read(ws, "runs.log").match(/slow-started/g) ?? []).length >= 2, 60_000)
    expect(w.output()).toMatch(/watch: stages\/special\.ts changed/)
    expect(w.output()).toMatch(/slow: running \(code changed: stages\/special\.ts\)|slow: running \(no previous run\)/)
    expect(read(ws, "runs.log")).not.toMatch(/^slow$/m) // the first run never finished
    fs.writeFileSync(path.join(ws, "release"), "")
    await settled(w.output, 1)
    expect(read(ws, "out/slow/slow.txt")).toBe("done\n")
    expect(read(ws, "pipeline.lock")).toMatch(/^ {2}slow:/m)
    w.child.kill("SIGINT")
    expect([0, 130]).toContain((await w.done).code)
    expect(fs.readdirSync(path.join(ws, ".pipeline", "tmp")).filter((n) => !n.startsWith("."))).toEqual([])
  }, 120_000)

  it("a change that does not touch the running stage lets it finish, then reruns what it made stale", async () => {
    const ws = makeWorkspace()
    const w = cliAsync(ws, ["watch", "--debounce", "100"])
    await waitFor(() => fs.existsSync(path.join(ws, "runs.log")) && /^slow-started$/m.test(read(ws, "runs.log")) && /^c$/m.test(read(ws, "runs.log")), 60_000)
    const yaml = path.join(ws, "pipeline.yaml")
    fs.writeFileSync(yaml, fs.readFileSync(yaml, "utf8").replace("c: { repeat: 2 }", "c: { repeat: 3 }"))
    await waitFor(() => /watch: stale now: c; ([\w, ]+, )?slow(, [\w, ]+)? not affected, going on/.test(w.output()), 30_000).catch((e) => {
      throw new Error(`${e}: ${w.output().slice(-3000)}`)
    })
    fs.writeFileSync(path.join(ws, "release"), "")
    await settled(w.output, 1).catch((e) => {
      throw new Error(`${e}: ${w.output().split("\n").filter((l) => !l.includes("ticks")).join("\n").slice(-3000)}`)
    })
    const log = read(ws, "runs.log").split("\n")
    expect(log.filter((l) => l === "slow-started")).toHaveLength(1) // never interrupted
    expect(log.filter((l) => l === "slow")).toHaveLength(1)
    expect(log.filter((l) => l === "c")).toHaveLength(2) // and c ran again with the new params
    expect(w.output()).not.toMatch(/interrupting the run/)
    expect(w.output()).toMatch(/c: running \(params changed: c\.repeat 2 -> 3\)/)
    // an edit of the running stage's own code still interrupts it
    fs.rmSync(path.join(ws, "release"))
    fs.writeFileSync(path.join(ws, "stages", "special.ts"), fs.readFileSync(path.join(ws, "stages", "special.ts"), "utf8") + "\n// edited\n")
    await waitFor(() => (read(ws, "runs.log").match(/^slow-started$/gm) ?? []).length >= 2, 60_000)
    fs.appendFileSync(path.join(ws, "stages", "special.ts"), "// again\n")
    await waitFor(() => /interrupting the run/.test(w.output()), 30_000)
    expect(w.output()).toMatch(/slow(, \w+)* (is|are) stale: interrupting the run/)
    w.child.kill("SIGINT")
    expect([0, 130]).toContain((await w.done).code)
  }, 180_000)
})
