/**
 * Comparing runs: the workspace's declared metrics and params against those a
 * git revision's `pipeline.lock` records (`pipeline metrics diff [REV]`,
 * `pipeline params diff [REV]`), so a pull request shows what its change did
 * to tool-call accuracy and loss.
 *
 * The lock at REV holds each metrics file's digest, not its content (out/ is
 * not in git); the content comes from the local store, else from the remote
 * cache when one is given, else the row says it is not at hand.
 */
import * as Effect from "effect/Effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { canonicalJson } from "../cache/Canonical.ts"
import * as Digest from "../cache/Digest.ts"
import { type Backend, objectRel } from "../cache/Remote.ts"
import { ConfigError } from "./Errors.ts"
import * as Lockfile from "./Lockfile.ts"
import type { Workspace } from "./Workspace.ts"

/** The lock as git holds it at `rev` (the workspace may be a subdirectory of the repository). */
export const lockAt = (ws: Workspace, rev: string): Effect.Effect<Lockfile.Lock, ConfigError> =>
  Effect.gen(function* () {
    if (!/^[\w./@^~{}:-]+$/.test(rev) || rev.startsWith("-")) return yield* new ConfigError({ message: `${rev}: not a git revision` })
    let text: string
    try {
      text = execFileSync("git", ["-C", ws.root, "show", `${rev}:./pipeline.lock`], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
    } catch (e) {
      const err = String((e as { stderr?: string }).stderr ?? (e as Error).message).trim().split("\n")[0]
      return yield* new ConfigError({ message: `pipeline.lock at ${rev}: ${err || "git could not read it"}` })
    }
    fs.mkdirSync(ws.tmpDir, { recursive: true })
    const file = path.join(ws.tmpDir, `lock-${process.pid}-${Date.now()}.yaml`)
    fs.writeFileSync(file, text)
    return yield* Lockfile.read(file, `pipeline.lock at ${rev}`).pipe(Effect.ensuring(Effect.sync(() => fs.rmSync(file, { force: true }))))
  })

export interface Row {
  readonly file: string
  readonly metric: string
  readonly old: number | string | null
  readonly new: number | string | null
  /** new − old, when both are numbers */
  readonly change: number | null
}

/**
 * Every leaf of a JSON value as `a.b.c` → what `leaf` makes of it (undefined: left out).
 * Arrays are leaves.
 */
const leaves = <T>(v: unknown, leaf: (x: unknown) => T | undefined, prefix = ""): Array<[string, T]> => {
  if (typeof v === "object" && v !== null && !Array.isArray(v)) return Object.entries(v).flatMap(([k, x]) => leaves(x, leaf, prefix === "" ? k : `${prefix}.${k}`))
  const l = prefix === "" ? undefined : leaf(v)
  return l === undefined ? [] : [[prefix, l]]
}

/** A metric: numbers stay numbers, strings and booleans read as text; the rest is not a metric. */
const metricLeaf = (x: unknown): number | string | undefined =>
  typeof x === "number" || typeof x === "string" ? x : typeof x === "boolean" ? String(x) : undefined

const parseMetrics = (rel: string, text: string): unknown =>
  rel.endsWith(".jsonl") ? JSON.parse(text.trim().split("\n").at(-1) ?? "{}") : JSON.parse(text)

/** A metrics object's text: from the store, else the remote (checked against its digest), else undefined. */
const objectText = (ws: Workspace, remote: Backend | undefined, digest: Digest.Digest): Effect.Effect<string | undefined> =>
  Effect.gen(function* () {
    if (ws.store.intact(digest)) return fs.readFileSync(ws.store.objectPath(digest), "utf8")
    if (remote === undefined) return undefined
    const text = yield* Effect.orElseSucceed(remote.getText(objectRel(digest)), () => undefined)
    return text !== undefined && Digest.ofBytes(text) === digest ? text : undefined
  })

/** The declared metrics of the workspace (out/) against the lock at `rev`. */
export const metricsDiff = (ws: Workspace, rev: string, remote: Backend | undefined): Effect.Effect<{ rows: Array<Row>; missing: Array<string> }, ConfigError> =>
  Effect.gen(function* () {
    const old = yield* lockAt(ws, rev)
    const rows: Array<Row> = []
    const missing: Array<string> = []
    for (const stage of ws.dag.stages) {
      for (const o of Object.values(stage.outputs)) {
        if (!o.metrics) continue
        const rel = `out/${stage.name}/${o.path}`
        let now: unknown
        try {
          now = parseMetrics(rel, fs.readFileSync(ws.abs(rel), "utf8"))
        } catch {
          now = undefined
        }
        const rec = old[stage.name]?.outputs.find((x) => x.path === rel)
        let then: unknown
        if (rec !== undefined) {
          const text = yield* objectText(ws, remote, rec.digest)
          if (text === undefined) missing.push(`${rel} at ${rev} (${rec.digest.slice(0, 19)}…): not in the local cache${remote ? ` nor on ${remote.name}` : "; --remote may have it"}`)
          else
            try {
              then = parseMetrics(rel, text)
            } catch {
              missing.push(`${rel} at ${rev}: not valid JSON`)
            }
        }
        if (now === undefined && then === undefined) continue
        const a = new Map(leaves(then, metricLeaf))
        const b = new Map(leaves(now, metricLeaf))
        for (const metric of [...new Set([...a.keys(), ...b.keys()])].sort()) {
          const x = a.get(metric) ?? null
          const y = b.get(metric) ?? null
          rows.push({ file: rel, metric, old: x, new: y, change: typeof x === "number" && typeof y === "number" ? y - x : null })
        }
      }
    }
    return { rows, missing }
  })

export interface ParamRow {
  readonly stage: string
  readonly param: string
  readonly old: string | null
  readonly new: string | null
}

/** The params of the workspace against those the lock at `rev` recorded, stage by stage, changed ones only. */
export const paramsDiff = (ws: Workspace, rev: string): Effect.Effect<Array<ParamRow>, ConfigError> =>
  Effect.map(lockAt(ws, rev), (old) => {
    const rows: Array<ParamRow> = []
    // the stages either lock knows: one never run on either side has nothing to compare
    for (const stage of ws.dag.stages.filter((s) => old[s.name] !== undefined || ws.lock[s.name] !== undefined)) {
      const a = new Map(leaves(old[stage.name]?.params, canonicalJson))
      const b = new Map(leaves(ws.params.get(stage.name), canonicalJson))
      for (const p of [...new Set([...a.keys(), ...b.keys()])].sort()) {
        const x = a.get(p) ?? null
        const y = b.get(p) ?? null
        if (x !== y) rows.push({ stage: stage.name, param: p, old: x, new: y })
      }
    }
    return rows
  })

const fmt = (v: number | string | null) => (v === null ? "—" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : v)

export const metricsTable = (rows: ReadonlyArray<Row>, rev: string): Array<string> => {
  if (rows.length === 0) return ["no declared metrics on either side"]
  const head = ["file", "metric", rev, "workspace", "change"]
  const body = rows.map((r) => [r.file, r.metric, fmt(r.old), fmt(r.new), r.change === null ? "" : `${r.change >= 0 ? "+" : ""}${fmt(r.change)}`])
  return table(head, body)
}

export const paramsTable = (rows: ReadonlyArray<ParamRow>, rev: string): Array<string> =>
  rows.length === 0 ? [`params unchanged since ${rev}`] : table(["stage", "param", rev, "workspace"], rows.map((r) => [r.stage, r.param, r.old ?? "—", r.new ?? "—"]))

const table = (head: ReadonlyArray<string>, body: ReadonlyArray<ReadonlyArray<string>>): Array<string> => {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)))
  const line = (r: ReadonlyArray<string>) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()
  return [line(head), ...body.map(line)]
}
