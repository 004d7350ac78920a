/**
 * The stat cache: (path, inode, size, mtime) → digest. An unchanged file
 * is never read again; a file whose stat changed in any way is re-hashed. It
 * lives in one JSON file, loaded once per process and written back atomically
 * only when something changed (and never by a read-only command).
 */
import * as fs from "node:fs"
import * as Digest from "./Digest.ts"
import { readJsonOr, writeFileAtomic } from "./Atomic.ts"

// ctime is left out on purpose: linking a cache object into out/ changes the
// ctime of every link, and that must not force a re-read of gigabytes.
type Entry = readonly [ino: number, size: number, mtimeMs: number, digest: Digest.Digest]

export interface HashResult {
  readonly digest: Digest.Digest
  readonly size: number
  /** bytes actually read to produce it: 0 when the stat cache answered */
  readonly bytesRead: number
}

export class StatCache {
  private readonly entries: Record<string, Entry>
  private dirty = false
  bytesRead = 0

  private readonly file: string | undefined

  constructor(file: string | undefined) {
    this.file = file
    this.entries = file === undefined ? {} : readJsonOr<Record<string, Entry>>(file, {})
  }

  /** Digest of a regular file, from the cache when its stat is unchanged. */
  hashFile(path: string, st: fs.Stats = fs.statSync(path)): HashResult {
    const hit = this.entries[path]
    if (hit && hit[0] === st.ino && hit[1] === st.size && hit[2] === st.mtimeMs) {
      return { digest: hit[3], size: st.size, bytesRead: 0 }
    }
    const { digest, bytes } = Digest.ofFile(path)
    this.bytesRead += bytes
    // A file still being written could change between stat and read: only
    // remember the digest when the stat after reading matches the one before.
    const after = fs.statSync(path)
    if (after.ino === st.ino && after.size === st.size && after.mtimeMs === st.mtimeMs) {
      this.entries[path] = [st.ino, st.size, st.mtimeMs, digest]
      this.dirty = true
    }
    return { digest, size: bytes, bytesRead: bytes }
  }

  /** Digest if the stat cache knows this exact file, without reading it. */
  peek(path: string, st: fs.Stats): Digest.Digest | undefined {
    const hit = this.entries[path]
    return hit && hit[0] === st.ino && hit[1] === st.size && hit[2] === st.mtimeMs ? hit[3] : undefined
  }

  /** Records a digest the caller has just established (e.g. a file linked from a verified object). */
  record(path: string, digest: Digest.Digest, st: fs.Stats = fs.statSync(path)): void {
    this.entries[path] = [st.ino, st.size, st.mtimeMs, digest]
    this.dirty = true
  }

  forget(path: string): void {
    if (path in this.entries) {
      delete this.entries[path]
      this.dirty = true
    }
  }

  save(): void {
    if (!this.dirty || this.file === undefined) return
    // Drop entries of files that no longer exist so the cache cannot grow forever.
    for (const p of Object.keys(this.entries)) if (!fs.existsSync(p)) delete this.entries[p]
    writeFileAtomic(this.file, JSON.stringify(this.entries))
    this.dirty = false
  }
}
