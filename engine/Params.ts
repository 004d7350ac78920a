/**
 * The params file (`pipeline.yaml` or `--config FILE`) and `--set` overrides.
 *
 * Top-level keys are sections; each stage declares the sections it reads with
 * a Schema, and is decoded strictly (an unknown key is an error, so a typo in
 * `--set train.lrr=1` fails instead of being silently ignored). Engine-level
 * sections (`budget`, `resources`, `temporary`) are decoded here.
 */
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import * as Exit from "effect/Exit"
import * as fs from "node:fs"
import * as YAML from "yaml"
import { ConfigError } from "./Errors.ts"
import { parseBytes } from "./Units.ts"
import type { ParseMemo } from "../cache/ParseMemo.ts"
import type { AnyStage } from "./Stage.ts"

export type Doc = Record<string, unknown>

export interface Source {
  /** workspace-relative name of the params file, for messages */
  readonly file: string
  readonly sets: ReadonlyArray<string>
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** A params file is a few kilobytes; anything far bigger is the wrong file. */
const MAX_PARAMS_BYTES = 16 * 1024 * 1024

export const readDoc = (absFile: string, displayName: string, memo?: ParseMemo): Doc => {
  let st: fs.Stats
  try {
    st = fs.statSync(absFile)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    throw new ConfigError({ message: `${displayName}: cannot read the params file (${code === "ENOENT" ? "no such file" : code})` })
  }
  if (st.isDirectory()) throw new ConfigError({ message: `${displayName}: is a directory, not a params file` })
  if (!st.isFile()) throw new ConfigError({ message: `${displayName}: is not a regular file` })
  if (st.size > MAX_PARAMS_BYTES) throw new ConfigError({ message: `${displayName}: ${st.size} bytes is too big for a params file (at most 16 MiB)` })
  const read = (): string => {
    try {
      return fs.readFileSync(absFile, "utf8")
    } catch (e) {
      throw new ConfigError({ message: `${displayName}: cannot read the params file (${(e as NodeJS.ErrnoException).code})` })
    }
  }
  return memo ? memo.parse(absFile, (text) => parseDoc(text, displayName)) : parseDoc(read(), displayName)
}

/** Parses YAML text into plain data, or throws a ConfigError naming the file, line and column. */
export const parseYaml = (text: string, displayName: string): unknown => {
  const doc = YAML.parseDocument(text, { prettyErrors: false, uniqueKeys: true })
  const err = doc.errors[0]
  if (err) {
    const offset = err.pos[0]
    const before = text.slice(0, offset)
    const line = before.split("\n").length
    const col = offset - before.lastIndexOf("\n")
    throw new ConfigError({ message: `${displayName}:${line}:${col}: ${err.message.split("\n")[0]}` })
  }
  try {
    // aliases are expanded here; the yaml package refuses documents that expand
    // past a small multiple of their size (an "alias bomb")
    return doc.toJS({ maxAliasCount: 100 }) as unknown
  } catch (e) {
    const m = (e as Error).message
    throw new ConfigError({
      message: /alias/i.test(m) ? `${displayName}: too many YAML alias expansions (${m.split("\n")[0]})` : `${displayName}: ${m.split("\n")[0]}`
    })
  }
}

const parseDoc = (text: string, displayName: string): Doc => {
  const value = parseYaml(text, displayName)
  if (value === null || value === undefined) return {}
  if (!isRecord(value)) throw new ConfigError({ message: `${displayName}: expected a mapping of sections at the top level` })
  return value
}

/** Keys that would reach an object's prototype instead of the params: never a param. */
const NOT_PARAMS = new Set(["__proto__", "constructor", "prototype"])

/** Applies `a.b.c=value` (value read as YAML) to a copy of the doc. */
export const applySets = (doc: Doc, sets: ReadonlyArray<string>): Doc => {
  const out: Doc = structuredClone(doc)
  for (const s of sets) {
    const eq = s.indexOf("=")
    if (eq <= 0) throw new ConfigError({ message: `--set ${s}: expected key=value, e.g. --set train.lr=1e-4` })
    const keyPath = s.slice(0, eq).split(".")
    if (keyPath.some((k) => k === "")) throw new ConfigError({ message: `--set ${s}: empty key segment` })
    const bad = keyPath.find((k) => NOT_PARAMS.has(k))
    if (bad !== undefined) throw new ConfigError({ message: `--set ${redact(s)}: ${bad} is not a params key` })
    let value: unknown
    try {
      value = YAML.parse(s.slice(eq + 1))
    } catch (e) {
      throw new ConfigError({ message: `--set ${s}: value is not valid YAML (${(e as Error).message.split("\n")[0]})` })
    }
    let node: Record<string, unknown> = out
    for (const k of keyPath.slice(0, -1)) {
      const next = node[k]
      if (next === undefined || next === null) node = node[k] = {}
      else if (isRecord(next)) node = next
      else throw new ConfigError({ message: `--set ${s}: ${k} is not a section` })
    }
    node[keyPath[keyPath.length - 1]!] = value
  }
  return out
}

const formatIssues = SchemaIssue.makeFormatterStandardSchemaV1()

/** Decodes a value with a schema, or throws a one-line ConfigError naming the field. */
export const decodeOrThrow = <S extends Schema.Top>(schema: S, value: unknown, where: string, section: string): S["Type"] => {
  const exit = Schema.decodeUnknownExit(schema as any)(value, { onExcessProperty: "error", errors: "all" })
  if (Exit.isSuccess(exit)) return exit.value as S["Type"]
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail") as { error?: { issue?: SchemaIssue.Issue } } | undefined
  const issue = failure?.error?.issue
  if (!issue) throw new ConfigError({ message: `${where}: ${section}: invalid` })
  const issues = formatIssues(issue).issues
  const parts = issues.slice(0, 3).map((i) => {
    const keys = (i.path ?? []).map((k) => (typeof k === "object" && k !== null && "key" in k ? (k as { key: PropertyKey }).key : k))
    const p = [section, ...keys.map(String)].join(".")
    if (i.message === "Expected no excess property") return `${p}: unknown key`
    // say what was there: "Expected a value greater than 0, got -0.005"
    const got = keys.reduce<unknown>((v, k) => (typeof v === "object" && v !== null ? (v as Record<PropertyKey, unknown>)[k as PropertyKey] : undefined), value)
    const shown = got === undefined || /\bgot\b/.test(i.message) ? "" : `, got ${typeof got === "number" && !Number.isFinite(got) ? String(got) : JSON.stringify(got)?.slice(0, 60)}`
    return `${p}: ${i.message}${shown}`
  })
  throw new ConfigError({ message: `${where}: ${parts.join("; ")}${issues.length > 3 ? ` (and ${issues.length - 3} more)` : ""}` })
}

/** Engine-level sections. */
export interface EngineConfig {
  readonly budgetBytes: number | undefined
  readonly memoryMB: number | undefined
  readonly gpus: number
  /** outputs to treat as temporary, as `stage.output` */
  readonly temporary: ReadonlyArray<string>
}

const ENGINE_SECTIONS = new Set(["budget", "resources", "temporary"])

export const decodeEngineConfig = (doc: Doc, where: string): EngineConfig => {
  const budget = doc["budget"]
  let budgetBytes: number | undefined
  if (budget !== undefined && budget !== null) {
    if (!isRecord(budget)) throw new ConfigError({ message: `${where}: budget: expected a mapping like { disk: 20GB }` })
    for (const k of Object.keys(budget)) if (k !== "disk") throw new ConfigError({ message: `${where}: budget.${k}: unknown key` })
    if (budget["disk"] !== undefined && budget["disk"] !== null) {
      budgetBytes = parseBytes(budget["disk"])
      if (budgetBytes === undefined)
        throw new ConfigError({ message: `${where}: budget.disk: expected a size like 20GB, got ${JSON.stringify(budget["disk"])}` })
    }
  }
  const resources = doc["resources"]
  let memoryMB: number | undefined
  let gpus = 0
  if (resources !== undefined && resources !== null) {
    if (!isRecord(resources)) throw new ConfigError({ message: `${where}: resources: expected a mapping` })
    for (const [k, v] of Object.entries(resources)) {
      if (k === "memory") {
        if (v === "auto") continue
        const b = parseBytes(v)
        if (b === undefined) throw new ConfigError({ message: `${where}: resources.memory: expected a size like 16GB or auto` })
        memoryMB = b / 1e6
      } else if (k === "gpus") {
        if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
          throw new ConfigError({ message: `${where}: resources.gpus: expected a whole number` })
        gpus = v
      } else throw new ConfigError({ message: `${where}: resources.${k}: unknown key` })
    }
  }
  const temporary = doc["temporary"] ?? []
  if (!Array.isArray(temporary) || temporary.some((t) => typeof t !== "string" || !/^[^.]+\.[^.]+$/.test(t)))
    throw new ConfigError({ message: `${where}: temporary: expected a list of stage.output names` })
  return { budgetBytes, memoryMB, gpus, temporary: temporary as Array<string> }
}

/** Decodes every stage's sections; unknown top-level sections are errors too. */
export const decodeStageParams = (
  doc: Doc,
  stages: ReadonlyArray<AnyStage>,
  where: string
): Map<string, Record<string, unknown>> => {
  const known = new Set(ENGINE_SECTIONS)
  const schemas = new Map<string, Schema.Top>()
  for (const s of stages) for (const [section, schema] of Object.entries(s.params)) {
    known.add(section)
    schemas.set(section, schema)
  }
  for (const k of Object.keys(doc)) if (!known.has(k)) throw new ConfigError({ message: `${where}: ${k}: unknown section (no stage reads it)` })
  const decoded = new Map<string, unknown>()
  for (const [section, schema] of schemas) decoded.set(section, decodeOrThrow(schema, doc[section] ?? {}, where, section))
  return new Map(stages.map((s) => [s.name, Object.fromEntries(Object.keys(s.params).map((k) => [k, decoded.get(k)]))]))
}

/** Environment variables whose values are secrets: never in params, logs, plans, the lock or keys. */
export const SECRET_ENV = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "S3_SECRET_KEY", "S3_ACCESS_KEY"]

