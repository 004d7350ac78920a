/**
 * A workspace: the directory holding the pipeline, its params file, `out/`,
 * `pipeline.lock` and `.pipeline/`. Loading one reads the params, decodes them
 * per stage, builds the DAG and opens the stat cache, the store and the lock:
 * everything planning needs, with no writes.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { RunCache } from "../cache/RunCache.ts"
import { StatCache } from "../cache/StatCache.ts"
import { ParseMemo } from "../cache/ParseMemo.ts"
import { Store } from "../cache/Store.ts"
import { CodeFingerprinter } from "./CodeFingerprint.ts"
import * as Dag from "./Dag.ts"
import { ConfigError } from "./Errors.ts"
import * as Lockfile from "./Lockfile.ts"
import * as Params from "./Params.ts"
import type { AnyStage } from "./Stage.ts"

export interface Options {
  readonly root: string
  /** params file, relative to the root (default pipeline.yaml) */
  readonly config?: string | undefined
  readonly sets?: ReadonlyArray<string> | undefined
}

/** The framework's own directories: never part of a stage's code fingerprint. */
const FRAMEWORK_DIRS = [path.dirname(fileURLToPath(import.meta.url)), path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../cache")]

export class Workspace {
  readonly outDir: string
  readonly stateDir: string
  readonly tmpDir: string
  readonly scratchRoot: string
  readonly lockFile: string
  readonly stats: StatCache
  readonly memo: ParseMemo
  readonly store: Store
  readonly runs: RunCache<Lockfile.LockEntry>
  readonly dag: Dag.Dag
  readonly lock: Lockfile.Lock
  readonly params: ReadonlyMap<string, Record<string, unknown>>
  readonly engine: Params.EngineConfig
  readonly configName: string
  readonly code: CodeFingerprinter

  readonly root: string

  constructor(root: string, stages: ReadonlyArray<AnyStage>, options: Options) {
    this.root = root
    this.outDir = path.join(root, "out")
    this.stateDir = path.join(root, ".pipeline")
    this.tmpDir = path.join(this.stateDir, "tmp")
    this.scratchRoot = path.join(this.stateDir, "scratch")
    this.lockFile = path.join(root, "pipeline.lock")
    this.stats = new StatCache(path.join(this.stateDir, "stat-cache.json"))
    this.store = new Store(path.join(this.stateDir, "cache"), this.stats)
    this.runs = new RunCache(path.join(this.stateDir, "runs"))
    this.memo = new ParseMemo(path.join(this.stateDir, "parse-memo.json"))
    this.dag = Dag.make(stages)
    this.configName = options.config ?? "pipeline.yaml"
    const configPath = path.resolve(root, this.configName)
    const doc = fs.existsSync(configPath) || options.config !== undefined ? Params.readDoc(configPath, this.configName, this.memo) : {}
    const sets = options.sets ?? []
    const where = sets.length > 0 ? `${this.configName} (with --set ${Params.redact(sets.join(" --set "))})` : this.configName
    const merged = Params.applySets(doc, sets)
    Params.assertNoSecrets(merged, where)
    this.engine = Params.decodeEngineConfig(merged, where)
    for (const t of this.engine.temporary) {
      const [s, o] = t.split(".") as [string, string]
      if (!this.dag.byName.get(s)?.outputs[o]) throw new ConfigError({ message: `${where}: temporary: ${t} is not an output of the pipeline` })
    }
    this.params = Params.decodeStageParams(merged, stages, where)
    this.lock = Lockfile.read(this.lockFile, "pipeline.lock", this.memo)
    this.code = new CodeFingerprinter({ root, exclude: FRAMEWORK_DIRS })
  }

  rel(abs: string): string {
    return path.relative(this.root, abs).split(path.sep).join("/")
  }

  abs(rel: string): string {
    return path.resolve(this.root, rel)
  }

  /** out/<stage>/<output path>, workspace-relative */
  outputPath(stage: string, output: string): string {
    const decl = this.dag.byName.get(stage)!.outputs[output]!
    return `out/${stage}/${decl.path}`
  }

  /** Whether a recorded output path (`out/<stage>/...`) is one of the stage's temporary outputs. */
  isTemporaryPath(stage: string, relPath: string): boolean {
    const decls = this.dag.byName.get(stage)?.outputs ?? {}
    const name = Object.keys(decls).find((o) => `out/${stage}/${decls[o]!.path}` === relPath)
    return name !== undefined && this.isTemporary(stage, name)
  }

  isTemporary(stage: string, output: string): boolean {
    return this.dag.byName.get(stage)!.outputs[output]!.temporary || this.engine.temporary.includes(`${stage}.${output}`)
  }

  /** Writes back the stat cache and the parse memo (only commands that may write call this). */
  saveCaches(): void {
    this.stats.save()
    this.memo.save()
  }

  /** A stage's code fingerprint (see CodeFingerprint.ts). */
  codeOf(stage: AnyStage): Record<string, import("../cache/Digest.ts").Digest> {
    const others = new Set(this.dag.stages.filter((s) => s.module !== stage.module).map((s) => s.module))
    return this.code.fingerprint(stage.module, stage.codeFiles, others)
  }

  writeLock(): void {
    Lockfile.write(this.lockFile, this.lock, this.dag.order)
  }
}
