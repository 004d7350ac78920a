/**
 * The stat cache: (path, inode, size, mtime) → digest. An unchanged file
 * is never read again; a file whose stat changed in any way is re-hashed. It
 * lives in one JSON file, loaded once per process and written back atomically
 * only when something changed (and never by a read-only command).
 */
import * as fs from "node:fs"
import * as Digest from "./Digest.ts"
import { readJsonRecord, type Warn, writeFileAtomic } from "./Atomic.ts"

// ctime is left out on purpose: linking a cache object into out/ changes the
// ctime of every link, and that must not force a re-read of gigabytes.
type Entry = readonly [ino: number, size: number, mtimeMs: number, digest: Digest.Digest]

const isEntry = (u: unknown): u is Entry =>
  Array.isArray(u) && u.length === 4 && typeof u[0] === "number" && typeof u[1] === "number" && typeof u[2] === "number" && Digest.isDigest(u[3])

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

  /** `warn` hears once when the file on disk cannot be used (it is then rebuilt). */
  private readonly warn: Warn

  constructor(file: string | undefined, warn: Warn = () => {}) {
    this.file = file
    this.warn = warn
    this.entries = {}
    if (file === undefined) return
    const raw = readJsonRecord(file, ".pipeline/stat-cache.json", warn)
    let bad = 0
    for (const [p, e] of Object.entries(raw)) {
      if (isEntry(e)) this.entries[p] = e
      else bad++
    }
    if (bad > 0) {
      warn(`.pipeline/stat-cache.json: ignored ${bad} damaged entr${bad === 1 ? "y" : "ies"}; those files will be hashed again`)
      this.dirty = true
    }
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

  /**
   * Forgets every path recorded with this digest: after an object is found
   * damaged, the links to it in out/ carry the damaged bytes under the same
   * (inode, size, mtime), so they must be hashed again, not trusted.
   */
  forgetDigest(digest: Digest.Digest): void {
    for (const [p, e] of Object.entries(this.entries))
      if (e[3] === digest) {
        delete this.entries[p]
        this.dirty = true
      }
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
    // a cache that cannot be written (a full disk) costs time next run, nothing else
    try {
      writeFileAtomic(this.file, JSON.stringify(this.entries))
    } catch (e) {
      this.warn(`.pipeline/stat-cache.json could not be saved (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); it will be rebuilt`)
      return
    }
    this.dirty = false
  }
}
