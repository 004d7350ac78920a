/**
 * Black-box tests of the `pipeline` CLI in temp workspaces (fixture pipeline in
 * tests/fixtures/ws): caching, reasons, early cut-off, run-cache restores,
 * dry-run, disk budgets, temporary outputs, scratch state, the workspace lock,
 * kill -9, verify and gc.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { cli, cliAsync, makeWorkspace, read, runs, snapshot, waitFor } from "./helpers.ts"

describe("run", () => {
  it("runs the target and only what it needs; a second run does nothing", () => {
    const ws = makeWorkspace()
    const first = cli(ws, ["run", "c"])
    expect(first.code, first.stderr).toBe(0)
    expect(runs(ws)).toEqual(["a", "b", "c"])
    expect(read(ws, "out/c/c.txt")).toBe("hello world\n-x".repeat(2))
    const second = cli(ws, ["run", "c"])
    expect(second.code).toBe(0)
    expect(runs(ws)).toEqual([])
    expect(second.stdout).toMatch(/a: cached[\s\S]*b: cached[\s\S]*c: cached/)
    expect(second.stdout).toContain("nothing to do: 3 stages up to date")
    const lock = read(ws, "pipeline.lock")
    expect(lock).toMatch(/c:\n\s+key: blake3:[0-9a-f]{64}/)
    expect(lock).not.toContain("tmpproducer")
  })

  it("says why each stage reruns: params, input, code, output missing, forced", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    runs(ws)

    let r = cli(ws, ["run", "c", "--set", "c.repeat=3"])
    expect(r.stdout).toContain("params changed: c.repeat 2 -> 3")
    expect(runs(ws)).toEqual(["c"])

    fs.writeFileSync(path.join(ws, "input.txt"), "Other Input\n")
    r = cli(ws, ["run", "c", "--set", "c.repeat=3"])
    expect(r.stdout).toContain("input changed: input.txt")
    expect(runs(ws)).toEqual(["a", "b", "c"])

    const chain = path.join(ws, "stages", "chain.ts")
    fs.appendFileSync(chain, "\n// a comment changes the code\n")
    r = cli(ws, ["run", "c", "--set", "c.repeat=3"])
    expect(r.stdout).toContain("code changed: stages/chain.ts")
    expect(runs(ws)).toEqual(["a", "b", "c"])

    fs.rmSync(path.join(ws, "out", "c"), { recursive: true })
    r = cli(ws, ["run", "c", "--set", "c.repeat=3"])
    expect(r.stdout).toMatch(/output missing: out\/c\/c\.txt/)
    expect(runs(ws)).toEqual([]) // restored from the cache, not recomputed
    expect(read(ws, "out/c/c.txt")).toBe("other input\n-x".repeat(3))

    r = cli(ws, ["run", "c", "-f", "--set", "c.repeat=3"])
    expect(r.stdout).toContain("forced")
    expect(runs(ws)).toEqual(["c"])

    r = cli(ws, ["run", "c", "--force-downstream", "--set", "c.repeat=3", "--set", "a.suffix=-Y"])
    expect(runs(ws)).toEqual(["a", "b", "c"])
  })

  it("counts a stage's own code, not the upstream stage modules it imports to name their outputs", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "tmpconsumer"]).code).toBe(0)
    fs.appendFileSync(path.join(ws, "stages", "chain.ts"), "\n// changes stage a's module\n")
    const r = cli(ws, ["status", "tmpconsumer"])
    expect(r.stdout).toMatch(/a\s+stale \(code changed: stages\/chain\.ts\)/)
    expect(r.stdout).toMatch(/tmpproducer\s+stale \(upstream runs: a\)/)
    runs(ws)
    expect(cli(ws, ["run", "tmpconsumer"]).code).toBe(0)
    expect(runs(ws)).toEqual(["a"]) // a's bytes did not change: the rest is cut off
  })

  it("stops a change at a stage whose rerun produced identical bytes (early cut-off)", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    runs(ws)
    const r = cli(ws, ["run", "c", "--set", "a.suffix=-x"]) // b lowercases: same bytes
    expect(r.code).toBe(0)
    expect(runs(ws)).toEqual(["a", "b"])
    expect(r.stdout).toContain("c: cached (inputs unchanged after upstream rerun: early cut-off)")
  })

  it("restores from the run-cache when a param is switched back", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    expect(cli(ws, ["run", "c", "--set", "c.repeat=5"]).code).toBe(0)
    runs(ws)
    const r = cli(ws, ["run", "c"])
    expect(r.stdout).toMatch(/c: restored from local cache \(params changed: c.repeat 5 -> 2\)/)
    expect(runs(ws)).toEqual([])
    expect(read(ws, "out/c/c.txt")).toBe("hello world\n-x".repeat(2))
    const plan = JSON.parse(cli(ws, ["run", "c", "--set", "c.repeat=5", "--dry-run", "--json"]).stdout)
    expect(plan.stages.find((s: { name: string }) => s.name === "c")).toMatchObject({ action: "restore", source: "local" })
  })

  it("dry-run prints the plan and writes nothing", () => {
    const ws = makeWorkspace()
    cli(ws, ["run", "--dry-run"]) // builds the loader bundle
    const before = snapshot(ws)
    const r = cli(ws, ["run", "c", "--dry-run"])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/a\s+run\s+no previous run/)
    expect(r.stdout).toMatch(/b\s+run\s+no previous run; upstream runs: a/)
    expect(r.stdout).toMatch(/disk: writes up to .* free.*: ok/)
    const json = JSON.parse(cli(ws, ["run", "c", "--dry-run", "--json"]).stdout)
    expect(json.target).toBe("c")
    expect(json.stages.map((s: { name: string }) => s.name)).toEqual(["a", "b", "c"])
    expect(json.stages[0]).toMatchObject({ action: "run", source: null, bytes: null, seconds: null })
    expect(json.stages[2].estimate).toEqual({ diskBytes: 220, seconds: 0.1 })
    expect(json.disk).toMatchObject({ ok: true, budgetBytes: null })
    expect(json.totals.stagesToRun).toBe(3)
    expect(snapshot(ws)).toEqual(before)
    expect(fs.existsSync(path.join(ws, "out"))).toBe(false)
    expect(runs(ws)).toEqual([])
  })

  it("run --json reports what happened with measured seconds and bytes", () => {
    const ws = makeWorkspace()
    const r = cli(ws, ["run", "b", "--json"])
    expect(r.code).toBe(0)
    const json = JSON.parse(r.stdout)
    expect(json.stages.map((s: { action: string }) => s.action)).toEqual(["ran", "ran"])
    expect(json.stages[0].bytes).toBe(fs.statSync(path.join(ws, "out/a/a.txt")).size)
    expect(typeof json.stages[0].seconds).toBe("number")
  })

  it("fails a bad param with one line naming the field, exit 2", () => {
    const ws = makeWorkspace()
    let r = cli(ws, ["run", "c", "--set", "c.repeat=many"])
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toMatch(/^error: pipeline\.yaml \(with --set c\.repeat=many\): c\.repeat: Expected .*number/)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    r = cli(ws, ["run", "c", "--set", "c.repeet=2"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("c.repeet: unknown key")
    r = cli(ws, ["run", "nope"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("unknown stage nope")
    fs.writeFileSync(path.join(ws, "bad.yaml"), "a: [1,\n")
    r = cli(ws, ["run", "--config", "bad.yaml"])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^error: bad\.yaml:\d+:\d+: /)
  })

  it("refuses secrets in params and keeps them out of logs and the lock", () => {
    const ws = makeWorkspace()
    const env = { HF_TOKEN: "hf_supersecretvalue123" }
    let r = cli(ws, ["run", "cmd", "--set", "cmd.word=hf_supersecretvalue123"], env)
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("cmd.word: holds the value of HF_TOKEN")
    expect(r.stderr).not.toContain("hf_supersecretvalue123")
    r = cli(ws, ["run", "cmd"], env)
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("[cmd] running with hello")
    expect(read(ws, "out/cmd/cmd.txt")).toBe("Hello World\n-Xhello\n")
    expect(read(ws, "pipeline.lock")).not.toContain("hf_supersecret")
  })
})

describe("disk budget", () => {
  it("fails before any stage runs, exit 3, naming the stage and computed ways to fit", () => {
    const ws = makeWorkspace()
    fs.appendFileSync(path.join(ws, "pipeline.yaml"), "budget: { disk: 5kB }\n")
    const r = cli(ws, ["run", "big"])
    expect(r.code).toBe(3)
    expect(runs(ws)).toEqual([])
    expect(fs.existsSync(path.join(ws, "pipeline.lock"))).toBe(false)
    const err = r.stderr.trim()
    expect(err.split("\n")).toHaveLength(1)
    expect(err).toContain("stage big")
    expect(err).toContain("against a budget of 5.0 kB")
    // with a.txt (100 B): p3 alone (4000) and p1 + p2 (3000) fit; p1 + p3 (5000) does not
    expect(err).toContain("big.parts: p3 alone fits; p1 + p2 fits; p1 + p3 needs 5.1 kB; p2 + p3 needs 6.1 kB; p1 + p2 + p3 needs 7.1 kB")
    expect(err).toContain("raise budget.disk to 7.1 kB")
  })

  it("repeats the check before each stage with real sizes", () => {
    const ws = makeWorkspace()
    fs.appendFileSync(path.join(ws, "pipeline.yaml"), "budget: { disk: 500kB }\n")
    // planned: a writes ~100 B, so grow ~100 kB: fits. Really: a writes ~2 kB, so grow needs ~2 MB.
    fs.writeFileSync(path.join(ws, "input.txt"), "x".repeat(2000))
    const r = cli(ws, ["run", "grow"])
    expect(r.stdout).toMatch(/disk: writes up to 100\.\d kB .*: ok/)
    expect(r.code).toBe(3)
    expect(runs(ws)).toEqual(["a"])
    expect(r.stderr).toMatch(/^error: disk check before grow failed at stage grow: needs 2\.0 MB; with the /)
    expect(read(ws, "pipeline.lock")).toContain("out/a/a.txt") // what ran is kept
  })

  it("a dry run that does not fit exits 3, as the real run would at its pre-flight, with the plan on stdout", () => {
    const ws = makeWorkspace()
    fs.appendFileSync(path.join(ws, "pipeline.yaml"), "budget: { disk: 5kB }\n")
    const r = cli(ws, ["run", "big", "--dry-run"])
    expect(r.code).toBe(3)
    expect(r.stdout).toMatch(/disk: writes up to .*: DOES NOT FIT/)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toContain("stage big")
    const json = cli(ws, ["run", "big", "--dry-run", "--json"])
    expect(json.code).toBe(3)
    expect(JSON.parse(json.stdout).disk.ok).toBe(false)
    expect(runs(ws)).toEqual([])
  })

  it("reuses a recorded time only for inputs of about the same size, scaled by their bytes", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "a"]).code).toBe(0)
    const recorded = Number(/a:\n(?:.*\n)*?\s+duration: ([\d.e-]+)/.exec(read(ws, "pipeline.lock"))![1])
    const seconds = () => JSON.parse(cli(ws, ["run", "a", "-f", "--dry-run", "--json"]).stdout).stages[0].estimate.seconds as number
    expect(seconds()).toBeCloseTo(recorded, 9)
    const size = fs.statSync(path.join(ws, "input.txt")).size
    fs.writeFileSync(path.join(ws, "input.txt"), "x".repeat(Math.round(size * 1.5)))
    expect(seconds()).toBeCloseTo(recorded * 1.5, 2)
    fs.writeFileSync(path.join(ws, "input.txt"), "x".repeat(size * 1000))
    expect(seconds()).toBe(0.1) // the stage's own estimate: its last run says nothing about 1000× the input
  })

  it("says 'never run here' once for a stage the committed lock knows but this workspace has never made", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "big"]).code).toBe(0)
    fs.rmSync(path.join(ws, "out"), { recursive: true })
    fs.rmSync(path.join(ws, ".pipeline"), { recursive: true }) // a fresh clone: the lock, nothing else
    const json = JSON.parse(cli(ws, ["run", "big", "--dry-run", "--json"]).stdout)
    expect(json.stages[0].reasons).toEqual(["never run here (the lock has it; out/ and the cache do not)"])
  })

  it("warns about downstream stages that will not fit when the target is upstream", () => {
    const ws = makeWorkspace()
    fs.appendFileSync(path.join(ws, "pipeline.yaml"), "budget: { disk: 6kB }\n")
    const r = cli(ws, ["run", "a", "--dry-run"])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/warning: downstream: big would need .* more than the budget/)
    const json = JSON.parse(cli(ws, ["run", "a", "--dry-run", "--json"]).stdout)
    expect(json.disk.ok).toBe(true)
    expect(json.warnings[0]).toContain("downstream: big")
  })

  it("accounts temporary outputs: freed after their last reader, back when needed", () => {
    const ws = makeWorkspace()
    let r = cli(ws, ["run", "tmpconsumer"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain("freed temporary out/tmpproducer/big.txt")
    expect(fs.existsSync(path.join(ws, "out/tmpproducer/big.txt"))).toBe(false)
    runs(ws)
    r = cli(ws, ["run", "tmpconsumer"])
    expect(r.stdout).toContain("nothing to do")
    r = cli(ws, ["run", "tmpconsumer", "--set", "tmpconsumer.n=3"])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("output missing: out/tmpproducer/big.txt (temporary, needed by tmpconsumer)")
    expect(runs(ws)).toEqual(["tmpproducer", "tmpconsumer"])
    expect(read(ws, "out/tmpconsumer/head.txt")).toBe("Hello World\n-X".slice(0, 3))
    // switching back restores the reader without bringing the temporary back
    r = cli(ws, ["run", "tmpconsumer"])
    expect(r.stdout).toMatch(/tmpconsumer\s+restore/)
    expect(runs(ws)).toEqual([])
    // with out/ gone, the producer is restored without its freed temporary
    fs.rmSync(path.join(ws, "out"), { recursive: true })
    r = cli(ws, ["run", "tmpconsumer"])
    expect(r.code, r.stderr).toBe(0)
    expect(runs(ws)).toEqual([])
    expect(read(ws, "out/tmpconsumer/head.txt")).toBe("Hello World\n-X".slice(0, 5))
    expect(cli(ws, ["status", "tmpconsumer", "--ci"]).code).toBe(0)
  })
})

describe("robustness", () => {
  it("keeps scratch state across a failure and removes it on success", () => {
    const ws = makeWorkspace()
    fs.writeFileSync(path.join(ws, "fail-flaky"), "")
    let r = cli(ws, ["run", "flaky"])
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toBe("error: stage flaky failed: asked to fail (attempt 1)")
    expect(fs.existsSync(path.join(ws, "pipeline.lock"))).toBe(false)
    expect(fs.existsSync(path.join(ws, "out/flaky"))).toBe(false)
    r = cli(ws, ["run", "flaky"])
    expect(r.stderr).toContain("attempt 2")
    fs.rmSync(path.join(ws, "fail-flaky"))
    r = cli(ws, ["run", "flaky"])
    expect(r.code).toBe(0)
    expect(read(ws, "out/flaky/attempts.txt")).toBe("attempts: 3\n")
    expect(fs.existsSync(path.join(ws, ".pipeline/scratch/flaky"))).toBe(false)
  })

  it("stops a second run with a clear message while the first holds the workspace", async () => {
    const ws = makeWorkspace()
    cli(ws, ["run", "--dry-run"])
    const first = cliAsync(ws, ["run", "slow"])
    await waitFor(() => fs.existsSync(path.join(ws, "runs.log")))
    const second = cli(ws, ["run", "a"])
    expect(second.code).toBe(3)
    expect(second.stderr).toMatch(/the workspace is locked by pid \d+ \(run slow/)
    const waiting = cliAsync(ws, ["run", "a", "--wait"])
    await waitFor(() => waiting.output().includes("waiting for pid"))
    fs.writeFileSync(path.join(ws, "release"), "")
    expect((await first.done).code).toBe(0)
    const w = await waiting.done
    expect(w.code).toBe(0)
    expect(w.stderr).toContain("waiting for pid")
  })

  it("recovers from kill -9 in the middle of a stage: stale lock taken over, nothing half-cached", async () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "a"]).code).toBe(0)
    const lockBefore = read(ws, "pipeline.lock")
    const run = cliAsync(ws, ["run", "slow"])
    await waitFor(() => fs.existsSync(path.join(ws, "runs.log")) && read(ws, "runs.log").includes("slow-started"))
    run.child.kill("SIGKILL")
    await run.done
    expect(fs.existsSync(path.join(ws, ".pipeline/lock"))).toBe(true) // left behind by the dead process
    expect(read(ws, "pipeline.lock")).toBe(lockBefore)
    expect(fs.existsSync(path.join(ws, "out/slow"))).toBe(false)
    expect(fs.readdirSync(path.join(ws, ".pipeline/runs"))).not.toContain("slow")
    fs.writeFileSync(path.join(ws, "release"), "")
    const again = cli(ws, ["run", "slow"])
    expect(again.code, again.stderr).toBe(0)
    expect(read(ws, "out/slow/slow.txt")).toBe("done\n")
    expect(cli(ws, ["verify"]).code).toBe(0)
    expect(cli(ws, ["run"]).code).toBe(0)
  })

  it("never oversubscribes declared memory: two heavy stages run one after the other", () => {
    const ws = makeWorkspace()
    const r = cli(ws, ["run", "heavyboth"])
    expect(r.code, r.stderr).toBe(0)
    const events = read(ws, "heavy.log").trim().split("\n").map((l) => l.split(" ")[0])
    expect(events).toEqual(["start", "end", "start", "end"])
  })

  it("verify finds a corrupt object, which is then never restored", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    runs(ws)
    const target = path.join(ws, "out/c/c.txt")
    const objects = path.join(ws, ".pipeline/cache/objects")
    const ino = fs.statSync(target).ino
    let object = ""
    for (const d of fs.readdirSync(objects)) for (const f of fs.readdirSync(path.join(objects, d))) if (fs.statSync(path.join(objects, d, f)).ino === ino) object = path.join(objects, d, f)
    expect(object).not.toBe("")
    fs.rmSync(path.join(ws, "out/c"), { recursive: true })
    fs.chmodSync(object, 0o644)
    fs.writeFileSync(object, "garbage")
    const v = cli(ws, ["verify"])
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(/corrupt: blake3:[0-9a-f]{64}/)
    const r = cli(ws, ["run", "c"])
    expect(r.code).toBe(0)
    expect(runs(ws)).toEqual(["c"]) // recomputed, not restored from the damaged object
    expect(read(ws, "out/c/c.txt")).toBe("hello world\n-x".repeat(2))
  })
})

describe("status, dag, gc", () => {
  it("status says what is stale and why, without side effects; --ci exits 4", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    const ok = cli(ws, ["status", "c", "--ci"])
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(/metrics \(all of them: status --json\)\n  out\/c\/metrics\.json  length 14\n/)
    expect(JSON.parse(cli(ws, ["status", "--json"]).stdout).metrics["out/c/metrics.json"]).toEqual({ length: 14 })
    fs.writeFileSync(path.join(ws, "input.txt"), "changed\n")
    const before = snapshot(ws)
    const r = cli(ws, ["status", "c"])
    expect(r.stdout).toMatch(/a\s+stale \(input changed: input\.txt\)/)
    expect(r.stdout).toMatch(/c\s+stale \(upstream runs: b\)/)
    expect(snapshot(ws)).toEqual(before)
    const ci = cli(ws, ["status", "c", "--ci"])
    expect(ci.code).toBe(4)
    expect(ci.stderr).toContain("3 stages are stale")
  })

  it("prints the graph as text and Mermaid", () => {
    const ws = makeWorkspace()
    const t = cli(ws, ["dag"])
    expect(t.stdout).toContain("b\n  in   text <- a.text\n  out  lower: out/b/b.txt")
    const m = cli(ws, ["dag", "--format", "mermaid"])
    expect(m.stdout.split("\n")[0]).toBe("flowchart TD")
    expect(m.stdout).toContain('a -->|"text"| b')
  })

  it("gc keeps what the lock needs, honours --dry-run, and caps by date", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    expect(cli(ws, ["run", "c", "--set", "c.repeat=7"]).code).toBe(0)
    expect(cli(ws, ["run", "c"]).code).toBe(0) // lock back on repeat=2; repeat=7 only in the run-cache
    const dry = cli(ws, ["gc", "--dry-run"])
    expect(dry.code).toBe(0)
    expect(dry.stdout).toMatch(/would remove run-cache c [0-9a-f]{12}/)
    expect(dry.stdout).toMatch(/would remove 1 objects, \d+ B/)
    const kept = cli(ws, ["gc", "--older-than", "2000-01-01"])
    expect(kept.stdout).toMatch(/removed 0 objects/)
    const r = cli(ws, ["gc"])
    expect(r.stdout).toMatch(/removed 1 objects/)
    runs(ws)
    expect(cli(ws, ["run", "c", "--set", "c.repeat=7"]).code).toBe(0)
    expect(runs(ws)).toEqual(["c"]) // its entry is gone: recomputed
    expect(cli(ws, ["verify"]).code).toBe(0)
  })
})
