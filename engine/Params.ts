/**
 * The params file (`pipeline.yaml` or `--config FILE`) and `--set` overrides.
 *
 * Top-level keys are sections; each stage declares the sections it reads with
 * a Schema, and is decoded strictly (an unknown key is an error, so a typo in
 * `--set train.lrr=1` fails instead of being silently ignored). Engine-level
 * sections (`budget`, `resources`, `temporary`) are decoded here.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import { urlProblem as remoteUrlProblem } from "../cache/Remote.ts"
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

const fail = (message: string) => Effect.fail(new ConfigError({ message }))

/** Reads and parses a params file: a one-line ConfigError naming the file when it is not one. */
export const readDoc = (absFile: string, displayName: string, memo?: ParseMemo): Effect.Effect<Doc, ConfigError> =>
  Effect.gen(function* () {
    const st = fs.statSync(absFile, { throwIfNoEntry: false })
    if (st === undefined) return yield* fail(`${displayName}: cannot read the params file (no such file)`)
    if (st.isDirectory()) return yield* fail(`${displayName}: is a directory, not a params file`)
    if (!st.isFile()) return yield* fail(`${displayName}: is not a regular file`)
    if (st.size > MAX_PARAMS_BYTES) return yield* fail(`${displayName}: ${st.size} bytes is too big for a params file (at most 16 MiB)`)
    const remembered = memo?.get(absFile, st)
    if (remembered !== undefined) return remembered as Doc
    const text = yield* Effect.try({
      try: () => fs.readFileSync(absFile, "utf8"),
      catch: (e) => new ConfigError({ message: `${displayName}: cannot read the params file (${e instanceof Error ? e.message : String(e)})` })
    })
    const doc = yield* parseDoc(text, displayName)
    memo?.set(absFile, st, doc)
    return doc
  })

/** Parses YAML text into plain data, or fails with a ConfigError naming the file, line and column. */
export const parseYaml = (text: string, displayName: string): Effect.Effect<unknown, ConfigError> =>
  Effect.suspend(() => {
    const doc = YAML.parseDocument(text, { prettyErrors: false, uniqueKeys: true })
    const err = doc.errors[0]
    if (err) {
      const offset = err.pos[0]
      const before = text.slice(0, offset)
      const line = before.split("\n").length
      const col = offset - before.lastIndexOf("\n")
      return fail(`${displayName}:${line}:${col}: ${err.message.split("\n")[0]}`)
    }
    // aliases are expanded here; the yaml package refuses documents that expand
    // past a small multiple of their size (an "alias bomb")
    return Effect.try({
      try: () => doc.toJS({ maxAliasCount: 100 }) as unknown,
      catch: (e) => {
        const m = e instanceof Error ? e.message : String(e)
        return new ConfigError({
          message: /alias/i.test(m) ? `${displayName}: too many YAML alias expansions (${m.split("\n")[0]})` : `${displayName}: ${m.split("\n")[0]}`
        })
      }
    })
  })

const parseDoc = (text: string, displayName: string): Effect.Effect<Doc, ConfigError> =>
  Effect.flatMap(parseYaml(text, displayName), (value) =>
    value === null || value === undefined ? Effect.succeed({}) : isRecord(value) ? Effect.succeed(value) : fail(`${displayName}: expected a mapping of sections at the top level`)
  )

/** Keys that would reach an object's prototype instead of the params: never a param. */
const NOT_PARAMS = new Set(["__proto__", "constructor", "prototype"])

/** Applies `a.b.c=value` (value read as YAML) to a copy of the doc. */
export const applySets = (doc: Doc, sets: ReadonlyArray<string>): Effect.Effect<Doc, ConfigError> =>
  Effect.gen(function* () {
    const out: Doc = structuredClone(doc)
    for (const s of sets) {
      const eq = s.indexOf("=")
      if (eq <= 0) return yield* fail(`--set ${s}: expected key=value, e.g. --set train.lr=1e-4`)
      const keyPath = s.slice(0, eq).split(".")
      if (keyPath.some((k) => k === "")) return yield* fail(`--set ${s}: empty key segment`)
      const bad = keyPath.find((k) => NOT_PARAMS.has(k))
      if (bad !== undefined) return yield* fail(`--set ${redact(s)}: ${bad} is not a params key`)
      const value = yield* Effect.try({
        try: () => YAML.parse(s.slice(eq + 1)) as unknown,
        catch: (e) => new ConfigError({ message: `--set ${s}: value is not valid YAML (${(e instanceof Error ? e.message : String(e)).split("\n")[0]})` })
      })
      let node: Record<string, unknown> = out
      for (const k of keyPath.slice(0, -1)) {
        const next = node[k]
        if (next === undefined || next === null) node = node[k] = {}
        else if (isRecord(next)) node = next
        else return yield* fail(`--set ${s}: ${k} is not a section`)
      }
      node[keyPath[keyPath.length - 1]!] = value
    }
    return out
  })

