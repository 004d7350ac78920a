/**
 * A workspace: the directory holding the pipeline, its params file, `out/`,
 * `pipeline.lock` and `.pipeline/`. Loading one reads the params, decodes them
 * per stage, builds the DAG and opens the stat cache, the store and the lock:
 * everything planning needs, with no writes.
 */
import * as Effect from "effect/Effect"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { RunCache } from "../cache/RunCache.ts"
import { StatCache } from "../cache/StatCache.ts"
import { ParseMemo } from "../cache/ParseMemo.ts"
import type { Cache } from "../cache/Cache.ts"
import { type Fs, nodeFs } from "../cache/Fs.ts"
import { LocalCache } from "../cache/LocalCache.ts"
import { canonical, isWithin } from "../cache/Paths.ts"
import { Store } from "../cache/Store.ts"
import { writeFileAtomic } from "../cache/Atomic.ts"
import { CodeFingerprinter } from "./CodeFingerprint.ts"
import * as Dag from "./Dag.ts"
import { ConfigError, type GraphError } from "./Errors.ts"
import * as Lockfile from "./Lockfile.ts"
import * as Params from "./Params.ts"
import type { AnyStage } from "./Stage.ts"

export interface Options {
  readonly root: string
  /** params file, relative to the root (default pipeline.yaml) */
  readonly config?: string | undefined
  readonly sets?: ReadonlyArray<string> | undefined
  /** where warnings about ignored derived state go (default: stderr, once each) */
  readonly warn?: ((message: string) => void) | undefined
  /** the file system the store, the caches and the executor use (default: node:fs; see engine/Services.ts) */
  readonly fs?: Fs | undefined
}

