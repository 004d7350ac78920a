/**
 * End-to-end helpers: a temp workspace holding the fixture pipeline
 * (tests/fixtures/ws), and the real CLI run in a child process on the pinned
 * Node, exactly as a user runs it.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
export const BIN = path.join(REPO, "bin", "pipeline.js")
export const NODE = process.execPath
const FIXTURE = path.join(REPO, "tests", "fixtures", "ws")

export interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

export const makeWorkspace = (): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pipeline-test-"))
  const engine = path.join(REPO, "engine", "index.ts")
  const copy = (from: string, to: string) => {
    for (const e of fs.readdirSync(from, { withFileTypes: true })) {
      const src = path.join(from, e.name)
      const dst = path.join(to, e.name)
      if (e.isDirectory()) {
        fs.mkdirSync(dst, { recursive: true })
        copy(src, dst)
      } else fs.writeFileSync(dst, fs.readFileSync(src, "utf8").replaceAll("__ENGINE__", engine))
    }
  }
  copy(FIXTURE, dir)
  return dir
}

export const cli = (ws: string, args: ReadonlyArray<string>, env: Record<string, string> = {}): Result => {
  const r = spawnSync(NODE, [BIN, ...args], { cwd: ws, encoding: "utf8", env: { ...process.env, CI: "true", ...env }, timeout: 120_000 })
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

export const cliAsync = (ws: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const child = spawn(NODE, [BIN, ...args], { cwd: ws, env: { ...process.env, CI: "true", ...env } })
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (d) => (stdout += d))
  child.stderr.on("data", (d) => (stderr += d))
  const done = new Promise<Result>((resolve) => child.on("close", (code, signal) => resolve({ code: code ?? (signal ? -1 : 0), stdout, stderr })))
  return { child, done, output: () => stdout + stderr }
}

export const runs = (ws: string): Array<string> => {
  const f = path.join(ws, "runs.log")
  const lines = fs.existsSync(f) ? fs.readFileSync(f, "utf8").split("\n").filter(Boolean) : []
  fs.rmSync(f, { force: true })
  return lines
}

export const read = (ws: string, rel: string) => fs.readFileSync(path.join(ws, rel), "utf8")

export const waitFor = async (pred: () => boolean, ms = 30_000) => {
  const t = Date.now()
  while (!pred()) {
    if (Date.now() - t > ms) throw new Error("timed out waiting")
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** Every file under a directory with its content digest-ish (size + mtime), for "nothing was written" checks. */
export const snapshot = (ws: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    if (!fs.existsSync(d)) return
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      const rel = path.relative(ws, p)
      if (rel.startsWith(path.join(".pipeline", "bundle"))) continue
      if (e.isDirectory()) walk(p)
      else {
        const st = fs.statSync(p)
        out[rel] = `${st.size}:${st.mtimeMs}`
      }
    }
  }
  walk(ws)
  return out
}

export const hasCommand = (cmd: string): boolean => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0

/** Relative L2 norm of a - b against b: how the native tests compare float tensors. */
export const relL2 = (a: Float32Array, b: Float32Array) => {
  let num = 0
  let den = 0
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2
    den += b[i]! ** 2
  }
  return Math.sqrt(num / Math.max(den, 1e-30))
}

/**
 * A workspace running this repository's pipeline (`pipeline.ts`) with the
 * demo's params, the bundled sample read from the repository, and `edit`
 * applied to the params text (to make training short, say).
 */
export const makeDemoWorkspace = (edit: (yaml: string) => string = (y) => y, prefix = "demo-"): string => {
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  fs.writeFileSync(path.join(ws, "pipeline.ts"), `import def from ${JSON.stringify(path.join(REPO, "pipeline.ts"))}\nexport default { ...def, root: import.meta.dirname }\n`)
  const yaml = fs.readFileSync(path.join(REPO, "pipeline.yaml"), "utf8").replace("source: data/bitext-sample.csv", `source: ${path.join(REPO, "data", "bitext-sample.csv")}`)
  fs.writeFileSync(path.join(ws, "pipeline.yaml"), edit(yaml))
  return ws
}

/** The demo's params cut down to seconds: two training steps, two eval samples, one short generation. */
export const quickDemo = (yaml: string): string => {
  const quick = yaml
    .replace("maxSteps: 40", "maxSteps: 2")
    .replace("evalEvery: 10", "evalEvery: 2\n  evalSamples: 1")
    .replace(/^eval: \{.*\}$/m, "eval: { maxSamples: 2, compareBase: false, generate: 1, maxNewTokens: 16, gates: {} }")
  // a demo edited so that these no longer apply would silently make every test using it slow
  for (const want of ["maxSteps: 2", "evalSamples: 1", "eval: { maxSamples: 2,"]) if (!quick.includes(want)) throw new Error(`quickDemo: pipeline.yaml no longer has what it cuts down (${want})`)
  return quick
}

/**
 * A tmpfs of `mb` megabytes (needs root, as CI runs); undefined where mounting
 * is not allowed, so tests of a full disk can say they were skipped.
 */
export const mountTmpfs = (mb: number): { dir: string; unmount: () => void } | undefined => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tmpfs-"))
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${mb}m`, "tmpfs", dir], { encoding: "utf8" })
  if (r.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true })
    return undefined
  }
  return { dir, unmount: () => void (spawnSync("umount", ["-l", dir]), fs.rmSync(dir, { recursive: true, force: true })) }
}
