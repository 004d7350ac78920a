/**
 * Vitest global setup: every temporary directory the tests make (workspaces,
 * servers' stores, model fixtures) goes under one directory for the run, which
 * is removed when the run ends, so a suite run leaves nothing in /tmp (the
 * tests make about 3,000 directories and 20 GB a run). `KEEP_TEST_TMP=1` keeps
 * it for a look after a failure; its path is printed.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

export default function setup(): () => void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-tests-"))
  // the test workers are forks of this process: they inherit it, and os.tmpdir() reads it
  process.env["TMPDIR"] = dir
  return () => {
    if (process.env["KEEP_TEST_TMP"] === "1") console.log(`test files kept in ${dir}`)
    else fs.rmSync(dir, { recursive: true, force: true })
  }
}