const warnOnce = (): ((message: string) => void) => {
  const said = new Set<string>()
  return (m) => {
    if (said.has(m)) return
    said.add(m)
    process.stderr.write(`warning: ${m}\n`)
  }
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
  /** what the planner and executor ask for results by key (cache/Cache.ts): the store and run-cache, for now */
  readonly cache: Cache<Lockfile.LockEntry>
  /**
   * entries learnt from a remote in this process (`stage key` → the remote's name and the entry):
   * the plan restores them ("restore (team)"), fetching their objects only when they are needed
   */
  readonly remoteEntries = new Map<string, { readonly name: string; readonly entry: Lockfile.LockEntry }>()
  /** fetches outputs' objects from the remote of this command (`run --remote`), when there is one */
  fetchFromRemote: ((outputs: ReadonlyArray<Lockfile.OutputRec>) => Effect.Effect<void, Error>) | undefined = undefined
  readonly dag: Dag.Dag
  readonly lock: Lockfile.Lock
  readonly params: ReadonlyMap<string, Record<string, unknown>>
  readonly engine: Params.EngineConfig
  readonly configName: string
  /** how it was loaded (`--config`, `--set`): a Slurm job loads the same workspace on its node */
  readonly loadedWith: { readonly config: string | undefined; readonly sets: ReadonlyArray<string> }
  readonly code: CodeFingerprinter

  readonly root: string
  readonly warn: (message: string) => void
  readonly fs: Fs

  /**
   * Loads a workspace: the params (decoded per stage), the DAG, the lock and
   * the derived state. Everything that can be wrong with them is a failure
   * value (a ConfigError or a GraphError naming the file and field); nothing
   * is written.
   */
  static load(root: string, stages: ReadonlyArray<AnyStage>, options: Options): Effect.Effect<Workspace, ConfigError | GraphError> {
    return Effect.gen(function* () {
      const files = options.fs ?? nodeFs
      const stateDir = path.join(root, ".pipeline")
      for (const [dir, what] of [[stateDir, "its cache and state"], [path.join(root, "out"), "the stages' outputs"]] as const) {
        const st = files.statSync(dir, { throwIfNoEntry: false })
        if (st && !st.isDirectory()) return yield* new ConfigError({ message: `${path.relative(root, dir)} is a file, not a directory: the pipeline keeps ${what} there; move it away` })
      }
      const warn = options.warn ?? warnOnce()
      const memo = new ParseMemo(path.join(stateDir, "parse-memo.json"), warn, files)
      const dag = yield* Dag.make(stages)
      const configName = options.config ?? "pipeline.yaml"
      const configPath = path.resolve(root, configName)
      const doc = files.existsSync(configPath) || options.config !== undefined ? yield* Params.readDoc(configPath, configName, memo) : {}
      const sets = options.sets ?? []
      const where = sets.length > 0 ? `${configName} (with --set ${Params.redact(sets.join(" --set "))})` : configName
      const merged = yield* Params.applySets(doc, sets)
      yield* Params.assertNoSecrets(merged, where)
      const engine = yield* Params.decodeEngineConfig(merged, where)
      for (const t of engine.temporary) {
        const [s, o] = t.split(".") as [string, string]
        if (!dag.byName.get(s)?.outputs[o]) return yield* new ConfigError({ message: `${where}: temporary: ${t} is not an output of the pipeline` })
      }
      const params = yield* Params.decodeStageParams(merged, stages, where)
      const lock = yield* Lockfile.read(path.join(root, "pipeline.lock"), "pipeline.lock", memo)
      // the inputs these params read (Stage.inputsFor): the DAG, keys and plans see only those
      const selected = yield* selectInputs(stages, params, where)
      const active = selected === stages ? dag : yield* Dag.make(selected)
      return new Workspace({ root, files, warn, memo, dag: active, configName, engine, params, lock, config: options.config, sets })
    })
  }

  private constructor(parts: {
    readonly root: string
    readonly files: Fs
    readonly warn: (message: string) => void
    readonly memo: ParseMemo
    readonly dag: Dag.Dag
    readonly configName: string
    readonly engine: Params.EngineConfig
    readonly params: ReadonlyMap<string, Record<string, unknown>>
    readonly lock: Lockfile.Lock
    readonly config: string | undefined
    readonly sets: ReadonlyArray<string>
  }) {
    const root = parts.root
    this.root = root
    this.warn = parts.warn
    this.fs = parts.files
    this.outDir = path.join(root, "out")
    this.stateDir = path.join(root, ".pipeline")
    this.tmpDir = path.join(this.stateDir, "tmp")
    this.scratchRoot = path.join(this.stateDir, "scratch")
    this.lockFile = path.join(root, "pipeline.lock")
    this.stats = new StatCache(path.join(this.stateDir, "stat-cache.json"), this.warn, this.fs)
    this.store = new Store(path.join(this.stateDir, "cache"), this.stats, this.warn, this.fs)
    this.runs = new RunCache(path.join(this.stateDir, "runs"), Lockfile.decodeEntry, this.warn, this.fs)
    this.memo = parts.memo
    this.cache = new LocalCache(this.store, this.runs, (stage, key) => this.remoteEntries.get(`${stage} ${key}`))
    this.dag = parts.dag
    this.configName = parts.configName
    this.engine = parts.engine
    this.params = parts.params
    this.lock = parts.lock
    this.loadedWith = { config: parts.config, sets: parts.sets }
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
  private onRemoteRecords: Record<string, { key: string; remote: string }> | undefined

  private get onRemoteFile(): string {
    return path.join(this.stateDir, "on-remote.json")
  }

  private readOnRemote(): Record<string, { key: string; remote: string }> {
    if (this.onRemoteRecords === undefined) {
      let parsed: unknown
      try {
        parsed = JSON.parse(this.fs.readFileSync(this.onRemoteFile, "utf8"))
      } catch {
        parsed = {}
      }
      const ok = (v: unknown): v is { key: string; remote: string } =>
        typeof v === "object" && v !== null && typeof (v as { key?: unknown }).key === "string" && typeof (v as { remote?: unknown }).remote === "string"
      this.onRemoteRecords = Object.fromEntries(Object.entries(typeof parsed === "object" && parsed !== null ? parsed : {}).filter(([, v]) => ok(v)))
    }
    return this.onRemoteRecords
  }

  /**
   * The remote that holds a stage's outputs for `key` when a run left them there (`run --remote`
   * fetches only what the stages that run need): its missing outputs are then not a reason to run.
   */
  onRemote(stage: string, key: string): string | undefined {
    const r = this.readOnRemote()[stage]
    return r !== undefined && r.key === key ? r.remote : undefined
  }

  /** Records (remote's name) or forgets (undefined) that a stage's outputs were left on a remote. */
  setOnRemote(stage: string, key: string, remote: string | undefined): void {
    const records = { ...this.readOnRemote() }
    if (remote === undefined) {
      if (records[stage] === undefined) return
      delete records[stage]
    } else {
      if (records[stage]?.key === key && records[stage]?.remote === remote) return
      records[stage] = { key, remote }
    }
    this.onRemoteRecords = records
    writeFileAtomic(this.onRemoteFile, JSON.stringify(records, null, 2) + "\n", undefined, this.fs)
  }

  saveCaches(): void {
    this.stats.save()
    this.memo.save()
  }

  private readonly codeMemo = new Map<string, Record<string, import("../cache/Digest.ts").Digest>>()

  /** A stage's code fingerprint (see CodeFingerprint.ts), computed once per process. */
  codeOf(stage: AnyStage): Record<string, import("../cache/Digest.ts").Digest> {
    let code = this.codeMemo.get(stage.name)
    if (code === undefined) {
      const others = new Set(this.dag.stages.filter((s) => s.module !== stage.module).map((s) => s.module))
      code = this.code.fingerprint(stage.module, stage.codeFiles, others)
      this.codeMemo.set(stage.name, code)
    }
    return code
  }

  /**
   * What the workspace keeps at or under `abs`, or undefined: a stage that
   * writes outside out/ (a publish) must never replace the workspace or any of
   * its ancestors, its cache and state, the stages' outputs, its git
   * repository, or a directory holding a file the pipeline is made of or
   * reads (params, lock, stage code, external inputs). Paths are compared
   * after resolving symbolic links, so no spelling gets around it.
   */
  owns(abs: string): string | undefined {
    const t = canonical(abs)
    const root = canonical(this.root)
    if (t === root) return "the workspace itself"
    if (isWithin(root, t)) return `a directory that holds the workspace (${this.root})`
    const under = (dir: string, what: string) => (isWithin(t, canonical(dir)) ? what : undefined)
    const out = canonical(this.outDir)
    if (t === out) return "out/, where every stage's outputs live"
    for (const s of this.dag.stages) {
      const hit = under(path.join(this.outDir, s.name), `out/${s.name}/, the outputs of stage ${s.name}`)
      if (hit) return hit
    }
    const fixed = under(this.stateDir, ".pipeline/, the cache and state of the pipeline") ?? under(path.join(this.root, ".git"), ".git/, the git repository")
    if (fixed) return fixed
    // a directory that does not exist yet holds nothing
    if (!this.fs.existsSync(t)) return undefined
    const own = new Set([this.lockFile, ...this.definitionFiles()])
    for (const f of own) if (this.fs.existsSync(f) && isWithin(canonical(f), t)) return `a directory that holds ${this.rel(f)}, part of the workspace`
    return undefined
  }

  /**
   * The files whose content defines what the pipeline does (absolute): the params file,
   * pipeline.ts, every stage's code (its module and the project files it imports) and its
   * external inputs. `owns` protects them; `watch` watches them.
   */
  definitionFiles(): Array<string> {
    const files = new Set([path.resolve(this.root, this.configName), path.join(this.root, "pipeline.ts")])
    for (const s of this.dag.stages) {
      for (const f of Object.keys(this.codeOf(s))) files.add(path.resolve(this.root, f))
      for (const d of s.deps(this.params.get(s.name))) files.add(path.resolve(this.root, d))
    }
    return [...files]
  }

  writeLock(): void {
    Lockfile.write(this.lockFile, this.lock, this.dag.order)
  }
}

/** The stages with only the inputs their params read (Stage.inputsFor); `stages` itself when none chooses. */
const selectInputs = (
  stages: ReadonlyArray<AnyStage>,
  params: ReadonlyMap<string, unknown>,
  where: string
): Effect.Effect<ReadonlyArray<AnyStage>, ConfigError> =>
  Effect.gen(function* () {
    if (!stages.some((s) => s.inputsFor !== undefined)) return stages
    const out: Array<AnyStage> = []
    for (const s of stages) {
      if (s.inputsFor === undefined) {
        out.push(s)
        continue
      }
      const names = s.inputsFor(params.get(s.name))
      const unknown = names.filter((n) => !(n in s.inputs))
      if (unknown.length > 0) return yield* new ConfigError({ message: `${where}: stage ${s.name} chose inputs it does not declare: ${unknown.join(", ")}` })
      out.push({ ...s, inputs: Object.fromEntries(names.map((n) => [n, s.inputs[n]!])) })
    }
    return out
  })
