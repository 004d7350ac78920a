/**
 * The content-addressed store under `.pipeline/cache`.
 *
 * objects/ab/cdef…  one file per digest, read-only. A directory output is
 *                   stored as its files plus a tree object: canonical JSON of
 *                   its entries, whose digest is the directory's digest.
 * corrupt/          objects that `verify` (or a restore) found damaged; they
 *                   are never restored and `gc` deletes them.
 *
 * Objects enter by rename from the staging area (same filesystem), so an object
 * is either complete or absent: `kill -9` cannot leave half of one.
 */
import type * as nodeFsModule from "node:fs"
import * as path from "node:path"
import * as Digest from "./Digest.ts"
import { canonicalJson } from "./Canonical.ts"
import { tempName, type Warn, writeFileAtomic } from "./Atomic.ts"
import { relativePathProblem } from "./Paths.ts"
import { type Fs, nodeFs } from "./Fs.ts"
import type { StatCache } from "./StatCache.ts"

export type OutputKind = "file" | "dir"

/** What a stage output is, in the lock and the run-cache. */
export interface OutputRecord {
  readonly path: string
  readonly kind: OutputKind
  readonly digest: Digest.Digest
  readonly size: number
}

interface TreeEntry {
  readonly path: string
  readonly digest: Digest.Digest
  readonly size: number
  readonly executable: boolean
}
interface Tree {
  readonly type: "tree"
  readonly entries: ReadonlyArray<TreeEntry>
}

/** Why a parsed tree object cannot be used, or undefined when it can. */
const treeProblem = (u: unknown): string | undefined => {
  if (typeof u !== "object" || u === null || (u as { type?: unknown }).type !== "tree") return "not a tree object"
  const entries = (u as { entries?: unknown }).entries
  if (!Array.isArray(entries)) return "not a tree object"
  const files = new Set<string>()
  for (const e of entries as Array<Partial<TreeEntry> | null>) {
    if (typeof e !== "object" || e === null) return "an entry is not an object"
    const bad = relativePathProblem(e.path)
    if (bad !== undefined) return `entry path ${JSON.stringify(e.path)} ${bad}`
    if (!Digest.isDigest(e.digest) || typeof e.size !== "number" || !(e.size >= 0) || typeof e.executable !== "boolean")
      return `entry ${e.path} is malformed`
    if (files.has(e.path!)) return `entry ${e.path} appears twice`
    files.add(e.path!)
  }
  // a file cannot also be a directory of another entry
  for (const f of files) {
    const parts = f.split("/")
    for (let i = 1; i < parts.length; i++) if (files.has(parts.slice(0, i).join("/"))) return `entry ${f} lies inside the file ${parts.slice(0, i).join("/")}`
  }
  return undefined
}
export type LinkMode = "reflink" | "hardlink" | "copy"

export class Store {
  readonly objectsDir: string
  readonly corruptDir: string
  private linkMode: LinkMode | undefined

  readonly root: string
  private readonly stats: StatCache
  private readonly warn: Warn
  private readonly fs: Fs

  constructor(root: string, stats: StatCache, warn: Warn = () => {}, files: Fs = nodeFs) {
    this.root = root
    this.stats = stats
    this.warn = warn
    this.fs = files
    this.objectsDir = path.join(root, "objects")
    this.corruptDir = path.join(root, "corrupt")
  }

  objectPath(digest: Digest.Digest): string {
    const hex = Digest.digestHex(digest)
    return path.join(this.objectsDir, hex.slice(0, 2), hex.slice(2))
  }

  has(digest: Digest.Digest): boolean {
    return this.fs.existsSync(this.objectPath(digest))
  }

  /** Moves a finished file into the store (or drops it when the store already has it). */
  ingestFile(file: string): { digest: Digest.Digest; size: number } {
    const { digest, bytes } = Digest.ofFile(file, this.fs)
    const dest = this.objectPath(digest)
    if (this.fs.existsSync(dest) && this.intact(digest)) {
      this.fs.rmSync(file, { force: true })
    } else {
      this.fs.mkdirSync(path.dirname(dest), { recursive: true })
      this.fs.chmodSync(file, (this.fs.statSync(file).mode & 0o111) !== 0 ? 0o555 : 0o444)
      this.fs.renameSync(file, dest)
    }
    this.stats.record(dest, digest)
    return { digest, size: bytes }
  }

  /**
   * Moves a file whose digest the caller has just computed from its bytes (a
   * download hashed as it arrived) into the store, without reading it again.
   */
  ingestHashed(file: string, digest: Digest.Digest): void {
    const dest = this.objectPath(digest)
    if (this.fs.existsSync(dest) && this.intact(digest)) {
      this.fs.rmSync(file, { force: true })
    } else {
      this.fs.mkdirSync(path.dirname(dest), { recursive: true })
      this.fs.chmodSync(file, 0o444)
      this.fs.renameSync(file, dest)
    }
    this.stats.record(dest, digest)
  }

