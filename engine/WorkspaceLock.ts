/**
 * The workspace lock: one `pipeline run` (or gc) at a time per workspace.
 *
 * On Linux the lock is held by the kernel: the holder binds a Unix socket in
 * the abstract namespace, named after the real path of `.pipeline/`. Only one
 * process can bind a name, and the kernel frees it the moment its holder dies
 * (kill -9 included, and before the dead process is reaped: a zombie holds no
 * sockets). There is no stale lock to detect and no pid to trust, so a run
 * started right after a kill -9 of the previous one gets the workspace.
 * `.pipeline/lock` then only says who holds it (pid, host, command, start) for
 * messages; an empty or garbage file there is overwritten.
 *
 * Two hosts sharing the workspace over a network filesystem do not share a
 * kernel: a lock file written by another host still refuses the run (we cannot
 * tell whether that run is alive), and the message says how to clear it.
 *
 * Elsewhere (no abstract sockets) the file is the lock, created with link(2),
 * which fails if the file exists, so two processes never both win. A lock
 * whose process is gone or a zombie, or whose content cannot be read (ours is
 * written before it is linked into place), is stale and is taken over: the
 * newcomer claims it by renaming it away (only one rename of a file can
 * succeed), checks that what it claimed is what it judged stale, and only then
 * creates its own; if it claimed a live lock instead, it puts it back.
 */
import * as Effect from "effect/Effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { tempName, writeFileAtomic } from "../cache/Atomic.ts"
import * as Digest from "../cache/Digest.ts"
import { WorkspaceLockedError } from "./Errors.ts"

interface Holder {
  readonly pid: number
  readonly host: string
  readonly startedAt: string
  readonly command: string
}

const isHolder = (u: unknown): u is Holder => {
  const h = u as Partial<Holder> | null
  return typeof h === "object" && h !== null && Number.isInteger(h.pid) && typeof h.host === "string" && typeof h.startedAt === "string" && typeof h.command === "string"
}

/** The file's text, or undefined when there is no file. */
const readText = (file: string): string | undefined => {
  try {
    return fs.readFileSync(file, "utf8")
  } catch {
    return undefined
  }
}

const parseHolder = (text: string | undefined): Holder | undefined => {
  if (text === undefined) return undefined
  try {
    const h = JSON.parse(text) as unknown
    return isHolder(h) ? h : undefined
  } catch {
    return undefined
  }
}

/** A process that exists and is not a zombie (kill(pid, 0) succeeds on zombies). */
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...", the state after the last ')'
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    const ps = spawnSync("ps", ["-o", "stat=", "-p", String(pid)], { encoding: "utf8" })
    return ps.status !== 0 || !ps.stdout.trim().startsWith("Z")
  }
}

const describe = (h: Holder | undefined): string =>
  h ? `pid ${h.pid}${h.host !== os.hostname() ? ` on ${h.host}` : ""} (${h.command}, since ${h.startedAt})` : "another process"

const lockedError = (h: Holder | undefined): WorkspaceLockedError =>
  new WorkspaceLockedError({
    message:
      h && h.host !== os.hostname()
        ? `the workspace is locked by ${describe(h)}: wait for it to finish, or pass --wait; if no run is active on ${h.host}, delete .pipeline/lock`
        : `the workspace is locked by ${describe(h)}: wait for it to finish, or pass --wait (lock: .pipeline/lock)`
  })

// ---------------------------------------------------------------- the kernel lock (Linux)

const socketName = (stateDir: string): string => `\0finetune-pipeline/${Digest.digestHex(Digest.ofBytes(fs.realpathSync(stateDir))).slice(0, 40)}`

/**
 * Binds the workspace's abstract socket: the server when we hold it, "taken"
 * when another process does, "unsupported" when this system refuses such
 * sockets (a sandbox without them): then the file lock is used.
 */
const bind = (name: string) =>
  Effect.callback<net.Server | "taken" | "unsupported">((resume) => {
    const server = net.createServer()
    server.once("error", (e: NodeJS.ErrnoException) => resume(Effect.succeed(e.code === "EADDRINUSE" ? "taken" : "unsupported")))
    server.listen({ path: name }, () => {
      server.unref() // holding the lock must not keep the process alive
      resume(Effect.succeed(server))
    })
  })

