/**
 * Vitest global setup: (re)builds the native addon once before any test file
 * runs (`cmake-js compile -d native`, incremental: a no-op when the build is
 * current), so no test runs a stale binary and no two test files build at once.
 */
import { spawnSync } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export default function setup(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
  const cmakeJs = path.join(root, "node_modules", "cmake-js", "bin", "cmake-js")
  const r = spawnSync(process.execPath, [cmakeJs, "compile", "-d", "native"], { cwd: root, encoding: "utf8" })
  if (r.status !== 0) throw new Error(`building the native addon failed (exit ${r.status}); it needs cmake and a C++17 compiler:\n${r.stdout}\n${r.stderr}`)
}
