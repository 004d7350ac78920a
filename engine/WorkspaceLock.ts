/**
 * The workspace lock: one `pipeline run` (or gc) at a time per workspace.
 * Created with link(2), which fails if the file exists, so two processes can
 * never both win. A lock whose process is gone (killed, crashed) is stale and
 * taken over: the newcomer claims it by renaming it away (only one rename of a
 * file can succeed), checks that what it claimed is the stale lock it saw, and
 * only then creates its own; if it claimed a live lock instead, it puts it back.
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { tempName } from "../cache/Atomic.ts"
import { WorkspaceLockedError } from "./Errors.ts"

interface Holder {
  readonly pid: number
  readonly host: string
  readonly startedAt: string
  readonly command: string
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

const readHolder = (file: string): Holder | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Holder
  } catch {
    return undefined
  }
}

const tryCreate = (file: string, holder: Holder): boolean => {
  const tmp = tempName(file)
  fs.writeFileSync(tmp, JSON.stringify(holder))
  try {
    fs.linkSync(tmp, file)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false
    throw e
  } finally {
    fs.rmSync(tmp, { force: true })
  }
}

const isStale = (h: Holder | undefined): boolean => h !== undefined && h.host === os.hostname() && !alive(h.pid)

/** One attempt: true when the lock is ours. */
const attempt = (file: string, holder: Holder): boolean => {
  if (tryCreate(file, holder)) return true
  const current = readHolder(file)
  if (current === undefined) {
    // Empty or unreadable: a lock whose writer died between link and... cannot
    // happen (content is written before link), so someone just released it.
    return false
  }
  if (!isStale(current)) return false
  const claimed = tempName(file)
  try {
    fs.renameSync(file, claimed)
  } catch {
    return false // another newcomer claimed it first
  }
  const got = readHolder(claimed)
  if (got && got.pid === current.pid && got.startedAt === current.startedAt) {
    fs.rmSync(claimed, { force: true })
    return tryCreate(file, holder)
  }
  // We took a live lock that a faster newcomer had just created: give it back.
  try {
    fs.linkSync(claimed, file)
  } catch {
    /* yet another run holds the workspace now; it keeps it */
  }
  fs.rmSync(claimed, { force: true })
  return false
}

/** Holds the workspace lock for the scope; `wait` polls instead of failing at once. */
export const acquire = (stateDir: string, options: { readonly wait: boolean; readonly command: string }) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      fs.mkdirSync(stateDir, { recursive: true })
      const file = path.join(stateDir, "lock")
      const holder: Holder = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString(), command: options.command }
      let announced = false
      for (;;) {
        if (attempt(file, holder)) return file
        const h = readHolder(file)
        const who = h ? `pid ${h.pid} (${h.command}, since ${h.startedAt})` : "another process"
        if (!options.wait)
          return yield* new WorkspaceLockedError({
            message: `the workspace is locked by ${who}: wait for it to finish, or pass --wait (lock: .pipeline/lock)`
          })
        if (!announced) {
          process.stderr.write(`waiting for ${who} to release the workspace lock…\n`)
          announced = true
        }
        yield* Effect.sleep(200)
      }
    }),
    (file) =>
      Effect.sync(() => {
        const h = readHolder(file)
        if (h && h.pid === process.pid) fs.rmSync(file, { force: true })
      })
  )
