/**
 * The stat cache: (path, inode, size, mtime) → digest. An unchanged file
 * is never read again; a file whose stat changed in any way is re-hashed. It
 * lives in one JSON file, loaded once per process and written back atomically
 * only when something changed (and never by a read-only command).
 */
import type { Stats } from "node:fs"
import { type Fs, nodeFs } from "./Fs.ts"
import * as Digest from "./Digest.ts"
import type { Warn } from "./Atomic.ts"
import { PathTable, sameStat } from "./PathTable.ts"

// ctime is left out on purpose (see PathTable's stamp): linking a cache object
// into out/ changes the ctime of every link, and that must not force a re-read
// of gigabytes.

export interface HashResult {
  readonly digest: Digest.Digest
  readonly size: number
  /** bytes actually read to produce it: 0 when the stat cache answered */
  readonly bytesRead: number
}

export class StatCache {
  private readonly table: PathTable<Digest.Digest>
  bytesRead = 0

  /** `warn` hears once when the file on disk cannot be used (it is then rebuilt). */
  private readonly fs: Fs

  constructor(file: string | undefined, warn: Warn = () => {}, files: Fs = nodeFs) {
    this.fs = files
    this.table = new PathTable<Digest.Digest>(file, Digest.isDigest, "hashed again", warn, files)
  }

  /** Digest of a regular file, from the cache when its stat is unchanged. */
  hashFile(path: string, st: Stats = this.fs.statSync(path)): HashResult {
    const hit = this.table.entries[path]
    if (sameStat(hit, st)) return { digest: hit[3], size: st.size, bytesRead: 0 }
    const { digest, bytes } = Digest.ofFile(path, this.fs)
    this.bytesRead += bytes
    // A file still being written could change between stat and read: only
    // remember the digest when the stat after reading matches the one before.
    const after = this.fs.statSync(path)
    if (after.ino === st.ino && after.size === st.size && after.mtimeMs === st.mtimeMs) this.table.set(path, [st.ino, st.size, st.mtimeMs, digest])
    return { digest, size: bytes, bytesRead: bytes }
  }

  /** Digest if the stat cache knows this exact file, without reading it. */
  peek(path: string, st: Stats): Digest.Digest | undefined {
    const hit = this.table.entries[path]
    return sameStat(hit, st) ? hit[3] : undefined
  }

  /** Records a digest the caller has just established (e.g. a file linked from a verified object). */
  record(path: string, digest: Digest.Digest, st: Stats = this.fs.statSync(path)): void {
    this.table.set(path, [st.ino, st.size, st.mtimeMs, digest])
  }

  /**
   * Forgets every path recorded with this digest: after an object is found
   * damaged, the links to it in out/ carry the damaged bytes under the same
   * (inode, size, mtime), so they must be hashed again, not trusted.
   */
  forgetDigest(digest: Digest.Digest): void {
    for (const [p, e] of Object.entries(this.table.entries)) if (e[3] === digest) this.table.delete(p)
  }

  forget(path: string): void {
    this.table.delete(path)
  }

  save(): void {
    this.table.save()
  }
}
