/**
 * Publishing a set of files into a directory outside the store, without ever
 * deleting what the publish did not write.
 *
 * - The target keeps a manifest, `.pipeline-publish.json`: the stage key that
 *   published it and every file it wrote, with size and digest. Only a
 *   directory that is absent, empty, or holds exactly what a previous publish
 *   recorded can be published into; anything else in it (a file the user put
 *   there, the workspace's own data) makes the publish refuse, naming it.
 * - The new content is built in a fresh sibling directory and swapped in with
 *   two renames; the old copy (by then known to hold only published files) is
 *   removed after. A kill -9 at any moment leaves either the old or the new
 *   publish in place (or, between the two renames, none, with both beside it
 *   under `.<name>.publish-*`); the next publish removes those leftovers.
 * - `publishedProblem` tells whether the target still holds what a key
 *   produced (the engine asks before counting the stage as cached or
 *   restorable), so a restore can never leave an older publish in place.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { randomBytes } from "node:crypto"

export const MANIFEST = ".pipeline-publish.json"

export interface PublishedFile {
  readonly path: string
  readonly size: number
  readonly digest: string
  /** on a remote target: what the target calls this content (an S3 ETag, a Hub blob or LFS oid) */
  readonly remote?: string
}

export interface Manifest {
  readonly publisher: "finetune-pipeline"
  readonly key: string
  readonly files: ReadonlyArray<PublishedFile>
}

export const isManifest = (u: unknown): u is Manifest => {
  const m = u as Partial<Manifest> | null
  return (
    typeof m === "object" && m !== null && m.publisher === "finetune-pipeline" && typeof m.key === "string" && Array.isArray(m.files) &&
    m.files.every(
      (f) =>
        typeof f === "object" && f !== null && typeof f.path === "string" && typeof f.size === "number" && typeof f.digest === "string" &&
        (f.remote === undefined || typeof f.remote === "string")
    )
  )
}

/** The manifest a previous publish left in `dest`: absent, damaged, or the record. */
export const readManifest = (dest: string): Manifest | "absent" | "damaged" => {
  let text: string
  try {
    text = fs.readFileSync(path.join(dest, MANIFEST), "utf8")
  } catch {
    return "absent"
  }
  try {
    const m = JSON.parse(text) as unknown
    return isManifest(m) ? m : "damaged"
  } catch {
    return "damaged"
  }
}

/** Every entry under `dir` (files, links, directories), relative, with `/`. */
const listAll = (dir: string): Array<{ rel: string; isDir: boolean }> => {
  const out: Array<{ rel: string; isDir: boolean }> = []
  const walk = (d: string, prefix: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const rel = prefix === "" ? e.name : `${prefix}/${e.name}`
      out.push({ rel, isDir: e.isDirectory() })
      if (e.isDirectory()) walk(path.join(d, e.name), rel)
    }
  }
  walk(dir, "")
  return out
}

/**
 * Why `dest` cannot be published into, or undefined: it is not a directory,
 * its manifest is damaged, or it holds something no publish recorded.
 */
export const targetProblem = (dest: string, label: string): string | undefined => {
  const st = fs.lstatSync(dest, { throwIfNoEntry: false })
  if (st === undefined) return undefined
  if (st.isSymbolicLink()) return `${label} is a symbolic link; publish into a real directory`
  if (!st.isDirectory()) return `${label} is a file, not a directory`
  const m = readManifest(dest)
  if (m === "damaged") return `${label}/${MANIFEST} is damaged, so what a previous publish wrote there is unknown; move the directory away or empty it`
  const recorded = new Set(m === "absent" ? [] : [MANIFEST, ...m.files.map((f) => f.path)])
  const dirs = new Set<string>()
  for (const r of recorded) for (let i = r.indexOf("/"); i >= 0; i = r.indexOf("/", i + 1)) dirs.add(r.slice(0, i))
  const foreign = listAll(dest).filter((e) => (e.isDir ? !dirs.has(e.rel) : !recorded.has(e.rel)))
  if (foreign.length === 0) return undefined
  const shown = foreign.slice(0, 3).map((e) => e.rel + (e.isDir ? "/" : "")).join(", ")
  return `${label} holds ${foreign.length} entr${foreign.length === 1 ? "y" : "ies"} that no publish wrote (${shown}${foreign.length > 3 ? ", …" : ""}); publishing there would delete them, so pick a new or empty directory`
}