export const secretValues = (env: NodeJS.ProcessEnv = process.env): Array<string> =>
  SECRET_ENV.map((k) => env[k]).filter((v): v is string => typeof v === "string" && v.length >= 6)

/** Refuses params that carry a secret's value (it would land in the lock and the key). */
export const assertNoSecrets = (doc: Doc, where: string, env: NodeJS.ProcessEnv = process.env): void => {
  const secrets = secretValues(env)
  if (secrets.length === 0) return
  const visit = (v: unknown, p: string): void => {
    if (typeof v === "string") {
      const i = secrets.findIndex((s) => v.includes(s))
      if (i >= 0) {
        const name = SECRET_ENV.find((k) => env[k] === secrets[i])
        throw new ConfigError({ message: `${where}: ${p}: holds the value of ${name}; secrets come from the environment, never from params` })
      }
    } else if (Array.isArray(v)) v.forEach((x, j) => visit(x, `${p}[${j}]`))
    else if (isRecord(v)) for (const [k, x] of Object.entries(v)) visit(x, p ? `${p}.${k}` : k)
  }
  visit(doc, "")
}

/** Masks secret values in a line of output. */
export const redact = (line: string, secrets: ReadonlyArray<string> = secretValues()): string => {
  let out = line
  for (const s of secrets) out = out.split(s).join("***")
  return out
}
