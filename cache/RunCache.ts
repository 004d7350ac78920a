/**
 * The run-cache: every key a stage has had → the outputs it produced (the same
 * record the lock holds). Switching a param back finds the old key here and
 * restores instead of recomputing. One small JSON file per key, written
 * atomically after the outputs are in the store, so an entry never points at
 * objects that were not stored.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { writeFileAtomic } from "./Atomic.ts"
import { digestHex, type Digest } from "./Digest.ts"

export interface RunEntry<E> {
  readonly stage: string
  readonly createdAt: string
  readonly entry: E
}

export class RunCache<E extends { readonly key: Digest }> {
  readonly dir: string
  constructor(dir: string) {
    this.dir = dir
  }

  private file(stage: string, key: Digest): string {
    return path.join(this.dir, stage, `${digestHex(key)}.json`)
  }

  get(stage: string, key: Digest): RunEntry<E> | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.file(stage, key), "utf8")) as RunEntry<E>
    } catch {
      return undefined
    }
  }

  put(stage: string, entry: E, now: Date = new Date()): void {
    const rec: RunEntry<E> = { stage, createdAt: now.toISOString(), entry }
    writeFileAtomic(this.file(stage, entry.key), JSON.stringify(rec))
  }

  *list(): Generator<{ file: string; entry: RunEntry<E> }> {
    if (!fs.existsSync(this.dir)) return
    for (const stage of fs.readdirSync(this.dir)) {
      const d = path.join(this.dir, stage)
      for (const f of fs.readdirSync(d)) {
        if (!f.endsWith(".json") || f.startsWith(".")) continue
        const file = path.join(d, f)
        try {
          yield { file, entry: JSON.parse(fs.readFileSync(file, "utf8")) as RunEntry<E> }
        } catch {
          /* a damaged entry is skipped; gc removes it */
        }
      }
    }
  }

  remove(file: string): void {
    fs.rmSync(file, { force: true })
  }
}