/** Whether `dest` holds what the publish of `key` wrote, byte for byte; else why not. */
export const publishedProblem = (dest: string, label: string, key: string, digestFile: (abs: string) => string): string | undefined => {
  if (!fs.existsSync(dest)) return `not published: ${label} does not exist`
  const m = readManifest(dest)
  if (m === "absent") return `not published: ${label} has no ${MANIFEST}`
  if (m === "damaged") return `${label}/${MANIFEST} is damaged`
  if (m.key !== key) return `${label} holds another publish (other inputs or params)`
  for (const f of m.files) {
    const abs = path.join(dest, f.path)
    const st = fs.statSync(abs, { throwIfNoEntry: false })
    if (!st?.isFile()) return `published file missing: ${label}/${f.path}`
    if (st.size !== f.size || digestFile(abs) !== f.digest) return `published file modified: ${label}/${f.path}`
  }
  return undefined
}

const removeTree = (p: string): void => {
  try {
    fs.rmSync(p, { recursive: true, force: true })
  } catch {
    // read-only directories (copies of store objects keep their mode on some systems)
    const fix = (q: string): void => {
      const st = fs.lstatSync(q, { throwIfNoEntry: false })
      if (!st?.isDirectory()) return
      fs.chmodSync(q, 0o755)
      for (const n of fs.readdirSync(q)) fix(path.join(q, n))
    }
    fix(p)
    fs.rmSync(p, { recursive: true, force: true })
  }
}

const leftover = (base: string) => new RegExp(`^\\.${base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.publish-(new|old)-\\d+-[0-9a-f]{8}$`)

/**
 * Publishes `placed` (each a file or a directory, and the path it takes under
 * `dest`) into `dest`, recording the manifest. Refuses (throws with a one-line
 * message) when `targetProblem` says so. `digestFile` hashes the published
 * copies in place, so the manifest says what is really there.
 */
export const publish = (
  placed: ReadonlyArray<{ readonly rel: string; readonly src: string }>,
  dest: string,
  label: string,
  key: string,
  digestFile: (abs: string) => string
): Manifest => {
  const problem = targetProblem(dest, label)
  if (problem !== undefined) throw new Error(problem)
  const parent = path.dirname(dest)
  const base = path.basename(dest)
  fs.mkdirSync(parent, { recursive: true })
  // leftovers of a publish killed between its renames
  for (const n of fs.readdirSync(parent)) if (leftover(base).test(n)) removeTree(path.join(parent, n))
  const tag = () => `${process.pid}-${randomBytes(4).toString("hex")}`
  const staged = path.join(parent, `.${base}.publish-new-${tag()}`)
  try {
    const copied: Array<string> = []
    for (const { rel, src } of placed) fs.cpSync(src, path.join(staged, rel), { recursive: true, dereference: true, mode: fs.constants.COPYFILE_FICLONE })
    for (const e of listAll(staged)) {
      const abs = path.join(staged, e.rel)
      if (e.isDir) fs.chmodSync(abs, 0o755)
      else {
        fs.chmodSync(abs, 0o644)
        copied.push(e.rel)
      }
    }
    const files = copied.sort().map((rel) => {
      const abs = path.join(staged, rel)
      return { path: rel, size: fs.statSync(abs).size, digest: digestFile(abs) }
    })
    const manifest: Manifest = { publisher: "finetune-pipeline", key, files }
    fs.writeFileSync(path.join(staged, MANIFEST), JSON.stringify(manifest, null, 2) + "\n")
    if (fs.existsSync(dest)) {
      const old = path.join(parent, `.${base}.publish-old-${tag()}`)
      fs.renameSync(dest, old)
      fs.renameSync(staged, dest)
      removeTree(old)
    } else fs.renameSync(staged, dest)
    return manifest
  } catch (e) {
    removeTree(staged)
    throw e
  }
}