/**
 * With the kernel lock held: records us in the lock file, unless another
 * host's run holds the workspace. The file only informs (who holds it, for
 * other hosts too): when it cannot be written (a full disk), the kernel lock
 * still holds the workspace.
 */
const claimFile = (file: string, holder: Holder): Holder | undefined => {
  const current = parseHolder(readText(file))
  // another host's run: its kernel is not ours, so it may be alive
  if (current && current.host !== holder.host) return current
  // ours is the only live holder on this host: whatever the file says is left over
  try {
    writeFileAtomic(file, JSON.stringify(holder))
  } catch {
    fs.rmSync(file, { force: true })
  }
  return undefined
}

// ---------------------------------------------------------------- the file lock (elsewhere)

const tryCreate = (file: string, holder: Holder): boolean => {
  const tmp = tempName(file)
  try {
    fs.writeFileSync(tmp, JSON.stringify(holder))
  } catch (e) {
    fs.rmSync(tmp, { force: true })
    throw new WorkspaceLockedError({ message: `cannot create the workspace lock .pipeline/lock (${e instanceof Error ? ((e as NodeJS.ErrnoException).code ?? e.message) : String(e)})` })
  }
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

/** One attempt at the file lock: true when it is ours. */
const attemptFile = (file: string, holder: Holder): boolean => {
  if (tryCreate(file, holder)) return true
  const seen = readText(file)
  if (seen === undefined) return false // released meanwhile: try again
  const current = parseHolder(seen)
  const stale = current === undefined || (current.host === holder.host && !alive(current.pid))
  if (!stale) return false
  const claimed = tempName(file)
  try {
    fs.renameSync(file, claimed)
  } catch {
    return false // another newcomer claimed it first
  }
  if (readText(claimed) === seen) {
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

// ---------------------------------------------------------------- acquire

// PIPELINE_FILE_LOCK=1 uses the file lock on Linux too (tests of it; workspaces on a network filesystem shared by hosts)
const KERNEL_LOCK = process.platform === "linux" && process.env["PIPELINE_FILE_LOCK"] !== "1"

/** Holds the workspace lock for the scope; `wait` polls instead of failing at once. */
export const acquire = (stateDir: string, options: { readonly wait: boolean; readonly command: string }) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      yield* Effect.try({
        try: () => fs.mkdirSync(stateDir, { recursive: true }),
        catch: (e) => new WorkspaceLockedError({ message: `cannot create ${path.basename(stateDir)}/ for the workspace lock (${(e as NodeJS.ErrnoException).code ?? String(e)})` })
      })
      const file = path.join(stateDir, "lock")
      const holder: Holder = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString(), command: options.command }
      let announced = false
      let kernelLock = KERNEL_LOCK
      for (;;) {
        let other: Holder | undefined
        const bound = kernelLock ? yield* bind(socketName(stateDir)) : "unsupported"
        if (bound === "unsupported") kernelLock = false
        if (bound === "taken") other = parseHolder(readText(file))
        else if (bound !== "unsupported") {
          other = claimFile(file, holder)
          if (other === undefined) return { file, server: bound }
          bound.close()
        } else {
          const won = yield* Effect.try({
            try: () => attemptFile(file, holder),
            catch: (e) => (e instanceof WorkspaceLockedError ? e : new WorkspaceLockedError({ message: `workspace lock: ${e instanceof Error ? e.message : String(e)}` }))
          })
          if (won) return { file, server: undefined }
          other = parseHolder(readText(file))
        }
        if (!options.wait) return yield* lockedError(other)
        if (!announced) {
          process.stderr.write(`waiting for ${describe(other)} to release the workspace lock…\n`)
          announced = true
        }
        yield* Effect.sleep(200)
      }
    }),
    ({ file, server }) =>
      Effect.sync(() => {
        const h = parseHolder(readText(file))
        if (h && h.pid === process.pid && h.host === os.hostname()) fs.rmSync(file, { force: true })
        server?.close()
      })
  )
