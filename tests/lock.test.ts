/** The workspace lock under contention: a stale lock is taken over by exactly one newcomer. */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { NODE, REPO } from "./helpers.ts"

const contender = path.join(REPO, "tests", "fixtures", "lock-contender.ts")

/** Starts n contenders at once; each answers one line; the winner holds the lock until every answer is in. */
const race = async (dir: string, n: number, env: NodeJS.ProcessEnv) => {
  const children = Array.from({ length: n }, () => spawn(NODE, [contender, dir], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "inherit"] }))
  const answers = await Promise.all(
    children.map(
      (child) =>
        new Promise<string>((resolve) => {
          let out = ""
          child.stdout.on("data", (d) => {
            out += d
            if (out.includes("\n")) resolve(out.trim())
          })
          child.on("close", () => resolve(out.trim()))
        })
    )
  )
  await Promise.all(
    children.map((child) => {
      const closed = new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.on("close", () => resolve())))
      child.stdin.end()
      return closed
    })
  )
  return answers
}

describe("workspace lock", () => {
  for (const [mode, env] of [
    ["kernel lock", {}],
    ["file lock", { PIPELINE_FILE_LOCK: "1" }]
  ] as const) {
    it(`lets exactly one of several newcomers take over a stale lock (${mode})`, async () => {
      for (let round = 0; round < 3; round++) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pipeline-lock-"))
        // a lock left by a process that no longer exists on this host
        fs.writeFileSync(path.join(dir, "lock"), JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname(), startedAt: "then", command: "run" }))
        const results = await race(dir, 5, env)
        expect(results.filter((r) => r === "won")).toHaveLength(1)
        expect(results.filter((r) => r === "lost")).toHaveLength(4)
        expect(fs.readdirSync(dir).filter((f) => f !== "lock")).toEqual([]) // no claimed leftovers
        expect(fs.existsSync(path.join(dir, "lock"))).toBe(false) // the winner removed its lock on release
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  }
})
