/**
 * What the user sees while stages run. Stage log lines are prefixed with the
 * stage name; long work reports progress, drawn as a bar with an ETA on a TTY
 * and as plain, throttled lines otherwise (CI logs, pipes). With `--json` the
 * human output goes to stderr so stdout carries only the JSON.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { formatBytes, formatSeconds } from "./Units.ts"

/** The handle a stage reports progress through. */
export interface Progress {
  /** the amount of work (steps, bytes, rows) and its unit */
  readonly total: (n: number, unit: string) => Effect.Effect<void>
  /** work done so far, with an optional note (loss=1.23) */
  readonly update: (done: number, note?: string) => Effect.Effect<void>
}

interface Bar {
  total: number
  unit: string
  done: number
  note: string
  startedAt: number
  lastPrinted: number
  lastPct: number
}

export class Console {
  private readonly bars = new Map<string, Bar>()
  private drawn = false
  readonly tty: boolean

  private readonly stream: NodeJS.WriteStream
  private readonly now: () => number

  /** `plain`: lines only, never a redrawn progress bar (`run --ci`, and whenever CI=true) */
  constructor(stream: NodeJS.WriteStream = process.stdout, now: () => number = Date.now, plain = false) {
    this.stream = stream
    this.now = now
    this.tty = Boolean(stream.isTTY) && process.env["CI"] !== "true" && !plain
  }

  private clear(): void {
    if (this.drawn) {
      this.stream.write("\r\x1b[2K")
      this.drawn = false
    }
  }

  line(text: string): void {
    this.clear()
    this.stream.write(text + "\n")
    this.redraw()
  }

  stageLog(stage: string, text: string): void {
    for (const l of text.split(/\r?\n/)) if (l.length > 0) this.line(`[${stage}] ${l}`)
  }

  private describe(stage: string, b: Bar): string {
    const frac = b.total > 0 ? Math.min(1, b.done / b.total) : 0
    const elapsed = (this.now() - b.startedAt) / 1000
    const eta = frac > 0 && frac < 1 ? formatSeconds((elapsed / frac) * (1 - frac)) : frac >= 1 ? "0s" : "?"
    const pct = `${Math.floor(frac * 100)}%`.padStart(4)
    const amount = b.unit === "bytes" ? `${formatBytes(b.done)}/${formatBytes(b.total)}${elapsed > 0 ? ` at ${formatBytes(b.done / elapsed)}/s` : ""}` : `${b.done}/${b.total} ${b.unit}`
    return `[${stage}] ${pct} ${amount} ETA ${eta}${b.note ? `  ${b.note}` : ""}`
  }

  private redraw(): void {
    if (!this.tty || this.bars.size === 0) return
    const cols = this.stream.columns ?? 100
    const parts = [...this.bars.entries()].map(([stage, b]) => {
      const frac = b.total > 0 ? Math.min(1, b.done / b.total) : 0
      const width = 20
      const filled = Math.round(frac * width)
      return `${this.describe(stage, b).replace(/^(\[[^\]]+\])/, `$1 ${"█".repeat(filled)}${"░".repeat(width - filled)}`)}`
    })
    this.stream.write(parts.join("  |  ").slice(0, cols - 1))
    this.drawn = true
  }

  setTotal(stage: string, total: number, unit: string): void {
    const now = this.now()
    this.bars.set(stage, { total, unit, done: 0, note: "", startedAt: now, lastPrinted: 0, lastPct: -1 })
  }

  update(stage: string, done: number, note?: string): void {
    const b = this.bars.get(stage)
    if (!b) return
    b.done = done
    if (note !== undefined) b.note = note
    const now = this.now()
    if (this.tty) {
      if (now - b.lastPrinted >= 100 || done >= b.total) {
        b.lastPrinted = now
        this.clear()
        this.redraw()
      }
      return
    }
    // Plain output: a line per 10% or every 10 s, whichever comes first.
    const pct = b.total > 0 ? Math.floor((done / b.total) * 10) : 0
    if (pct !== b.lastPct || now - b.lastPrinted >= 10_000) {
      b.lastPct = pct
      b.lastPrinted = now
      this.stream.write(this.describe(stage, b) + "\n")
    }
  }

  finish(stage: string): void {
    if (this.bars.delete(stage)) {
      this.clear()
      this.redraw()
    }
  }

  progressFor(stage: string): Progress {
    return {
      total: (n, unit) => Effect.sync(() => this.setTotal(stage, n, unit)),
      update: (done, note) => Effect.sync(() => this.update(stage, done, note))
    }
  }
}

/** The console the engine writes to, as a service so tests and `--json` can swap it. */
export class Output extends Context.Service<Output, Console>()("finetune-pipeline/engine/Output") {
  static readonly stdout = Layer.sync(Output, () => new Console(process.stdout))
  static readonly stderr = Layer.sync(Output, () => new Console(process.stderr))
  /** lines only, for CI logs */
  static readonly plain = (stream: NodeJS.WriteStream) => Layer.sync(Output, () => new Console(stream, Date.now, true))
}
