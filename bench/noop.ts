/**
 * No-op run of a fully cached ten-stage pipeline.
 *
 * Builds a temporary workspace holding the same ten-stage chain three ways: a
 * `pipeline.ts` for our engine (trivial TypeScript stages, stage i reads stage
 * i-1's output), a `Snakefile` (ten rules, `echo x > {output}`) and a
 * `Makefile`. Each tool runs once to produce every output (ours twice, so the
 * second run warms the bundle and Node's compile cache), then hyperfine times
 * the no-op: a fresh process that finds everything up to date. `node -e 0` is
 * timed too, as the floor any Node-based tool sits on.
 *
 * Goal: our no-op takes at most 1/5 of snakemake's.
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const NODE = process.execPath
const BIN = fileURLToPath(new URL("../bin/pipeline.js", import.meta.url))
const ENGINE = fileURLToPath(new URL("../engine/index.ts", import.meta.url))
// Absolute paths, not file: URLs: the bundler treats a file: URL as a bare
// external import, which would load a second copy of effect next to the bundled one.
const EFFECT = fileURLToPath(import.meta.resolve("effect/Effect"))
const STAGES = 10

const has = (tool: string): boolean => spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0

const pipelineTs = (): string => {
  const lines = [
    `import * as fs from "node:fs"`,
    `import * as Effect from ${JSON.stringify(EFFECT)}`,
    `import { Stage } from ${JSON.stringify(ENGINE)}`,
    ``
  ]
  for (let i = 0; i < STAGES; i++) {
    const inputs = i === 0 ? "{}" : `{ prev: s${i - 1}.out.out }`
    const body =
      i === 0
        ? `fs.writeFileSync(ctx.outputs.out, "x\\n")`
        : `fs.writeFileSync(ctx.outputs.out, fs.readFileSync(ctx.inputs.prev, "utf8") + "x\\n")`
    lines.push(
      `const s${i} = Stage.make({`,
      `  name: "s${i}",`,
      `  module: import.meta.url,`,
      `  params: {},`,
      `  inputs: ${inputs},`,
      `  outputs: { out: Stage.file("out.txt") },`,
      `  estimate: () => ({ bytes: { out: 10 }, seconds: 0 }),`,
      `  run: (ctx) => Effect.sync(() => ${body})`,
      `})`
    )
  }
  const names = Array.from({ length: STAGES }, (_, i) => `s${i}`).join(", ")
  lines.push(``, `export default { root: import.meta.dirname, stages: [${names}] }`, ``)
  return lines.join("\n")
}

const snakefile = (): string => {
  const rules = [`rule all:\n    input: "snake/s${STAGES - 1}.txt"\n`]
  for (let i = 0; i < STAGES; i++) {
    const input = i === 0 ? "" : `    input: "snake/s${i - 1}.txt"\n`
    rules.push(`rule s${i}:\n${input}    output: "snake/s${i}.txt"\n    shell: "echo x > {output}"\n`)
  }
  return rules.join("\n")
}

const makefile = (): string => {
  const rules = [`all: make/s${STAGES - 1}.txt\n`]
  for (let i = 0; i < STAGES; i++) {
    const dep = i === 0 ? "" : ` make/s${i - 1}.txt`
    rules.push(`make/s${i}.txt:${dep}\n\t@mkdir -p make\n\techo x > $@\n`)
  }
  return rules.join("\n")
}

export interface Row {
  readonly tool: string
  readonly meanMs?: number
  readonly stddevMs?: number
  readonly note?: string
}

/** Runs a command once, failing loudly if it does (a setup run must succeed). */
const once = (cwd: string, cmd: string, env: NodeJS.ProcessEnv = process.env): void => {
  const r = spawnSync("sh", ["-c", cmd], { cwd, env, encoding: "utf8" })
  if (r.status !== 0) throw new Error(`\`${cmd}\` failed (exit ${r.status}):\n${r.stdout}${r.stderr}`)
}

