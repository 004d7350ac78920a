/**
 * Worker processes: a stage runs its heavy part (training, evaluation) in a
 * child Node process, so a crash in native code fails the stage, not the
 * engine. Both sides of that boundary live here.
 *
 * The protocol: the parent encodes the job with its Schema and writes it as
 * JSON to a file whose path it passes; the worker decodes it with the same
 * Schema. The worker prints one event per line on stdout, encoded with the
 * events' Schema, and the parent decodes each line: a line that does not
 * decode fails the stage, naming it. A worker that fails prints
 * `{"type":"error","message":…}` as its last event and exits 1 (`workerMain`
 * does this for any error it throws), so the stage reports the worker's own
 * one-line reason rather than the tail of a Node stack trace. A worker that
 * dies without a word (a segfault, the OOM killer) is reported by its signal
 * or exit code with the last meaningful line it wrote to stderr.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as readline from "node:readline"
import { ChildProcesses, StageError } from "../../engine/index.ts"

/** The event a failing worker ends with (part of every worker's protocol). */
export const ErrorEvent = Schema.Struct({ type: Schema.Literal("error"), message: Schema.String })

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim()

/** The last line of a worker's stderr that says something (not a stack frame, not Node's version banner). */
const lastWords = (stderr: string): string | undefined =>
  stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !/^at\s/.test(l) && !/^Node\.js v\d/.test(l) && !/^\^+$/.test(l))
    .at(-1)

/** A schema that encodes and decodes with no services (what crosses the process boundary). */
export type Wire<A> = Schema.Codec<A, unknown>

/** The two schemas of a worker: its job and its events. */
export interface Protocol<J, E> {
  readonly job: Wire<J>
  readonly events: Wire<E>
}

export interface WorkerOptions<J, E> {
  /** the worker's module (an absolute path) */
  readonly file: string
  /** what to call it in messages: "trainer", "evaluator" */
  readonly label: string
  readonly protocol: Protocol<J, E>
  readonly job: J
  /** where to write the job (in the stage's scratch directory) */
  readonly jobFile: string
  readonly onEvent: (event: E) => Effect.Effect<void>
}

const decodeLine = <E>(events: Wire<E>, line: string): E | undefined => {
  let raw: unknown
  try {
    raw = JSON.parse(line)
  } catch {
    return undefined
  }
  const r = Schema.decodeUnknownExit(events)(raw)
  return r._tag === "Success" ? r.value : undefined
}

/**
 * Runs a worker to its end, feeding its events to `onEvent` in order. Fails
 * with the worker's reported error, or with how it died. Interrupting the
 * effect (Ctrl-C, a failing sibling stage) kills the worker.
 */
export const runWorker = <J, E>(o: WorkerOptions<J, E>): Effect.Effect<void, StageError, ChildProcesses> =>
  Effect.scoped(
    Effect.gen(function* () {
      fs.writeFileSync(o.jobFile, JSON.stringify(Schema.encodeSync(o.protocol.job)(o.job)))
      const processes = yield* ChildProcesses
      const child = yield* Effect.acquireRelease(
        Effect.sync(() => processes.spawn(process.execPath, [o.file, o.jobFile])),
        (c) => Effect.sync(() => void (c.exitCode === null && c.signalCode === null && c.kill("SIGKILL")))
      )
      let stderr = ""
      child.stderr.on("data", (d) => {
        stderr = (stderr + d).slice(-65536)
      })
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.on("close", (code, signal) => resolve({ code, signal }))
      )
      const spawned = new Promise<Error | undefined>((resolve) => {
        child.once("spawn", () => resolve(undefined))
        child.once("error", (e) => resolve(e))
      })
      const spawnError = yield* Effect.promise(() => spawned)
      if (spawnError) return yield* new StageError({ message: `the ${o.label} could not start: ${spawnError.message}` })
      let reported: string | undefined
      let badLine: string | undefined
      yield* Stream.fromAsyncIterable(readline.createInterface({ input: child.stdout, crlfDelay: Infinity }), (e) => new StageError({ message: `the ${o.label}'s output: ${String(e)}` })).pipe(
        Stream.runForEach((line) => {
          if (line.trim() === "") return Effect.void
          const failure = decodeLine(ErrorEvent, line)
          if (failure !== undefined) {
            reported = failure.message
            return Effect.void
          }
          const event = decodeLine(o.protocol.events, line)
          if (event === undefined) {
            badLine ??= line
            return Effect.void
          }
          return o.onEvent(event)
        })
      )
      const { code, signal } = yield* Effect.promise(() => exited)
      if (code === 0 && reported === undefined) {
        if (badLine !== undefined) return yield* new StageError({ message: `the ${o.label} printed a line that is not one of its events: ${oneLine(badLine).slice(0, 200)}` })
        return
      }
      if (reported !== undefined) return yield* new StageError({ message: oneLine(reported) })
      const how = signal ? `was killed by ${signal}${signal === "SIGKILL" ? " (out of memory, or killed from outside)" : ""}` : `exited with code ${code}`
      const words = lastWords(stderr)
      return yield* new StageError({ message: `the ${o.label} ${how}${words ? `: ${oneLine(words).slice(0, 300)}` : ""}` })
    })
  )

/**
 * The worker's side: reads the job named on the command line and runs `main`
 * with it and an `emit` for events. Any error becomes the final error event
 * (its message, one line) and exit code 1. Errors that are not expected
 * failures (a TypeError: a bug) keep their type in the message.
 */
export const workerMain = async <J, E>(protocol: Protocol<J, E>, main: (job: J, emit: (e: E) => void) => void | Promise<void>): Promise<void> => {
  const print = (line: unknown) => void process.stdout.write(JSON.stringify(line) + "\n")
  const emit = (e: E) => print(Schema.encodeSync(protocol.events)(e))
  try {
    const file = process.argv[2]
    if (file === undefined) throw new Error("usage: worker JOB.json")
    const decoded = Schema.decodeUnknownExit(protocol.job)(JSON.parse(fs.readFileSync(file, "utf8")))
    if (decoded._tag === "Failure") throw new Error(`the job file ${file} does not decode: ${oneLine(String(decoded.cause)).slice(0, 300)}`)
    await main(decoded.value, emit)
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e))
    const bug = err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError
    print(Schema.encodeSync(ErrorEvent)({ type: "error", message: oneLine(bug ? `${err.name}: ${err.message} (${oneLine(err.stack?.split("\n")[1] ?? "")})` : err.message) }))
    process.exitCode = 1
  }
}
