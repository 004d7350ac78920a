/**
 * kill -9 at random moments (`npm run fuzz -- kills [N] [seed]`).
 *
 * The real pipeline (the demo, cut to seconds: 8 training steps with a
 * checkpoint every 2) runs in a scratch workspace; each round starts a run
 * (now and then a `gc`), lets it work for a random time, and kills its whole
 * process group with SIGKILL (the engine and the trainer or evaluator it
 * started). The next round is the immediate rerun. To spread the kills over
 * every stage, most rounds change one param to a value not seen before (an
 * entities seed, a learning rate, eval.maxSamples, …), so there is always
 * fresh work somewhere in the pipeline; two thirds of the kills are aimed at a
 * random moment inside one stage (so short stages are hit too), the others at
 * any moment of the run (planning, restores, the hand-over between stages).
 *
 * After every kill: `pipeline verify` must find no corrupt object and
 * pipeline.lock must decode. At the end a run with the default params must
 * succeed, `verify` must be clean, `status --ci` up to date, and every file in
 * out/ must equal, byte for byte, what a clean run in a fresh workspace wrote.
 * Prints a table; exits 1 on any violation.
 */
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { BIN, cli, makeDemoWorkspace } from "../tests/helpers.ts"

const STAGES = ["download", "entities", "toolcalls", "split", "tokenize", "train", "eval", "merge", "gguf", "upload"]

/** The demo cut to seconds: 8 training steps with a checkpoint every 2. */
const workspace = (name: string): string =>
  makeDemoWorkspace(
    (y) =>
      y
        .replace("maxSteps: 40", "maxSteps: 8")
        .replace("evalEvery: 10", "evalEvery: 4\n  evalSamples: 2")
        .replace("checkpointEvery: 10", "checkpointEvery: 2")
        .replace("eval: { maxSamples: 16, compareBase: true, gates: {} }", "eval: { maxSamples: 4, compareBase: true, gates: {} }"),
    `fuzz-${name}-`
  )

/**
 * Every file under out/ with its sha256 (published copies included). The
 * training metrics carry each step's measured tokens per second, the one
 * value no two runs share: it is left out of their comparison, every loss,
 * learning rate and gradient norm stays in.
 */
const snapshot = (ws: string): Map<string, string> => {
  const out = new Map<string, string>()
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else {
        let bytes: Buffer | string = fs.readFileSync(p)
        if (e.name === "metrics.jsonl")
          bytes = bytes.toString("utf8").split("\n").map((l) => (l === "" ? l : JSON.stringify({ ...JSON.parse(l), tokensPerSecond: undefined }))).join("\n")
        out.set(path.relative(ws, p), createHash("sha256").update(bytes).digest("hex"))
      }
    }
  }
  walk(path.join(ws, "out"))
  return out
}

/** A small seeded PRNG (mulberry32), so a failing sequence can be replayed. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/** For each stage, a change that makes it (and what follows) run again; `i` makes the value new. */
const rerun: Readonly<Record<string, (i: number) => string>> = {
  download: (i) => `model.seed=${i}`,
  entities: (i) => `entities.seed=${1000 + i}`,
  toolcalls: (i) => `toolcalls.seed=${1000 + i}`,
  split: (i) => `split.seed=${1000 + i}`,
  tokenize: (i) => `tokenize.maxSeqLen=${1000 + i}`,
  train: (i) => `train.seed=${1000 + i}`,
  eval: (i) => `eval.maxSamples=${2 + (i % 7)}`,
  merge: (i) => `train.lr=${(5e-3 + i * 1e-5).toExponential(6)}`,
  gguf: (i) => `train.seed=${1000 + i}`,
  upload: (i) => `upload.target=dir://out/pub${i % 4}`
}

interface Round {
  readonly what: string
  readonly killedIn: string
  readonly ms: number
}