const formatIssues = SchemaIssue.makeFormatterStandardSchemaV1()

/** Decodes a value with a schema, or fails with a one-line ConfigError naming the field. */
export const decode = <S extends Schema.Top>(schema: S, value: unknown, where: string, section: string): Effect.Effect<S["Type"], ConfigError> =>
  Effect.suspend(() => {
    const exit = Schema.decodeUnknownExit(schema as unknown as Schema.Codec<S["Type"], unknown>)(value, { onExcessProperty: "error", errors: "all" })
    if (Exit.isSuccess(exit)) return Effect.succeed(exit.value)
    const failure = exit.cause.reasons.find(Cause.isFailReason)
    const issue = failure?.error.issue
    if (!issue) return fail(`${where}: ${section}: invalid`)
    const issues = formatIssues(issue).issues
    const parts = issues.slice(0, 3).map((i) => {
      const keys = (i.path ?? []).map((k) => (typeof k === "object" && k !== null && "key" in k ? k.key : k))
      const p = [section, ...keys.map(String)].join(".")
      if (i.message === "Expected no excess property") return `${p}: unknown key`
      // say what was there: "Expected a value greater than 0, got -0.005"
      const got = keys.reduce<unknown>((v, k) => (isRecord(v) || Array.isArray(v) ? (v as Record<PropertyKey, unknown>)[k as PropertyKey] : undefined), value)
      const shown = got === undefined || /\bgot\b/.test(i.message) ? "" : `, got ${typeof got === "number" && !Number.isFinite(got) ? String(got) : JSON.stringify(got)?.slice(0, 60)}`
      return `${p}: ${i.message}${shown}`
    })
    return fail(`${where}: ${parts.join("; ")}${issues.length > 3 ? ` (and ${issues.length - 3} more)` : ""}`)
  })

/** Engine-level sections. */
export interface EngineConfig {
  readonly budgetBytes: number | undefined
  readonly memoryMB: number | undefined
  readonly gpus: number
  /** outputs to treat as temporary, as `stage.output` */
  readonly temporary: ReadonlyArray<string>
  /** remote caches by name (cache/Remote.ts) */
  readonly remotes: ReadonlyMap<string, RemoteSpec>
  /** where stages run (engine/Slurm.ts): the default, and per stage */
  readonly executors: Executors
}

export type ExecutorSpec =
  | { readonly kind: "local" }
  | {
      readonly kind: "slurm"
      readonly partition?: string | undefined
      readonly gres?: string | undefined
      readonly time?: string | undefined
      readonly cpus?: number | undefined
      readonly extra: ReadonlyArray<string>
    }

export interface Executors {
  readonly default: ExecutorSpec
  readonly stages: ReadonlyMap<string, ExecutorSpec>
}

const decodeExecutor = (raw: unknown, at: string): ExecutorSpec | string => {
  if (raw === "local") return { kind: "local" }
  if (raw === "slurm") return { kind: "slurm", extra: [] }
  if (!isRecord(raw)) return `${at}: expected local, slurm, or { kind: slurm, partition: …, gres: …, time: …, extra: [...] }`
  for (const k of Object.keys(raw)) if (!["kind", "partition", "gres", "time", "cpus", "extra"].includes(k)) return `${at}.${k}: unknown key`
  if (raw["kind"] === "local") return Object.keys(raw).length === 1 ? { kind: "local" } : `${at}: a local executor takes no options`
  if (raw["kind"] !== "slurm") return `${at}.kind: expected local or slurm`
  for (const k of ["partition", "gres", "time"] as const)
    if (raw[k] !== undefined && (typeof raw[k] !== "string" || !/^[\w:.,=\-/+]+$/.test(raw[k] as string))) return `${at}.${k}: expected a word like gpu, gpu:1 or 12:00:00`
  if (raw["cpus"] !== undefined && (typeof raw["cpus"] !== "number" || !Number.isInteger(raw["cpus"]) || (raw["cpus"] as number) < 1)) return `${at}.cpus: expected a whole number of at least 1`
  const extra = raw["extra"] ?? []
  if (!Array.isArray(extra) || extra.some((e) => typeof e !== "string" || !e.startsWith("--") || /[\n\r]/.test(e))) return `${at}.extra: expected a list of sbatch options like --account=ml`
  return {
    kind: "slurm",
    partition: raw["partition"] as string | undefined,
    gres: raw["gres"] as string | undefined,
    time: raw["time"] as string | undefined,
    cpus: raw["cpus"] as number | undefined,
    extra: extra as Array<string>
  }
}

