/**
 * The embedded demo end to end through the real CLI, as the README's main job
 * runs it: the data stages on the bundled sample, then QLoRA on the tiny model.
 * Its validation loss must fall by at least 10% from the untrained adapter's.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { BIN, NODE, REPO } from "./helpers.ts"

describe("the demo", () => {
  it("trains the tiny model on the sample and its validation loss falls by at least 10%", () => {
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), "demo-"))
    fs.writeFileSync(path.join(ws, "pipeline.ts"), `import def from ${JSON.stringify(path.join(REPO, "pipeline.ts"))}\nexport default { ...def, root: import.meta.dirname }\n`)
    const yaml = fs.readFileSync(path.join(REPO, "pipeline.yaml"), "utf8").replace("source: data/bitext-sample.csv", `source: ${path.join(REPO, "data", "bitext-sample.csv")}`)
    fs.writeFileSync(path.join(ws, "pipeline.yaml"), yaml)
    const r = spawnSync(NODE, [BIN, "run", "train"], { cwd: ws, encoding: "utf8", env: { ...process.env, CI: "true" } })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: [\d.]+/)
    const metrics = fs.readFileSync(path.join(ws, "out", "train", "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; loss?: number; valLoss?: number })
    const vals = metrics.filter((m) => m.valLoss !== undefined).map((m) => m.valLoss!)
    expect(vals.length).toBeGreaterThanOrEqual(2)
    expect(vals.at(-1)!).toBeLessThanOrEqual(vals[0]! * 0.9)
    expect(fs.existsSync(path.join(ws, "out", "train", "adapter", "adapter_model.safetensors"))).toBe(true)
  }, 300_000)
})

describe("the train stage after kill -9", () => {
  const workspace = () => {
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), "resume-"))
    fs.writeFileSync(path.join(ws, "pipeline.ts"), `import def from ${JSON.stringify(path.join(REPO, "pipeline.ts"))}\nexport default { ...def, root: import.meta.dirname }\n`)
    const yaml = fs
      .readFileSync(path.join(REPO, "pipeline.yaml"), "utf8")
      .replace("source: data/bitext-sample.csv", `source: ${path.join(REPO, "data", "bitext-sample.csv")}`)
      .replace("maxSteps: 40", "maxSteps: 12")
      .replace("batchSize: 2", "batchSize: 1")
      .replace("checkpointEvery: 10", "checkpointEvery: 3")
    fs.writeFileSync(path.join(ws, "pipeline.yaml"), yaml)
    return ws
  }

  it("resumes from its latest checkpoint, says so, and ends with the adapter of an uninterrupted run", async () => {
    const straight = workspace()
    expect(spawnSync(NODE, [BIN, "run", "train"], { cwd: straight, encoding: "utf8", env: { ...process.env, CI: "true" } }).status).toBe(0)

    const ws = workspace()
    const child = spawn(NODE, [BIN, "run", "train"], { cwd: ws, env: { ...process.env, CI: "true" }, detached: true, stdio: "ignore" })
    const scratch = path.join(ws, ".pipeline", "scratch", "train")
    const started = Date.now()
    while (!(fs.existsSync(scratch) && fs.readdirSync(scratch).some((f) => /^ckpt-\d+$/.test(f)))) {
      if (Date.now() - started > 120_000) throw new Error("no checkpoint appeared")
      await new Promise((r) => setTimeout(r, 100))
    }
    process.kill(-child.pid!, "SIGKILL") // the engine and the trainer it started
    await new Promise((r) => child.on("close", r))
    const again = spawnSync(NODE, [BIN, "run", "train"], { cwd: ws, encoding: "utf8", env: { ...process.env, CI: "true" } })
    expect(again.status, again.stderr).toBe(0)
    expect(again.stdout).toMatch(/resuming from the checkpoint at step \d+/)
    const adapter = (w: string) => fs.readFileSync(path.join(w, "out", "train", "adapter", "adapter_model.safetensors"))
    expect(adapter(ws).equals(adapter(straight))).toBe(true)
  }, 300_000)
})
