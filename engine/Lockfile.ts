/**
 * `pipeline.lock`: YAML, committed. Per stage: key, params, code and version
 * fingerprints, inputs and outputs with digests and sizes, duration. Only
 * stages that succeeded are written, and the file is replaced atomically.
 */
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as YAML from "yaml"
import { writeFileAtomic } from "../cache/Atomic.ts"
import type { Digest } from "../cache/Digest.ts"
import { ConfigError } from "./Errors.ts"
import { decodeOrThrow } from "./Params.ts"
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

const HEADER = "# pipeline.lock: written by `pipeline run` for the stages that succeeded. Commit it.\n"

const parseYaml = (displayName: string) => (text: string): unknown => {
  try {
    return YAML.parse(text)
  } catch (e) {
    throw new ConfigError({ message: `${displayName}: not valid YAML (${(e as Error).message.split("\n")[0]}); delete it to start over` })
  }
}

export const read = (file: string, displayName = "pipeline.lock", memo?: ParseMemo): Lock => {
  if (!fs.existsSync(file)) return {}
  const raw = memo ? memo.parse(file, parseYaml(displayName)) : parseYaml(displayName)(fs.readFileSync(file, "utf8"))
  if (raw === null || raw === undefined) return {}
  const lock = decodeOrThrow(LockSchema, raw, displayName, "lock")
  return { ...(lock.stages as Lock) }
}

export const write = (file: string, lock: Lock, order: ReadonlyArray<string>): void => {
  const stages: Record<string, LockEntry> = {}
  // Stages in pipeline order, then any the pipeline no longer has (kept until gc).
  for (const n of order) if (lock[n]) stages[n] = lock[n]
  for (const n of Object.keys(lock).sort()) if (!stages[n]) stages[n] = lock[n]!
  writeFileAtomic(file, HEADER + YAML.stringify({ version: 1, stages }, { lineWidth: 0 }))
}