  /** Stores a small blob (tree manifests). */
  private putBlob(data: string): Digest.Digest {
    const digest = Digest.ofBytes(data)
    const dest = this.objectPath(digest)
    if (!this.fs.existsSync(dest)) {
      writeFileAtomic(dest, data, 0o444, this.fs)
    }
    return digest
  }

  /** Ingests a staged output (file or directory tree) and returns its record. */
  ingest(staged: string, relPath: string, kind: OutputKind): OutputRecord {
    if (kind === "file") {
      const { digest, size } = this.ingestFile(staged)
      return { path: relPath, kind, digest, size }
    }
    const entries: Array<TreeEntry> = []
    const walk = (dir: string, prefix: string): void => {
      for (const d of this.fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const abs = path.join(dir, d.name)
        const rel = prefix === "" ? d.name : `${prefix}/${d.name}`
        if (d.isDirectory()) walk(abs, rel)
        else if (d.isFile()) {
          const executable = (this.fs.statSync(abs).mode & 0o111) !== 0
          const { digest, size } = this.ingestFile(abs)
          entries.push({ path: rel, digest, size, executable })
        } else {
          throw new Error(`${relPath}/${rel}: only regular files and directories can be stage outputs`)
        }
      }
    }
    walk(staged, "")
    const tree: Tree = { type: "tree", entries }
    const digest = this.putBlob(canonicalJson(tree))
    return { path: relPath, kind, digest, size: entries.reduce((n, e) => n + e.size, 0) }
  }

  /**
   * The tree object of a directory output, or undefined when it is missing,
   * damaged or not a valid tree (then it is quarantined and reported): a tree
   * is checked against its digest and its entry paths must be plain relative
   * paths before anything is built from it.
   */
  readTree(digest: Digest.Digest): Tree | undefined {
    if (!this.intact(digest)) return undefined
    let parsed: unknown
    try {
      parsed = JSON.parse(this.fs.readFileSync(this.objectPath(digest), "utf8"))
    } catch {
      parsed = undefined
    }
    const problem = treeProblem(parsed)
    if (problem === undefined) return parsed as Tree
    this.warn(`cache object ${digest}: ${problem}; it was moved to .pipeline/cache/corrupt and will not be restored`)
    this.quarantine(digest)
    return undefined
  }

  /** Every object an output needs (the tree object and its files). */
  objectsOf(rec: Pick<OutputRecord, "kind" | "digest">): Array<Digest.Digest> {
    if (rec.kind === "file") return [rec.digest]
    if (!this.has(rec.digest)) return [rec.digest]
    return [rec.digest, ...(this.readTree(rec.digest)?.entries.map((e) => e.digest) ?? [])]
  }

  /**
   * Whether an object is present and matches its digest. Uses the stat cache,
   * so an untouched object costs one stat; a changed one is re-hashed, and a
   * damaged one is moved to corrupt/ so it is never restored.
   */
  intact(digest: Digest.Digest): boolean {
    const p = this.objectPath(digest)
    let st: nodeFsModule.Stats
    try {
      st = this.fs.statSync(p)
    } catch {
      return false
    }
    if (this.stats.hashFile(p, st).digest === digest) return true
    this.quarantine(digest)
    return false
  }

  /** Re-hashes an object from disk, ignoring the stat cache. */
  verifyObject(digest: Digest.Digest): boolean {
    const p = this.objectPath(digest)
    const ok = Digest.ofFile(p, this.fs).digest === digest
    if (ok) this.stats.record(p, digest)
    else this.quarantine(digest)
    return ok
  }

  quarantine(digest: Digest.Digest): void {
    const p = this.objectPath(digest)
    this.fs.mkdirSync(this.corruptDir, { recursive: true })
    try {
      this.fs.renameSync(p, path.join(this.corruptDir, Digest.digestHex(digest)))
    } catch {
      this.fs.rmSync(p, { force: true })
    }
    // links to it in out/ hold the same damaged bytes: hash them again before trusting them
    this.stats.forgetDigest(digest)
  }

  /** Whether an output can be materialised from this store (every object present and intact). */
  canRestore(rec: Pick<OutputRecord, "kind" | "digest">): boolean {
    if (!this.intact(rec.digest)) return false
    if (rec.kind === "dir" && this.readTree(rec.digest) === undefined) return false
    return this.objectsOf(rec).every((d) => this.intact(d))
  }

  /** Places one object at `dest`: reflink, else hard link, else copy. */
  private place(digest: Digest.Digest, dest: string, executable: boolean): void {
    const src = this.objectPath(digest)
    this.fs.mkdirSync(path.dirname(dest), { recursive: true })
    // a hard link shares the object's mode: when the object (shared by equal bytes) has the
    // other executable bit, this file gets its own copy
    const modeDiffers = ((this.fs.statSync(src).mode & 0o111) !== 0) !== executable
    const order: Array<LinkMode> = this.linkMode ? [this.linkMode, "copy"] : ["reflink", "hardlink", "copy"]
    if (modeDiffers) order.splice(order.indexOf("hardlink"), order.includes("hardlink") ? 1 : 0)
    for (const mode of order) {
      try {
        if (mode === "reflink") this.fs.copyFileSync(src, dest, this.fs.constants.COPYFILE_FICLONE_FORCE)
        else if (mode === "hardlink") this.fs.linkSync(src, dest)
        else this.fs.copyFileSync(src, dest)
        if (!modeDiffers) this.linkMode ??= mode
        break
      } catch (e) {
        if (mode === "copy") throw e
      }
    }
    // Hard links share the object's read-only mode; reflinks and copies get it here.
    if (this.fs.statSync(dest).nlink === 1) this.fs.chmodSync(dest, executable ? 0o555 : 0o444)
    this.stats.record(dest, digest)
  }