export const killFuzz = async (kills = 50, seed = 11): Promise<number> => {
  const rand = prng(seed)
  process.stderr.write("clean reference run…\n")
  const ref = workspace("ref")
  const t0 = Date.now()
  const clean = cli(ref, ["run", "--json"])
  if (clean.code !== 0) throw new Error(`the clean run failed: ${clean.stderr}`)
  const cleanMs = Date.now() - t0
  // how long each stage took, to aim kills at every stage, short ones too
  const took = new Map((JSON.parse(clean.stdout) as { stages: Array<{ name: string; seconds: number }> }).stages.map((s) => [s.name, s.seconds * 1000]))
  const expected = snapshot(ref)

  const ws = workspace("kill")
  const rounds: Array<Round> = []
  const problems: Array<string> = []
  let completed = 0
  let i = 0
  while (rounds.length < kills) {
    i++
    // a third of the rounds are killed at any moment (planning, restores, between stages);
    // the others aim at one stage: change what makes it run, and kill it while it runs
    const target = rand() < 0.06 ? "gc" : rand() < 0.33 ? "any" : STAGES[Math.floor(rand() * STAGES.length)]!
    const gc = target === "gc"
    const args = gc ? ["gc"] : target === "any" ? ["run", "--set", Object.values(rerun)[Math.floor(rand() * STAGES.length)]!(i)] : ["run", "--set", rerun[target]!(i)]
    const delay = Math.floor(rand() * (target === "any" ? cleanMs * 1.1 : gc ? 600 : 1.2 * Math.max(50, took.get(target) ?? 1000)))
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ws, env: { ...process.env, CI: "true" }, detached: true, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let aimed: (() => void) | undefined
    const started = new Promise<void>((resolve) => (aimed = resolve))
    if (target === "any" || gc) aimed!()
    child.stdout.on("data", (d) => {
      out += d
      if (out.includes(`▶ ${target}: running`)) aimed!()
    })
    child.stderr.on("data", (d) => (out += d))
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)))
    const killed = await Promise.race([
      started.then(
        () =>
          new Promise<boolean>((resolve) =>
            setTimeout(() => {
              try {
                process.kill(-child.pid!, "SIGKILL")
                resolve(true)
              } catch {
                resolve(false)
              }
            }, delay)
          )
      ),
      exited.then(() => false)
    ])
    const code = await exited
    if (!killed) {
      completed++
      if (code !== 0) problems.push(`round ${i} (${args.join(" ")}) ended with exit ${code} without a kill: ${out.trim().split("\n").slice(-2).join(" | ")}`)
      continue
    }
    const running = [...out.matchAll(/▶ (\S+): running/g)].map((m) => m[1]!)
    const finished = new Set([...out.matchAll(/✓ (\S+): ran/g)].map((m) => m[1]!))
    const inStage = gc ? "gc" : ([...running].reverse().find((s) => !finished.has(s)) ?? "planning/restore")
    rounds.push({ what: args.slice(1).join(" ") || args[0]!, killedIn: inStage, ms: delay })
    const v = cli(ws, ["verify"])
    if (v.code !== 0) problems.push(`after kill ${rounds.length} (in ${inStage}): verify exit ${v.code}: ${v.stdout.trim().split("\n").slice(-3).join(" | ")} ${v.stderr.trim()}`)
    if (/internal error/.test(out + v.stderr)) problems.push(`after kill ${rounds.length}: an internal error: ${(out + v.stderr).slice(-400)}`)
    process.stderr.write(`kill ${rounds.length}/${kills} after ${delay} ms in ${inStage} (${args.join(" ")})\n`)
  }
  const final = cli(ws, ["run"])
  if (final.code !== 0) problems.push(`the final run failed: ${final.stderr.trim()}`)
  const v = cli(ws, ["verify"])
  if (v.code !== 0) problems.push(`the final verify failed: ${v.stdout.trim()}`)
  const st = cli(ws, ["status", "--ci"])
  if (st.code !== 0) problems.push(`status --ci after the final run: exit ${st.code}: ${st.stdout.trim()}`)
  const got = snapshot(ws)
  let differ = 0
  for (const [f, h] of expected) {
    if (f.startsWith("out/pub")) continue
    if (got.get(f) !== h) {
      differ++
      if (differ <= 5) problems.push(`${f} differs from the clean run's`)
    }
  }
  const byStage = new Map<string, number>()
  for (const r of rounds) byStage.set(r.killedIn, (byStage.get(r.killedIn) ?? 0) + 1)
  const order = [...STAGES, "planning/restore", "gc"]
  const lines = [
    `## kill -9 at random moments (seed ${seed})`,
    "",
    `A clean run of the cut-down demo took ${(cleanMs / 1000).toFixed(1)} s. ${rounds.length} rounds were killed (the whole process group, SIGKILL): a third at a random moment of the run, the others at a random moment of one stage they made run (a changed param), a few during \`gc\`; ${completed} more finished before their kill was due. Each kill was followed at once by \`verify\` and by the next round's run.`,
    "",
    "| killed during | kills |",
    "|---|---:|",
    ...order.filter((s) => byStage.has(s)).map((s) => `| ${s} | ${byStage.get(s)} |`),
    "",
    `| check | result |`,
    `|---|---|`,
    `| verify after each kill | ${problems.filter((p) => p.includes("verify exit")).length === 0 ? `clean ${rounds.length}/${rounds.length}` : "FAILED"} |`,
    `| final run, verify, status --ci | ${final.code === 0 && v.code === 0 && st.code === 0 ? "ok" : "FAILED"} |`,
    `| files in out/ equal to the clean run's | ${[...expected.keys()].filter((f) => !f.startsWith("out/pub")).length - differ} of ${[...expected.keys()].filter((f) => !f.startsWith("out/pub")).length} |`,
    ""
  ]
  if (problems.length > 0) lines.push("Problems:", ...problems.map((p) => `- ${p}`), "")
  console.log(lines.join("\n"))
  fs.rmSync(ref, { recursive: true, force: true })
  if (problems.length === 0) fs.rmSync(ws, { recursive: true, force: true })
  else console.log(`(workspace kept for inspection: ${ws})`)
  return problems.length === 0 ? 0 : 1
}