/** hyperfine one command: mean and stddev in ms. */
const hyperfine = (cwd: string, tool: string, cmd: string, prepare?: string): Row => {
  const json = path.join(cwd, `hyperfine-${tool.replace(/\W+/g, "_")}.json`)
  const args = ["--warmup", "3", "--runs", "20", "--style", "none", "--export-json", json]
  if (prepare !== undefined) args.push("--prepare", prepare)
  try {
    execFileSync("hyperfine", [...args, cmd], { cwd, stdio: ["ignore", "ignore", "pipe"] })
  } catch (e) {
    return { tool, note: `failed: ${String((e as { stderr?: string }).stderr ?? e).trim().split("\n")[0]}` }
  }
  const r = JSON.parse(fs.readFileSync(json, "utf8")).results[0] as { mean: number; stddev: number }
  return { tool, meanMs: r.mean * 1000, stddevMs: r.stddev * 1000 }
}

/** Checks that a no-op run of ours really ran nothing, so we time what we mean to. */
const checkNoop = (cwd: string, env: NodeJS.ProcessEnv): void => {
  const before = fs.statSync(path.join(cwd, "out", `s${STAGES - 1}`, "out.txt")).mtimeMs
  once(cwd, `"${NODE}" "${BIN}" run`, env)
  const after = fs.statSync(path.join(cwd, "out", `s${STAGES - 1}`, "out.txt")).mtimeMs
  if (before !== after) throw new Error("the no-op run of our pipeline re-ran a stage")
}

export const runNoop = (): Array<Row> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-noop-"))
  try {
    fs.writeFileSync(path.join(dir, "pipeline.ts"), pipelineTs())
    fs.writeFileSync(path.join(dir, "Snakefile"), snakefile())
    fs.writeFileSync(path.join(dir, "Makefile"), makefile())
    const ours = `"${NODE}" "${BIN}" run`
    const rows: Array<Row> = []

    once(dir, ours) // runs all ten stages, builds the bundle
    once(dir, ours) // warms the compile cache
    checkNoop(dir, process.env)
    rows.push(hyperfine(dir, "pipeline (ours)", ours))
    const noBundle = { ...process.env, PIPELINE_NO_BUNDLE: "1" }
    checkNoop(dir, noBundle)
    rows.push(hyperfine(dir, "pipeline, PIPELINE_NO_BUNDLE=1", `PIPELINE_NO_BUNDLE=1 ${ours}`))
    rows.push(hyperfine(dir, "node -e 0", `"${NODE}" -e 0`))

    if (has("snakemake")) {
      once(dir, "snakemake -c1 --quiet")
      rows.push(hyperfine(dir, "snakemake", "snakemake -c1 --quiet"))
    } else rows.push({ tool: "snakemake", note: "not installed" })

    if (has("make")) {
      once(dir, "make -s")
      rows.push(hyperfine(dir, "make", "make -s"))
    } else rows.push({ tool: "make", note: "not installed" })
    return rows
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const fmt = (n: number | undefined, digits = 1): string => (n === undefined ? "–" : n.toFixed(digits))

export const noopTable = (): string => {
  const rows = runNoop()
  const snake = rows.find((r) => r.tool === "snakemake")?.meanMs
  const ours = rows.find((r) => r.tool === "pipeline (ours)")?.meanMs
  const out = [
    "## No-op run of a fully cached ten-stage pipeline",
    "",
    "hyperfine, 3 warm-up runs + 20 timed runs each, fresh process per run.",
    "",
    "| tool | mean ms | ± stddev | ratio vs snakemake |",
    "|---|---:|---:|---:|"
  ]
  for (const r of rows) {
    if (r.meanMs === undefined) out.push(`| ${r.tool} | ${r.note ?? "–"} | | |`)
    else out.push(`| ${r.tool} | ${fmt(r.meanMs)} | ${fmt(r.stddevMs)} | ${snake ? (r.meanMs / snake).toFixed(3) : "–"} |`)
  }
  out.push("")
  if (ours !== undefined && snake !== undefined) {
    const met = ours <= snake / 5
    out.push(`Goal: ours ≤ 1/5 of snakemake (≤ ${fmt(snake / 5)} ms). Ours: ${fmt(ours)} ms, ${(snake / ours).toFixed(1)}× faster: ${met ? "met" : "NOT met"}.`)
  } else out.push("Goal: ours ≤ 1/5 of snakemake (not checked: a figure is missing).")
  return out.join("\n") + "\n"
}
