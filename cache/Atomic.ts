/**
 * Atomic file writes: data goes to a temp file beside the target, then one
 * rename replaces the target. A reader (or a run after `kill -9`) sees either
 * the old file or the new one, never half of it; a leftover temp file is junk
 * that `gc` removes.
 */
import { type Fs, nodeFs } from "./Fs.ts"
import * as path from "node:path"
import { randomBytes } from "node:crypto"

export const tempName = (target: string): string =>
  path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`)

export const writeFileAtomic = (target: string, data: string | Uint8Array, mode?: number, fs: Fs = nodeFs): void => {
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

/** Says once that a piece of derived state could not be used (and is being ignored). */
export type Warn = (message: string) => void

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/**
 * Reads a JSON object of derived state (a cache of something the engine can
 * recompute). A missing file is the empty object; a file that does not decode
 * (garbage, `null`, an array, a partial write by another tool) is reported
 * through `warn` and treated as empty, so it is rebuilt instead of failing
 * every command until someone deletes it by hand.
 */
export const readJsonRecord = (file: string, displayName: string, warn: Warn, fs: Fs = nodeFs): Record<string, unknown> => {
  let text: string
  try {
    text = fs.readFileSync(file, "utf8")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") warn(`${displayName} could not be read (${(e as NodeJS.ErrnoException).code ?? "error"}); ignoring it, it will be rebuilt`)
    return {}
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    warn(`${displayName} is not valid JSON; ignoring it, it will be rebuilt`)
    return {}
  }
  if (!isRecord(value)) {
    warn(`${displayName} does not hold a JSON object; ignoring it, it will be rebuilt`)
    return {}
  }
  return value
}
