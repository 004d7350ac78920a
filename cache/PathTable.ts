/**
 * The shape the stat cache and the parse memo share: a JSON file of derived
 * state mapping absolute paths to entries that start with the file's
 * (inode, size, mtime). It is loaded once per process, entry by entry: what
 * does not decode is dropped and said once (the file is a cache: the engine
 * recomputes what it lost). It is written back atomically only when something
 * changed, without entries of files that are gone, and a write that fails (a
 * full disk) is said and skipped: it costs time on the next run, nothing else.
 */
import type { Stats } from "node:fs"
import { type Fs, nodeFs } from "./Fs.ts"
import * as path from "node:path"
import { readJsonRecord, type Warn, writeFileAtomic } from "./Atomic.ts"

/** (inode, size, mtime) first, then what is remembered of the file. */
export type Stamped<V> = readonly [ino: number, size: number, mtimeMs: number, value: V]

/** Whether an entry's stamp is this stat's. */
export const sameStat = <V>(e: Stamped<V> | undefined, st: Stats): e is Stamped<V> =>
  e !== undefined && e[0] === st.ino && e[1] === st.size && e[2] === st.mtimeMs

export class PathTable<V> {
  readonly entries: Record<string, Stamped<V>> = {}
  dirty = false
  private readonly file: string | undefined
  private readonly warn: Warn

  /** `value` tells a valid remembered value; `redo` says what happens to a dropped entry ("hashed again"). */
  private readonly fs: Fs

  constructor(file: string | undefined, value: (u: unknown) => boolean, redo: string, warn: Warn, files: Fs = nodeFs) {
    this.file = file
    this.warn = warn
    this.fs = files
    if (file === undefined) return
    let bad = 0
    // a file that does not decode at all is rewritten by the next command that saves
    const raw = readJsonRecord(
      file,
      this.label(),
      (m) => {
        this.dirty = true
        warn(m)
      },
      files
    )
    for (const [p, e] of Object.entries(raw)) {
      const ok = Array.isArray(e) && e.length === 4 && typeof e[0] === "number" && typeof e[1] === "number" && typeof e[2] === "number" && value(e[3])
      if (ok) this.entries[p] = e as unknown as Stamped<V>
      else bad++
    }
    if (bad > 0) {
      warn(`${this.label()}: ignored ${bad} damaged entr${bad === 1 ? "y" : "ies"}; those files will be ${redo}`)
      this.dirty = true
    }
  }

  private label(): string {
    return `.pipeline/${path.basename(this.file ?? "")}`
  }

  set(p: string, e: Stamped<V>): void {
    this.entries[p] = e
    this.dirty = true
  }

  delete(p: string): void {
    if (p in this.entries) {
      delete this.entries[p]
      this.dirty = true
    }
  }

  save(): void {
    if (!this.dirty || this.file === undefined) return
    // drop entries of files that no longer exist so the file cannot grow forever
    for (const p of Object.keys(this.entries)) if (!this.fs.existsSync(p)) delete this.entries[p]
    try {
      writeFileAtomic(this.file, JSON.stringify(this.entries), undefined, this.fs)
    } catch (e) {
      this.warn(`${this.label()} could not be saved (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); it will be rebuilt`)
      return
    }
    this.dirty = false
  }
}
