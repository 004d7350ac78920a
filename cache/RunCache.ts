/**
 * The run-cache: every key a stage has had → the outputs it produced (the same
 * record the lock holds). Switching a param back finds the old key here and
 * restores instead of recomputing. One small JSON file per key, written
 * atomically after the outputs are in the store, so an entry never points at
 * objects that were not stored.
 *
 * Entries are derived state read back from disk: each one is decoded by the
 * caller's `decode` (a schema plus path checks) before anything uses it. An
 * entry that does not decode is never used; it is reported once through
 * `warn`, listed by `damaged()` for `gc` to remove, and the stage it would
 * have restored simply runs.
 */
import type { Stats } from "node:fs"
import { type Fs, nodeFs } from "./Fs.ts"
import * as path from "node:path"
import { type Warn, writeFileAtomic } from "./Atomic.ts"
import { digestHex, type Digest } from "./Digest.ts"

export interface RunEntry<E> {
  readonly stage: string
  readonly createdAt: string
  readonly entry: E
}

/** Turns what a file holds into an entry of `stage`, or says in a few words why it cannot. */
export type Decode<E> = (raw: unknown, stage: string) => E | string

export class RunCache<E extends { readonly key: Digest }> {
  readonly dir: string
  private readonly decode: Decode<E>
  private readonly warn: Warn
  private readonly bad = new Map<string, string>()

  private readonly fs: Fs

  constructor(dir: string, decode: Decode<E>, warn: Warn = () => {}, files: Fs = nodeFs) {
    this.dir = dir
    this.decode = decode
    this.warn = warn
    this.fs = files
  }

  private file(stage: string, key: Digest): string {
    return path.join(this.dir, stage, `${digestHex(key)}.json`)
  }

  private rel(file: string): string {
    return `.pipeline/runs/${path.relative(this.dir, file).split(path.sep).join("/")}`
  }

  /** Decodes one entry file; undefined (and reported) when it cannot be used. */
  private load(file: string, stage: string): RunEntry<E> | undefined {
    let text: string
    try {
      text = this.fs.readFileSync(file, "utf8")
    } catch {
      return undefined
    }
    const problem = (why: string): undefined => {
      if (!this.bad.has(file)) {
        this.bad.set(file, why)
        this.warn(`${this.rel(file)}: ${why}; ignoring this run-cache entry (pipeline gc removes it)`)
      }
      return undefined
    }
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch {
      return problem("not valid JSON")
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return problem("not a JSON object")
    const r = raw as Record<string, unknown>
    if (r["stage"] !== stage) return problem(`names stage ${JSON.stringify(r["stage"])}, not ${stage}`)
    if (typeof r["createdAt"] !== "string" || Number.isNaN(Date.parse(r["createdAt"]))) return problem("createdAt is not a date")
    const entry = this.decode(r["entry"], stage)
    if (typeof entry === "string") return problem(entry)
    if (path.basename(file) !== `${digestHex(entry.key)}.json`) return problem("its key does not match its file name")
    return { stage, createdAt: r["createdAt"], entry }
  }

  get(stage: string, key: Digest): RunEntry<E> | undefined {
    return this.load(this.file(stage, key), stage)
  }

  put(stage: string, entry: E, now: Date = new Date()): void {
    const rec: RunEntry<E> = { stage, createdAt: now.toISOString(), entry }
    writeFileAtomic(this.file(stage, entry.key), JSON.stringify(rec), undefined, this.fs)
  }

  /** Every entry that decodes; the others are skipped and kept in `damaged()`. */
  *list(): Generator<{ file: string; entry: RunEntry<E> }> {
    if (!this.fs.existsSync(this.dir)) return
    for (const stage of this.fs.readdirSync(this.dir)) {
      const d = path.join(this.dir, stage)
      if (!this.fs.statSync(d).isDirectory()) continue
      for (const f of this.fs.readdirSync(d)) {
        if (!f.endsWith(".json") || f.startsWith(".")) continue
        const file = path.join(d, f)
        const entry = this.load(file, stage)
        if (entry) yield { file, entry }
      }
    }
  }

  /** Entry files found damaged so far (by `get` or `list`), with the reason. */
  damaged(): ReadonlyMap<string, string> {
    return this.bad
  }

  remove(file: string): void {
    this.fs.rmSync(file, { force: true })
  }
}
