/**
 * Atomic file writes: data goes to a temp file beside the target, then one
 * rename replaces the target. A reader (or a run after `kill -9`) sees either
 * the old file or the new one, never half of it; a leftover temp file is junk
 * that `gc` removes.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { randomBytes } from "node:crypto"

export const tempName = (target: string): string =>
  path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`)

export const writeFileAtomic = (target: string, data: string | Uint8Array, mode?: number): void => {
  fs.mkdirSync(path.dirname(target), { recursive: true })
  const tmp = tempName(target)
  try {
    fs.writeFileSync(tmp, data, mode === undefined ? undefined : { mode })
    fs.renameSync(tmp, target)
  } catch (e) {
    fs.rmSync(tmp, { force: true })
    throw e
  }
}

export const readJsonOr = <A>(file: string, fallback: A): A => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as A
  } catch {
    return fallback
  }
}
