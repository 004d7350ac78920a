/** `pipeline metrics diff` and `pipeline params diff` against a git revision's lock, on the fixture pipeline. */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { cli, makeWorkspace } from "./helpers.ts"

const git = (ws: string, ...args: Array<string>) => {
  const r = spawnSync("git", ["-C", ws, "-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { encoding: "utf8" })
  if (r.status !== 0) throw new Error(r.stderr)
  return r.stdout
}

describe("comparing runs", () => {
  it("metrics diff and params diff show what a change did, as a table and as JSON", () => {
    const ws = makeWorkspace()
    git(ws, "init", "-q")
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    git(ws, "add", "pipeline.yaml", "pipeline.lock")
    git(ws, "commit", "-qm", "baseline")
    const yaml = path.join(ws, "pipeline.yaml")
    fs.writeFileSync(yaml, fs.readFileSync(yaml, "utf8").replace('a: { suffix: "-X" }', 'a: { suffix: "-longer" }'))

    // before a run, the workspace's metrics are those of HEAD
    expect(cli(ws, ["metrics", "diff"]).stdout).toMatch(/out\/c\/metrics\.json\s+length\s+14\s+14\s+\+0/)
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    const m = cli(ws, ["metrics", "diff"])
    expect(m.code, m.stderr).toBe(0)
    expect(m.stdout.split("\n")[0]).toMatch(/^file\s+metric\s+HEAD\s+workspace\s+change$/)
    expect(m.stdout).toMatch(/out\/c\/metrics\.json\s+length\s+14\s+19\s+\+5/)
    const mj = JSON.parse(cli(ws, ["metrics", "diff", "HEAD", "--json"]).stdout) as { rows: Array<{ metric: string; old: number; new: number; change: number }> }
    expect(mj.rows).toEqual([{ file: "out/c/metrics.json", metric: "length", old: 14, new: 19, change: 5 }])

    const p = cli(ws, ["params", "diff"])
    expect(p.stdout.trim().split("\n")).toEqual([expect.stringMatching(/^stage\s+param\s+HEAD\s+workspace$/), expect.stringMatching(/^a\s+a\.suffix\s+"-X"\s+"-longer"$/)])
    expect(JSON.parse(cli(ws, ["params", "diff", "--json"]).stdout).rows).toEqual([{ stage: "a", param: "a.suffix", old: '"-X"', new: '"-longer"' }])

    // the old metrics come from the cache: gone from it, the row says so instead of guessing
    fs.rmSync(path.join(ws, ".pipeline", "cache"), { recursive: true, force: true })
    const gone = cli(ws, ["metrics", "diff"])
    expect(gone.stdout).toMatch(/not compared: out\/c\/metrics\.json at HEAD \(blake3:[0-9a-f]+…\): not in the local cache; --remote may have it/)

    const bad = cli(ws, ["params", "diff", "no-such-rev"])
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim().split("\n")).toHaveLength(1)
    expect(bad.stderr).toMatch(/^error: pipeline\.lock at no-such-rev: /)
  })
})
