/** The workspace lock under contention: a stale lock is taken over by exactly one newcomer. */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { NODE, REPO } from "./helpers.ts"

const contender = path.join(REPO, "tests", "fixtures", "lock-contender.ts")

const race = (dir: string, n: number) =>
  Promise.all(
    Array.from({ length: n }, () => {
      const child = spawn(NODE, [contender, dir])
      let out = ""
      child.stdout.on("data", (d) => (out += d))
      return new Promise<string>((resolve) => child.on("close", () => resolve(out.trim())))
    })
  )

describe("workspace lock", () => {
  it("lets exactly one of several newcomers take over a stale lock", async () => {
    for (let round = 0; round < 3; round++) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pipeline-lock-"))
      // a lock left by a process that no longer exists on this host
      fs.writeFileSync(path.join(dir, "lock"), JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname(), startedAt: "then", command: "run" }))
      const results = await race(dir, 5)
      expect(results.filter((r) => r === "won")).toHaveLength(1)
      expect(results.filter((r) => r === "lost")).toHaveLength(4)
      expect(fs.readdirSync(dir).filter((f) => f !== "lock")).toEqual([]) // no claimed leftovers
    }
  })
})