  /**
   * Builds an output at `dest` from the store. The caller builds into a temp
   * directory and renames it into place, so `out/` never holds half an output.
   */
  materialize(rec: Pick<OutputRecord, "kind" | "digest">, dest: string): void {
    if (rec.kind === "file") return this.place(rec.digest, dest, false)
    const tree = this.readTree(rec.digest)
    if (tree === undefined) throw new Error(`cache object ${rec.digest} (a directory) is missing or damaged`)
    this.fs.mkdirSync(dest, { recursive: true })
    for (const e of tree.entries) this.place(e.digest, path.join(dest, e.path), e.executable)
  }

  /** Every object in the store with its size. */
  *listObjects(): Generator<{ digest: Digest.Digest; size: number; mtimeMs: number }> {
    if (!this.fs.existsSync(this.objectsDir)) return
    for (const a of this.fs.readdirSync(this.objectsDir)) {
      const dir = path.join(this.objectsDir, a)
      for (const b of this.fs.readdirSync(dir)) {
        if (b.startsWith(".")) continue
        const st = this.fs.statSync(path.join(dir, b))
        yield { digest: `blake3:${a}${b}` as Digest.Digest, size: st.size, mtimeMs: st.mtimeMs }
      }
    }
  }

  remove(digest: Digest.Digest): void {
    const p = this.objectPath(digest)
    this.fs.rmSync(p, { force: true })
    this.stats.forget(p)
  }

  /** Total bytes held (objects only; out/ holds links to them). */
  usedBytes(): number {
    let n = 0
    for (const o of this.listObjects()) n += o.size
    return n
  }
}

/**
 * The digest a directory would have as a stage output (its tree object's
 * digest), computed in place through the stat cache: an unchanged directory
 * of any size costs one stat per file. Symbolic links are followed (model
 * directories in the Hugging Face cache are links into a blob store).
 */
export const digestTree = (dir: string, stats: StatCache, fs: Fs = nodeFs): { digest: Digest.Digest; size: number } => {
  const entries: Array<TreeEntry> = []
  const walk = (d: string, prefix: string): void => {
    for (const name of fs.readdirSync(d).sort()) {
      const abs = path.join(d, name)
      const rel = prefix === "" ? name : `${prefix}/${name}`
      const st = fs.statSync(abs)
      if (st.isDirectory()) walk(abs, rel)
      else if (st.isFile()) entries.push({ path: rel, digest: stats.hashFile(abs, st).digest, size: st.size, executable: (st.mode & 0o111) !== 0 })
    }
  }
  walk(dir, "")
  const tree: Tree = { type: "tree", entries }
  return { digest: Digest.ofBytes(canonicalJson(tree)), size: entries.reduce((n, e) => n + e.size, 0) }
}

/** Bytes of every regular file under a directory (links followed), without reading them. */
export const treeSize = (dir: string, fs: Fs = nodeFs): number => {
  let n = 0
  const walk = (d: string): void => {
    for (const name of fs.readdirSync(d)) {
      const st = fs.statSync(path.join(d, name), { throwIfNoEntry: false })
      if (st?.isDirectory()) walk(path.join(d, name))
      else if (st?.isFile()) n += st.size
    }
  }
  walk(dir)
  return n
}

/** Replaces a directory or file atomically enough: build beside, swap with two renames. */
export const swapInto = (built: string, dest: string, fs: Fs = nodeFs): void => {
  fs.mkdirSync(path.dirname(dest), { recursive: true })
  if (fs.existsSync(dest)) {
    const trash = tempName(dest)
    fs.renameSync(dest, trash)
    fs.renameSync(built, dest)
    removeTree(trash, fs)
  } else {
    fs.renameSync(built, dest)
  }
}

/** rm -rf that also clears read-only modes (store links are 0444). */
export const removeTree = (p: string, fs: Fs = nodeFs): void => {
  try {
    fs.rmSync(p, { recursive: true, force: true })
  } catch {
    const fix = (q: string): void => {
      try {
        const st = fs.lstatSync(q)
        if (st.isDirectory()) {
          fs.chmodSync(q, 0o755)
          for (const n of fs.readdirSync(q)) fix(path.join(q, n))
        }
      } catch {
        /* gone already */
      }
    }
    fix(p)
    fs.rmSync(p, { recursive: true, force: true })
  }
}
