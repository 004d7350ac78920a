/**
 * Parsed YAML is a start-up cost (the lock of a ten-stage pipeline takes ~25 ms
 * to parse here, a fifth of a no-op run). This memo keeps each parsed document
 * keyed by its file's (inode, size, mtime), like the stat cache, and is written
 * back only by commands that may write (`run`), never by dry-run or status.
 */
import type { Stats } from "node:fs"
import { type Fs, nodeFs } from "./Fs.ts"
import type { Warn } from "./Atomic.ts"
import { PathTable, sameStat } from "./PathTable.ts"

export class ParseMemo {
  private readonly table: PathTable<unknown>

  /** `warn` hears once when the file on disk cannot be used (it is then rebuilt). */
  constructor(file: string | undefined, warn: Warn = () => {}, files: Fs = nodeFs) {
    this.table = new PathTable<unknown>(file, () => true, "parsed again", warn, files)
  }

  /** The parsed content of `path` remembered for exactly this stat, or undefined. */
  get(path: string, st: Stats): unknown {
    const hit = this.table.entries[path]
    return sameStat(hit, st) ? structuredClone(hit[3]) : undefined
  }

  /** Remembers what `path` parsed to (only successes: a failure is not remembered). */
  set(path: string, st: Stats, value: unknown): void {
    this.table.set(path, [st.ino, st.size, st.mtimeMs, value])
  }

  save(): void {
    this.table.save()
  }
}
