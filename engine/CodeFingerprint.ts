/**
 * A stage's code fingerprint: the digest of its module and of every project
 * file it imports, transitively (relative imports only; packages are pinned by
 * the lockfile of npm). Not part of it:
 * - the engine's own files: framework, not stage code, so refactoring the
 *   engine does not rerun the pipeline;
 * - other stages' modules: a stage imports its upstream stages to name their
 *   outputs, and what those stages compute reaches it through their outputs'
 *   digests, not through its code (shared helpers belong in modules of their own);
 * - `import type` / `export type`: erased before anything runs.
 * Paths are workspace-relative so the fingerprint is the same on every machine.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Digest from "../cache/Digest.ts"

const IMPORT =
  /(?:^|[\s;}])(?:import|export)\s+(type\s+)?(?:[\w*{}\s,$]+\s+from\s+)?["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|new\s+URL\(\s*["']([^"']+\.[cm]?[jt]s)["']\s*,\s*import\.meta\.url\s*\)/g

/**
 * Relative imports of a module, and the modules it names with
 * `new URL("./worker.ts", import.meta.url)`: a worker a stage starts as a
 * child process is its code as much as an import is.
 */
export const importsOf = (source: string): Array<string> => {
  const out: Array<string> = []
  for (const m of source.matchAll(IMPORT)) {
    if (m[1] !== undefined) continue // type-only
    const spec = m[2] ?? m[3] ?? m[4]
    if (spec && (spec.startsWith("./") || spec.startsWith("../"))) out.push(spec)
  }
  return out
}

export interface CodeScope {
  readonly root: string
  /** absolute directories whose files are never part of a stage's code */
  readonly exclude: ReadonlyArray<string>
}

const inside = (file: string, dir: string): boolean => file === dir || file.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep)

/**
 * Files per stage are memoised per process: stages share most of their
 * imports, and a fingerprint is computed once per run.
 */
export class CodeFingerprinter {
  private readonly digests = new Map<string, { digest: Digest.Digest; imports: Array<string> } | null>()

  private readonly scope: CodeScope

  constructor(scope: CodeScope) {
    this.scope = scope
  }

  private read(file: string): { digest: Digest.Digest; imports: Array<string> } | null {
    let hit = this.digests.get(file)
    if (hit !== undefined) return hit
    try {
      const text = fs.readFileSync(file)
      const isSource = /\.(m|c)?[jt]sx?$/.test(file)
      hit = { digest: Digest.ofBytes(text), imports: isSource ? importsOf(text.toString("utf8")) : [] }
    } catch {
      hit = null
    }
    this.digests.set(file, hit)
    return hit
  }

  private relevant(file: string): boolean {
    return inside(file, this.scope.root) && !this.scope.exclude.some((d) => inside(file, d)) && !file.includes(`${path.sep}node_modules${path.sep}`)
  }

  /** workspace-relative path → digest, for the module and its project imports, plus extra files. */
  fingerprint(module: string, extraFiles: ReadonlyArray<string> = [], otherStages: ReadonlySet<string> = new Set()): Record<string, Digest.Digest> {
    const out: Record<string, Digest.Digest> = {}
    const seen = new Set<string>()
    const visit = (file: string): void => {
      if (seen.has(file)) return
      seen.add(file)
      const rec = this.read(file)
      const rel = path.relative(this.scope.root, file).split(path.sep).join("/")
      if (!rec) {
        out[rel] = Digest.ofBytes("missing") // a missing file is a change too
        return
      }
      out[rel] = rec.digest
      for (const spec of rec.imports) {
        const target = path.resolve(path.dirname(file), spec)
        if (this.relevant(target) && !otherStages.has(target)) visit(target)
      }
    }
    if (this.relevant(module) || inside(module, this.scope.root)) visit(module)
    for (const f of extraFiles) visit(path.resolve(this.scope.root, f))
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)))
  }
}
