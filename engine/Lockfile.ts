/**
 * `pipeline.lock`: YAML, committed. Per stage: key, params, code and version
 * fingerprints, inputs and outputs with digests and sizes, duration. Only
 * stages that succeeded are written, and the file is replaced atomically.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as YAML from "yaml"
import { writeFileAtomic } from "../cache/Atomic.ts"
import type { Digest } from "../cache/Digest.ts"
import { outputPathProblem } from "../cache/Paths.ts"
import { ConfigError } from "./Errors.ts"
import { decode } from "./Params.ts"
import type { ParseMemo } from "../cache/ParseMemo.ts"

const DigestString = Schema.String.check(Schema.isPattern(/^blake3:[0-9a-f]{64}$/))

const FileRecord = Schema.Struct({
  path: Schema.String,
  digest: DigestString,
  size: Schema.Number
})

const OutputRecord = Schema.Struct({
  path: Schema.String,
  kind: Schema.Literals(["file", "dir"]),
  digest: DigestString,
  size: Schema.Number
})

export const LockEntrySchema = Schema.Struct({
  key: DigestString,
  params: Schema.Unknown,
  code: Schema.Record(Schema.String, DigestString),
  versions: Schema.Record(Schema.String, Schema.String),
  inputs: Schema.Array(FileRecord),
  outputs: Schema.Array(OutputRecord),
  duration: Schema.Number
})

const LockSchema = Schema.Struct({
  version: Schema.Literal(1),
  stages: Schema.Record(Schema.String, LockEntrySchema)
})

export interface FileRec {
  readonly path: string
  readonly digest: Digest
  readonly size: number
}
export interface OutputRec extends FileRec {
  readonly kind: "file" | "dir"
}
export interface LockEntry {
  readonly key: Digest
  readonly params: unknown
  readonly code: Readonly<Record<string, Digest>>
  readonly versions: Readonly<Record<string, string>>
  readonly inputs: ReadonlyArray<FileRec>
  readonly outputs: ReadonlyArray<OutputRec>
  /** seconds the stage took when it last ran */
  readonly duration: number
}

export type Lock = Record<string, LockEntry>

const STAGE_NAME = /^[a-z][a-z0-9_-]*$/

/**
 * Why a decoded entry of `stage` cannot be trusted, or undefined. Its outputs
 * are written, linked and deleted by the engine, so each must lie inside
 * `out/<stage>/` (see cache/Paths.ts), once.
 */
export const entryProblem = (stage: string, e: LockEntry): string | undefined => {
  if (!STAGE_NAME.test(stage)) return "is not a stage name"
  const seen = new Set<string>()
  for (const [i, o] of e.outputs.entries()) {
    const bad = outputPathProblem(stage, o.path)
    if (bad !== undefined) return `outputs[${i}].path ${JSON.stringify(o.path)} ${bad}`
    if (seen.has(o.path)) return `outputs[${i}].path ${o.path} appears twice`
    seen.add(o.path)
  }
  for (const [i, f] of e.inputs.entries()) if (f.path === "" || f.path.includes("\0")) return `inputs[${i}].path is not a path`
  return undefined
}

/** Decodes a run-cache entry of `stage` (the record the lock holds), or says why it cannot be used. */
export const decodeEntry = (raw: unknown, stage: string): LockEntry | string => {
  const r = Schema.decodeUnknownExit(LockEntrySchema)(raw, { onExcessProperty: "error" })
  if (r._tag === "Failure") return "not a valid entry"
  const e = r.value as LockEntry
  return entryProblem(stage, e) ?? e
}

const HEADER = "# pipeline.lock: written by `pipeline run` for the stages that succeeded. Commit it.\n"

/** Reads pipeline.lock (committed state: it is refused, with the field, when it cannot be trusted). */
export const read = (file: string, displayName = "pipeline.lock", memo?: ParseMemo): Effect.Effect<Lock, ConfigError> =>
  Effect.gen(function* () {
    const st = fs.statSync(file, { throwIfNoEntry: false })
    if (st === undefined) return {}
    let raw = memo?.get(file, st)
    if (raw === undefined) {
      const text = yield* Effect.try({
        try: () => fs.readFileSync(file, "utf8"),
        catch: (e) => new ConfigError({ message: `${displayName}: cannot be read (${e instanceof Error ? e.message : String(e)})` })
      })
      raw = yield* Effect.try({
        try: () => YAML.parse(text) as unknown,
        catch: (e) => new ConfigError({ message: `${displayName}: not valid YAML (${(e instanceof Error ? e.message : String(e)).split("\n")[0]}); delete it to start over` })
      })
      memo?.set(file, st, raw)
    }
    if (raw === null || raw === undefined) return {}
    const lock = yield* decode(LockSchema, raw, displayName, "lock")
    const stages = lock.stages as Lock
    for (const [name, e] of Object.entries(stages)) {
      const bad = entryProblem(name, e)
      if (bad !== undefined)
        return yield* new ConfigError({
          message: `${displayName}: stages.${JSON.stringify(name).slice(1, -1)}${bad.startsWith("is ") ? " " : "."}${bad}; the engine writes only inside out/${name}/ (restore the file from git, or delete the entry of ${name})`
        })
    }
    return { ...stages }
  })

export const write = (file: string, lock: Lock, order: ReadonlyArray<string>): void => {
  const stages: Record<string, LockEntry> = {}
  // Stages in pipeline order, then any the pipeline no longer has (kept until gc).
  for (const n of order) if (lock[n]) stages[n] = lock[n]
  for (const n of Object.keys(lock).sort()) if (!stages[n]) stages[n] = lock[n]!
  writeFileAtomic(file, HEADER + YAML.stringify({ version: 1, stages }, { lineWidth: 0, aliasDuplicateObjects: false }))
}
