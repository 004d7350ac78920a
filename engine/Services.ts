/**
 * The effects the engine reaches the world through, as services with a Node
 * layer each, so tests can swap them:
 *
 * - `FileSystem`: the synchronous file calls the store, the caches, the
 *   planner and the executor make (cache/Fs.ts). `FileSystem.node` is node:fs;
 *   a test provides one that fails where it wants (a disk that fills up as an
 *   object enters the store).
 * - `ChildProcesses`: starting processes, for the stages that run one (a
 *   worker streaming events, a command stage). `ChildProcesses.node` spawns
 *   with node:child_process and runs commands with execa; a test provides one
 *   that records or refuses.
 * - the clock is Effect's own `Clock` service: run-cache entries are stamped
 *   and stages timed with `Clock.currentTimeMillis`, and `gc --older-than 7d`
 *   counts from it, so a test moves time with `TestClock`.
 * - console output is `Output` (Progress.ts).
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import { type ChildProcessByStdio, spawn } from "node:child_process"
import type { Readable } from "node:stream"
import { type Fs, nodeFs } from "../cache/Fs.ts"

export class FileSystem extends Context.Service<FileSystem, Fs>()("finetune-pipeline/engine/FileSystem") {
  static readonly node = Layer.sync(FileSystem, () => nodeFs)
}

export interface ExecOptions {
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
  readonly signal: AbortSignal
  /** each line of the command's output, stdout and stderr together, as it comes */
  readonly onLine: (line: string) => void
}

/** How a command ended: `failed` with the exit code when there is one, else a one-line reason. */
export interface ExecResult {
  readonly failed: boolean
  readonly exitCode: number | undefined
  readonly reason: string | undefined
}

export interface Processes {
  /** starts a process with stdout and stderr piped (a worker that streams events) */
  readonly spawn: (file: string, args: ReadonlyArray<string>) => ChildProcessByStdio<null, Readable, Readable>
  /** runs a command to its end, streaming its output by lines (a command stage) */
  readonly exec: (file: string, args: ReadonlyArray<string>, options: ExecOptions) => Promise<ExecResult>
}

const nodeProcesses: Processes = {
  spawn: (file, args) => spawn(file, [...args], { stdio: ["ignore", "pipe", "pipe"] }),
  exec: async (file, args, o) => {
    const { execa } = await import("execa")
    const child = execa(file, [...args], { cwd: o.cwd, env: { ...o.env }, all: true, buffer: false, reject: false, cancelSignal: o.signal, stdin: "ignore" })
    for await (const line of child.iterable({ from: "all" })) o.onLine(String(line))
    const r = await child
    return { failed: r.failed, exitCode: r.exitCode, reason: r.shortMessage }
  }
}

export class ChildProcesses extends Context.Service<ChildProcesses, Processes>()("finetune-pipeline/engine/ChildProcesses") {
  static readonly node = Layer.sync(ChildProcesses, () => nodeProcesses)
}
