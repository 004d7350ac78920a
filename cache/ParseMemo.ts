/**
 * Parsed YAML is a start-up cost (the lock of a ten-stage pipeline takes ~25 ms
 * to parse here, a fifth of a no-op run). This memo keeps each parsed document
 * keyed by its file's (inode, size, mtime), like the stat cache, and is written
 * back only by commands that may write (`run`), never by dry-run or status.
 */
import * as fs from "node:fs"
import { readJsonRecord, type Warn, writeFileAtomic } from "./Atomic.ts"

type Entry = readonly [ino: number, size: number, mtimeMs: number, value: unknown]

const isEntry = (u: unknown): u is Entry =>
  Array.isArray(u) && u.length === 4 && typeof u[0] === "number" && typeof u[1] === "number" && typeof u[2] === "number"

export class ParseMemo {
  private readonly entries: Record<string, Entry>
  private readonly file: string | undefined
  private dirty = false

  /** `warn` hears once when the file on disk cannot be used (it is then rebuilt). */
  private readonly warn: Warn

  constructor(file: string | undefined, warn: Warn = () => {}) {
    this.file = file
    this.warn = warn
    this.entries = {}
    if (file === undefined) return
    const raw = readJsonRecord(file, ".pipeline/parse-memo.json", warn)
    let bad = 0
    for (const [p, e] of Object.entries(raw)) {
      if (isEntry(e)) this.entries[p] = e
      else bad++
    }
    if (bad > 0) {
      warn(`.pipeline/parse-memo.json: ignored ${bad} damaged entr${bad === 1 ? "y" : "ies"}; those files will be parsed again`)
      this.dirty = true
    }
  }

  /** The parsed content of `path`, from the memo when the file is unchanged. */
  parse<A>(path: string, parse: (text: string) => A): A {
    const st = fs.statSync(path)
    const hit = this.entries[path]
    if (hit && hit[0] === st.ino && hit[1] === st.size && hit[2] === st.mtimeMs) return structuredClone(hit[3]) as A
    const value = parse(fs.readFileSync(path, "utf8"))
    this.entries[path] = [st.ino, st.size, st.mtimeMs, value]
    this.dirty = true
    return value
  }

  save(): void {
    if (!this.dirty || this.file === undefined) return
    for (const p of Object.keys(this.entries)) if (!fs.existsSync(p)) delete this.entries[p]
    // a cache that cannot be written (a full disk) costs time next run, nothing else
    try {
      writeFileAtomic(this.file, JSON.stringify(this.entries))
    } catch (e) {
      this.warn(`.pipeline/parse-memo.json could not be saved (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); it will be rebuilt`)
      return
    }
    this.dirty = false
  }
}