const decodeExecutors = (raw: unknown, where: string): Effect.Effect<Executors, ConfigError> =>
  Effect.gen(function* () {
    const stages = new Map<string, ExecutorSpec>()
    let def: ExecutorSpec = { kind: "local" }
    if (raw === undefined || raw === null) return { default: def, stages }
    if (!isRecord(raw)) return yield* fail(`${where}: executors: expected a mapping like { default: local, train: { kind: slurm, partition: gpu } }`)
    for (const [name, v] of Object.entries(raw)) {
      const e = decodeExecutor(v, `${where}: executors.${name}`)
      if (typeof e === "string") return yield* fail(e)
      if (name === "default") def = e
      else stages.set(name, e)
    }
    return { default: def, stages }
  })

/** `--executor slurm` (every stage) and `--executor train=slurm` (one stage) over the params file's. */
export const overrideExecutors = (e: Executors, flags: ReadonlyArray<string>): Executors | string => {
  let def = e.default
  const stages = new Map(e.stages)
  for (const f of flags) {
    const m = /^(?:([a-z][a-z0-9_-]*)=)?(local|slurm)$/.exec(f)
    if (m === null) return `--executor ${f}: expected local, slurm, or STAGE=local|slurm`
    const kind = m[2] as "local" | "slurm"
    const base = m[1] === undefined ? def : stages.get(m[1]) ?? def
    const spec: ExecutorSpec = kind === "local" ? { kind } : base.kind === "slurm" ? base : { kind, extra: [] }
    if (m[1] === undefined) {
      def = spec
      for (const [n, s] of stages) if (s.kind !== kind) stages.delete(n)
    } else stages.set(m[1], spec)
  }
  return { default: def, stages }
}

export interface RemoteSpec {
  readonly url: string
  readonly endpoint?: string | undefined
  readonly region?: string | undefined
  readonly pathStyle?: boolean | undefined
  /** the one `--remote` means when it is not given (with several remotes) */
  readonly default: boolean
}

const ENGINE_SECTIONS = new Set(["budget", "resources", "temporary", "remotes", "executors"])

const decodeRemotes = (raw: unknown, where: string): Effect.Effect<Map<string, RemoteSpec>, ConfigError> =>
  Effect.gen(function* () {
    const out = new Map<string, RemoteSpec>()
    if (raw === undefined || raw === null) return out
    if (!isRecord(raw)) return yield* fail(`${where}: remotes: expected a mapping like { team: { url: s3://bucket/cache } }`)
    for (const [name, r] of Object.entries(raw)) {
      const at = `${where}: remotes.${name}`
      if (!/^[a-z][a-z0-9_-]*$/.test(name)) return yield* fail(`${at}: a remote's name is lower-case letters, digits, - and _`)
      if (!isRecord(r) || typeof r["url"] !== "string") return yield* fail(`${at}: expected { url: s3://bucket/prefix | http(s)://host/path }`)
      for (const k of Object.keys(r)) if (!["url", "endpoint", "region", "pathStyle", "default"].includes(k)) return yield* fail(`${at}.${k}: unknown key`)
      const problem = remoteUrlProblem(r["url"])
      if (problem !== undefined) return yield* fail(`${at}.url: ${problem}`)
      for (const k of ["endpoint", "region"] as const) if (r[k] !== undefined && typeof r[k] !== "string") return yield* fail(`${at}.${k}: expected a string`)
      for (const k of ["pathStyle", "default"] as const) if (r[k] !== undefined && typeof r[k] !== "boolean") return yield* fail(`${at}.${k}: expected true or false`)
      out.set(name, {
        url: r["url"],
        endpoint: r["endpoint"] as string | undefined,
        region: r["region"] as string | undefined,
        pathStyle: r["pathStyle"] as boolean | undefined,
        default: r["default"] === true
      })
    }
    if ([...out.values()].filter((r) => r.default).length > 1) return yield* fail(`${where}: remotes: more than one is marked default: true`)
    return out
  })

