/**
 * Paths that come from state files (`pipeline.lock`, run-cache entries, tree
 * objects) are data, not instructions: an edited lock must never make the
 * engine write, link or delete outside the stage's own `out/<stage>/`.
 *
 * A recorded output path is accepted only when it is `out/<stage>/` followed
 * by a relative path whose segments are plain names (no `..`, `.`, empty
 * segments, backslashes or NUL), and the engine never follows a symbolic link
 * below `out/<stage>/`: it builds those directories itself, so a link there is
 * somebody else's, and writing through it would land outside the workspace.
 */
import * as fs from "node:fs"
import * as path from "node:path"

/** Why `rel` is not a plain relative path, or undefined when it is one. */
export const relativePathProblem = (rel: unknown): string | undefined => {
  if (typeof rel !== "string") return "not a string"
  if (rel === "") return "empty"
  if (rel.includes("\0")) return "holds a NUL byte"
  if (rel.includes("\\")) return "holds a backslash"
  if (rel.startsWith("/")) return "is absolute"
  for (const seg of rel.split("/")) {
    if (seg === "") return "has an empty segment"
    if (seg === "." || seg === "..") return `has a ${seg} segment`
  }
  return undefined
}

/** Why a recorded output path is not inside `out/<stage>/`, or undefined when it is. */
export const outputPathProblem = (stage: string, rel: unknown): string | undefined => {
  const prefix = `out/${stage}/`
  if (typeof rel !== "string") return "not a string"
  if (!rel.startsWith(prefix)) return `is not inside ${prefix}`
  const inner = relativePathProblem(rel.slice(prefix.length))
  return inner === undefined ? undefined : `is not inside ${prefix} (${inner})`
}

/** Whether `child` is `parent` or lies below it (both absolute, normalised). */
export const isWithin = (child: string, parent: string): boolean => {
  const rel = path.relative(parent, child)
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel))
}

/**
 * The first symbolic link on the way from `base` (exclusive) down to `abs`
 * (inclusive), among the components that exist; undefined when there is none.
 */
export const symlinkOnPath = (base: string, abs: string): string | undefined => {
  const rel = path.relative(base, abs)
  if (rel === "" || rel.startsWith("..")) return undefined
  let at = base
  for (const seg of rel.split(path.sep)) {
    at = path.join(at, seg)
    let st: fs.Stats
    try {
      st = fs.lstatSync(at)
    } catch {
      return undefined // the rest does not exist yet
    }
    if (st.isSymbolicLink()) return at
  }
  return undefined
}

/**
 * The canonical form of a path that may not exist yet: the real path of its
 * longest existing ancestor, joined with the rest. Two spellings of one place
 * (through a symlink, with `..`) compare equal after this.
 */
export const canonical = (abs: string): string => {
  const rest: Array<string> = []
  let at = path.resolve(abs)
  for (;;) {
    try {
      return path.join(fs.realpathSync.native(at), ...rest.reverse())
    } catch {
      const up = path.dirname(at)
      if (up === at) return path.resolve(abs)
      rest.push(path.basename(at))
      at = up
    }
  }
}
