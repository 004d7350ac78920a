/**
 * Stages as Slurm jobs, on a real single-node Slurm started by the tests (tests/slurm.ts):
 * the same keys and bytes as a local run, a cancelled run leaves no job, a job killed on
 * the cluster is one clear line, a wrong partition fails before anything runs.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cliAsync, makeDemoWorkspace, makeWorkspace, quickDemo, read, runs, waitFor } from "./helpers.ts"
import { type Cluster, startSlurm } from "./slurm.ts"

/** The lock's stages and keys (durations and train's timing metrics differ from run to run). */
const keys = (ws: string) =>
  read(ws, "pipeline.lock")
    .split("\n")
    .filter((l) => /^ {4}key:/.test(l) || /^ {2}\S+:$/.test(l))
    .join("\n")

describe("stages on Slurm", () => {
  let cluster: Cluster
  const run = async (ws: string, args: ReadonlyArray<string>) => await cliAsync(ws, args, cluster.env).done
  beforeAll(async () => {
    cluster = await startSlurm()
  }, 60_000)
  afterAll(async () => {
    await cluster.stop()
  })

  it("every stage as a job: the same keys and bytes as a local run, the log streamed back, jobs reported", async () => {
    const local = makeWorkspace()
    expect((await run(local, ["run", "c"])).code).toBe(0)
    const ws = makeWorkspace()
    const dry = await run(ws, ["run", "c", "--executor", "slurm", "--dry-run"])
    expect(dry.stdout).toMatch(/^ {2}a .*\n {10,}on slurm: the default partition$/m)
    const r = await run(ws, ["run", "c", "--executor", "slurm", "--json"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/\[a\] slurm job \d+ submitted/)
    expect(r.stderr).toMatch(/✓ c: ran in .* as slurm job \d+ on \S+, wrote/)
    const summary = JSON.parse(r.stdout) as { stages: Array<{ name: string; action: string; job?: { jobId: string; node: string; runSeconds: number } }> }
    for (const s of summary.stages) {
      expect(s.action).toBe("ran")
      expect(s.job?.jobId).toMatch(/^\d+$/)
      expect(s.job?.node).toBeTruthy()
    }
    expect(keys(ws)).toBe(keys(local))
    expect(read(ws, "pipeline.lock").replace(/duration: .*/g, "")).toBe(read(local, "pipeline.lock").replace(/duration: .*/g, ""))
    for (const f of ["out/a/a.txt", "out/b/b.txt", "out/c/c.txt"]) expect(read(ws, f)).toBe(read(local, f))
    expect(runs(ws)).toEqual(["a", "b", "c"])
    expect(cluster.queue()).toEqual([])
    expect(fs.readdirSync(path.join(ws, ".pipeline", "jobs"))).toEqual([]) // a job that succeeded leaves nothing
  }, 120_000)

  it("the whole demo as Slurm jobs: the keys and bytes of a local run", async () => {
    const local = makeDemoWorkspace(quickDemo, "slurm-all-local-")
    const onCluster = makeDemoWorkspace(quickDemo, "slurm-all-")
    const a = await run(local, ["run", "--remote", "none"])
    const b = await run(onCluster, ["run", "--executor", "slurm", "--remote", "none"])
    expect(a.code, a.stderr).toBe(0)
    expect(b.code, b.stderr).toBe(0)
    expect(b.stdout.match(/as slurm job \d+/g)?.length).toBe(10)
    expect(keys(onCluster)).toBe(keys(local))
    // every output the same, but train's timing metrics (tokens per second)
    const digests = (w: string) => read(w, "pipeline.lock").replace(/duration: .*/g, "").replace(/(path: out\/train\/metrics\.jsonl\n\s+kind: file\n\s+digest:) \S+(\n\s+size:) \d+/, "$1 -$2 -")
    expect(digests(onCluster)).toBe(digests(local))
  }, 400_000)

  // (this test is also the one where only train is configured to run on Slurm: `executors: { train: slurm }`;
  // "the whole demo as Slurm jobs" covers the bytes of every stage run as a job against a local run)
  it("train killed as a job resumes from its checkpoint when run again, and ends with the adapter of an uninterrupted run", async () => {
    const edit = (y: string) => y.replace("maxSteps: 40", "maxSteps: 12").replace("batchSize: 2", "batchSize: 1").replace("checkpointEvery: 10", "checkpointEvery: 3")
    const straight = makeDemoWorkspace(edit, "slurm-resume-local-")
    expect((await run(straight, ["run", "train", "--remote", "none"])).code).toBe(0)
    const ws = makeDemoWorkspace((y) => `${edit(y)}executors: { train: slurm }\n`, "slurm-resume-")
    const c = cliAsync(ws, ["run", "train"], cluster.env)
    const scratch = path.join(ws, ".pipeline", "scratch", "train")
    await waitFor(() => fs.existsSync(scratch) && fs.readdirSync(scratch).some((f) => /^ckpt-\d+$/.test(f)), 180_000)
    const id = cluster.queue()[0]!.trim().split(/\s+/)[0]!
    const { spawnSync } = await import("node:child_process")
    spawnSync("scancel", [id], { env: { ...process.env, ...cluster.env } })
    const killed = await c.done
    expect(killed.stdout).not.toMatch(/✓ tokenize: ran in .* as slurm job/) // the data stages ran here: only train is sent
    expect(killed.stdout).toMatch(/✓ tokenize: ran in /)
    expect(killed.code).toBe(1)
    expect(killed.stderr).toMatch(new RegExp(`^error: stage train failed: slurm job ${id} CANCELLED`))
    const again = await run(ws, ["run", "train"])
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toMatch(/\[train\] .*resuming from the checkpoint at step \d+/)
    expect(again.stdout).toMatch(/✓ train: ran in .* as slurm job \d+/)
    const adapter = (w: string) => fs.readFileSync(path.join(w, "out", "train", "adapter", "adapter_model.safetensors"))
    expect(adapter(ws).equals(adapter(straight))).toBe(true)
  }, 400_000)

  it("Ctrl-C cancels the job; a job cancelled on the cluster is one clear line; status names a job a killed run left; a wrong partition fails before anything runs", async () => {
    const ws = makeWorkspace()
    const c = cliAsync(ws, ["run", "slow", "--executor", "slurm"], cluster.env)
    await waitFor(() => fs.existsSync(path.join(ws, "runs.log")) && read(ws, "runs.log").includes("slow-started"), 60_000)
    expect(cluster.queue()).toHaveLength(1)
    c.child.kill("SIGINT")
    await c.done
    await waitFor(() => cluster.queue().length === 0, 60_000) // beyond KillWait, on a loaded machine
    expect(fs.existsSync(path.join(ws, "pipeline.lock"))).toBe(false) // nothing succeeded, nothing recorded
    expect(fs.readdirSync(path.join(ws, ".pipeline", "tmp")).filter((n) => n.startsWith("run-"))).toEqual([])

    // cancelled from outside, as a node lost or a time limit would end it
    const d = cliAsync(ws, ["run", "slow", "--executor", "slurm"], cluster.env)
    await waitFor(() => (read(ws, "runs.log").match(/slow-started/g) ?? []).length >= 2, 60_000)
    const id = cluster.queue()[0]!.trim().split(/\s+/)[0]!
    const { spawnSync } = await import("node:child_process")
    spawnSync("scancel", [id], { env: { ...process.env, ...cluster.env } })
    const r = await d.done
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(new RegExp(`^error: stage slow failed: slurm job ${id} CANCELLED on \\S+: .*\\(log: \\.pipeline/jobs/slow-[0-9a-f]+/job\\.log\\)`))

    // the controller killed outright (no chance to cancel): status names the job it left
    const e = cliAsync(ws, ["run", "slow", "--executor", "slurm"], cluster.env)
    await waitFor(() => (read(ws, "runs.log").match(/slow-started/g) ?? []).length >= 3, 60_000)
    e.child.kill("SIGKILL")
    await e.done
    const left = cluster.queue()[0]!.trim().split(/\s+/)[0]!
    const st = await run(ws, ["status", "slow"])
    expect(st.stdout).toContain(`slurm job ${left} (slow) is still running from an earlier run; scancel ${left} to stop it`)
    spawnSync("scancel", [left], { env: { ...process.env, ...cluster.env } })
    await waitFor(() => cluster.queue().length === 0, 60_000) // beyond KillWait, on a loaded machine
    expect((await run(ws, ["status", "slow"])).stdout).not.toContain("earlier run")

    const before = fs.existsSync(path.join(ws, "runs.log")) ? read(ws, "runs.log") : ""
    fs.appendFileSync(path.join(ws, "pipeline.yaml"), "executors: { c: { kind: slurm, partition: gpu-nope } }\n")
    const bad = await run(ws, ["run", "c"])
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim()).toBe("error: executors.c: Slurm has no partition gpu-nope (partitions: debug)")
    expect(read(ws, "runs.log")).toBe(before)
  }, 180_000)
})

describe("exec-stage (what a node runs)", () => {
  it("refuses to run when the code on the node differs from the plan's, and records why", async () => {
    const ws = makeWorkspace()
    const staging = path.join(ws, ".pipeline", "tmp", "run-a-test")
    fs.mkdirSync(staging, { recursive: true })
    const job = path.join(ws, "job.json")
    const result = path.join(ws, "result.json")
    const write = (code: Record<string, string>) =>
      fs.writeFileSync(
        job,
        JSON.stringify({ version: 1, stage: "a", key: "k", code, config: undefined, sets: [], inputs: {}, outputs: { text: path.join(staging, "a.txt") }, scratchDir: path.join(ws, ".pipeline", "scratch", "a"), resultFile: result })
      )
    write({ "stages/chain.ts": "blake3:0000000000000000000000000000000000000000000000000000000000000000" })
    const r = await cliAsync(ws, ["exec-stage", job]).done
    expect(r.code).toBe(1)
    expect(JSON.parse(read(ws, "result.json")).error).toBe("the code on this node differs from the plan's (stages/chain.ts)")
    expect(fs.existsSync(path.join(staging, "a.txt"))).toBe(false)
    expect(fs.existsSync(path.join(ws, "runs.log"))).toBe(false)
  })
})
