/**
 * Parsed YAML is a start-up cost (the lock of a ten-stage pipeline takes ~25 ms
 * to parse here, a fifth of a no-op run). This memo keeps each parsed document
 * keyed by its file's (inode, size, mtime), like the stat cache, and is written
 * back only by commands that may write (`run`), never by dry-run or status.
 */
import * as fs from "node:fs"
import { readJsonOr, writeFileAtomic } from "./Atomic.ts"

type Entry = readonly [ino: number, size: number, mtimeMs: number, value: unknown]

export class ParseMemo {
  private readonly entries: Record<string, Entry>
  private readonly file: string | undefined
  private dirty = false

  constructor(file: string | undefined) {
    this.file = file
    this.entries = file === undefined ? {} : readJsonOr<Record<string, Entry>>(file, {})
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
    writeFileAtomic(this.file, JSON.stringify(this.entries))
    this.dirty = false
  }
}