export const decodeEngineConfig = (doc: Doc, where: string): Effect.Effect<EngineConfig, ConfigError> =>
  Effect.gen(function* () {
    const budget = doc["budget"]
    let budgetBytes: number | undefined
    if (budget !== undefined && budget !== null) {
      if (!isRecord(budget)) return yield* fail(`${where}: budget: expected a mapping like { disk: 20GB }`)
      for (const k of Object.keys(budget)) if (k !== "disk") return yield* fail(`${where}: budget.${k}: unknown key`)
      if (budget["disk"] !== undefined && budget["disk"] !== null) {
        budgetBytes = parseBytes(budget["disk"])
        if (budgetBytes === undefined) return yield* fail(`${where}: budget.disk: expected a size like 20GB, got ${JSON.stringify(budget["disk"])}`)
      }
    }
    const resources = doc["resources"]
    let memoryMB: number | undefined
    let gpus = 0
    if (resources !== undefined && resources !== null) {
      if (!isRecord(resources)) return yield* fail(`${where}: resources: expected a mapping`)
      for (const [k, v] of Object.entries(resources)) {
        if (k === "memory") {
          if (v === "auto") continue
          const b = parseBytes(v)
          if (b === undefined) return yield* fail(`${where}: resources.memory: expected a size like 16GB or auto`)
          memoryMB = b / 1e6
        } else if (k === "gpus") {
          if (typeof v !== "number" || !Number.isInteger(v) || v < 0) return yield* fail(`${where}: resources.gpus: expected a whole number`)
          gpus = v
        } else return yield* fail(`${where}: resources.${k}: unknown key`)
      }
    }
    const temporary: unknown = doc["temporary"] ?? []
    if (!Array.isArray(temporary) || temporary.some((t) => typeof t !== "string" || !/^[^.]+\.[^.]+$/.test(t)))
      return yield* fail(`${where}: temporary: expected a list of stage.output names`)
    const remotes = yield* decodeRemotes(doc["remotes"], where)
    const executors = yield* decodeExecutors(doc["executors"], where)
    return { budgetBytes, memoryMB, gpus, temporary: temporary as Array<string>, remotes, executors }
  })

/** Decodes every stage's sections; unknown top-level sections are errors too. */
export const decodeStageParams = (
  doc: Doc,
  stages: ReadonlyArray<AnyStage>,
  where: string
): Effect.Effect<Map<string, Record<string, unknown>>, ConfigError> =>
  Effect.gen(function* () {
    const known = new Set(ENGINE_SECTIONS)
    const schemas = new Map<string, Schema.Top>()
    for (const s of stages)
      for (const [section, schema] of Object.entries(s.params)) {
        known.add(section)
        schemas.set(section, schema)
      }
    for (const k of Object.keys(doc)) if (!known.has(k)) return yield* fail(`${where}: ${k}: unknown section (no stage reads it)`)
    const decoded = new Map<string, unknown>()
    for (const [section, schema] of schemas) decoded.set(section, yield* decode(schema, doc[section] ?? {}, where, section))
    return new Map(stages.map((s) => [s.name, Object.fromEntries(Object.keys(s.params).map((k) => [k, decoded.get(k)]))]))
  })

/** Environment variables whose values are secrets: never in params, logs, plans, the lock or keys. */
export const SECRET_ENV = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "S3_SECRET_KEY", "S3_ACCESS_KEY"]

export const secretValues = (env: NodeJS.ProcessEnv = process.env): Array<string> =>
  SECRET_ENV.map((k) => env[k]).filter((v): v is string => typeof v === "string" && v.length >= 6)

/** Refuses params that carry a secret's value (it would land in the lock and the key). */
export const assertNoSecrets = (doc: Doc, where: string, env: NodeJS.ProcessEnv = process.env): Effect.Effect<void, ConfigError> =>
  Effect.suspend(() => {
    const secrets = secretValues(env)
    if (secrets.length === 0) return Effect.void
    // the path of the first value that holds a secret, and which
    const find = (v: unknown, p: string): { path: string; name: string } | undefined => {
      if (typeof v === "string") {
        const i = secrets.findIndex((s) => v.includes(s))
        return i >= 0 ? { path: p, name: SECRET_ENV.find((k) => env[k] === secrets[i]) ?? "a secret" } : undefined
      }
      if (Array.isArray(v)) {
        for (const [j, x] of v.entries()) {
          const hit = find(x, `${p}[${j}]`)
          if (hit) return hit
        }
      } else if (isRecord(v))
        for (const [k, x] of Object.entries(v)) {
          const hit = find(x, p ? `${p}.${k}` : k)
          if (hit) return hit
        }
      return undefined
    }
    const hit = find(doc, "")
    return hit ? fail(`${where}: ${hit.path}: holds the value of ${hit.name}; secrets come from the environment, never from params`) : Effect.void
  })

/** Masks secret values in a line of output. */
export const redact = (line: string, secrets: ReadonlyArray<string> = secretValues()): string => {
  let out = line
  for (const s of secrets) out = out.split(s).join("***")
  return out
}
