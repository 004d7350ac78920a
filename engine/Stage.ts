/**
 * Stages are values. A stage names its params (sections of the params file,
 * each with a Schema), the upstream outputs it reads (typed references, not
 * stage names), the outputs it writes, what it costs, and how it runs. The
 * engine never looks inside `run`: everything it needs to plan, cache and
 * schedule a stage is declared here.
 */
import type * as Effect from "effect/Effect"
import type * as Schema from "effect/Schema"
import { fileURLToPath } from "node:url"
import type { Progress } from "./Progress.ts"
import type { StageError } from "./Errors.ts"
import type { ChildProcesses } from "./Services.ts"

export type OutputKind = "file" | "dir"

export interface OutputDecl {
  /** path under `out/<stage>/` */
  readonly path: string
  readonly kind: OutputKind
  /** deleted (from out/ and the cache) once the last stage that reads it has finished */
  readonly temporary: boolean
  /** a metrics file (JSON) that `status` and reports show */
  readonly metrics: boolean
  /** a JSON-lines file whose series `pipeline report` plots: `y` fields against `x` */
  readonly plot?: { readonly x: string; readonly y: ReadonlyArray<string> } | undefined
}

export const file = (
  path: string,
  options?: { readonly temporary?: boolean; readonly metrics?: boolean; readonly plot?: { readonly x: string; readonly y: ReadonlyArray<string> } }
): OutputDecl => ({
  path,
  kind: "file",
  temporary: options?.temporary ?? false,
  metrics: options?.metrics ?? false,
  ...(options?.plot ? { plot: options.plot } : {})
})

export const dir = (path: string, options?: { readonly temporary?: boolean }): OutputDecl => ({
  path,
  kind: "dir",
  temporary: options?.temporary ?? false,
  metrics: false
})

/** A typed reference to one output of one stage: what downstream stages depend on. */
export interface OutputRef {
  readonly _tag: "OutputRef"
  readonly stage: string
  readonly output: string
}

/** Params are whole sections of the params file: `{ train: Schema, lora: Schema }`. */
export type ParamSections = Record<string, Schema.Top>
export type ParamsOf<S extends ParamSections> = { readonly [K in keyof S]: S[K]["Type"] }

export interface EstimateInput<P> {
  readonly params: P
  /** bytes of each input, real when known, else the upstream's estimate */
  readonly inputSizes: Readonly<Record<string, number>>
}

export interface Estimate<O extends string = string> {
  /** bytes each output will take */
  readonly bytes: Readonly<Record<O, number>>
  /** bytes of scratch space used while running (freed on success) */
  readonly scratchBytes?: number
  readonly seconds: number
  /**
   * peak host memory of a run given its inputs (a model's size decides it); the executor takes
   * the larger of this and `resources.memoryMB`, locally and in a Slurm job's --mem
   */
  readonly memoryBytes?: number
}

/**
 * A stage whose output is a list of independent variants (GGUF types) declares
 * how much each one costs, so the disk check can say which subsets fit.
 */
export interface Variants<P> {
  /** dotted param path holding the list, e.g. `gguf.types` */
  readonly param: string
  readonly items: (params: P) => ReadonlyArray<string>
  readonly bytes: (item: string, input: EstimateInput<P>) => number
}

/** What a stage holds while it runs; the scheduler never oversubscribes these. */
export interface Resources {
  readonly memoryMB?: number
  readonly gpu?: number
}

/** MB (1e6 bytes, as `memoryMB` and the machine's memory count) a run takes: the declared memory, or the estimate for its inputs (Estimate.memoryBytes) when larger. */
export const memoryMB = (wants: Resources, estimatedBytes: number): number =>
  Math.max(0, Math.ceil(wants.memoryMB ?? 0), Math.ceil(estimatedBytes / 1e6))

/** What the workspace keeps at or under a path (its own files, the cache, out/), or undefined. */
export type Owns = (abs: string) => string | undefined

export interface PreflightContext<P> {
  readonly params: P
  /** the workspace root: paths in params resolve against it */
  readonly workspace: string
  readonly owns: Owns
}

export interface ExternalContext<P> {
  readonly params: P
  readonly workspace: string
  /** the stage's key: what a run with these params, code and inputs produces */
  readonly key: string
  /** a file's digest through the engine's stat cache (an unchanged file costs a stat) */
  readonly digestFile: (abs: string) => string
}

/**
 * A stage whose effect lands outside the store (it publishes, it pushes):
 * restoring its outputs from the cache does not redo that effect, so before a
 * stage counts as cached or restorable the engine asks whether the effect is
 * in place for this key.
 */
export interface External<P> {
  /**
   * undefined when the target holds what this key produces, else why it does not (a reason in
   * the plan). An Effect for targets that must be asked over the network (a bucket, a Hub repo);
   * it cannot fail: a target that cannot be reached is a reason to run.
   */
  readonly check: (ctx: ExternalContext<P>) => string | undefined | Effect.Effect<string | undefined>
  /**
   * What a run would do outside the store, as lines for `--dry-run` (the files a publish
   * would send, with sizes). Asked only when the stage runs and its inputs are in place;
   * it cannot fail: a target it cannot ask is a line saying so.
   */
  readonly preview?: (ctx: PreviewContext<P>) => Effect.Effect<ReadonlyArray<string>>
}

export interface PreviewContext<P> extends ExternalContext<P> {
  /** absolute paths of the inputs, as `run` gets them */
  readonly inputs: Readonly<Record<string, string>>
}

export interface RunContext<P, I extends string, O extends string> {
  readonly name: string
  /** the stage's key (see ExternalContext) */
  readonly key: string
  /** what the workspace keeps at or under a path: a stage writing outside out/ must not touch those */
  readonly owns: Owns
  readonly params: P
  /** absolute paths of the inputs */
  readonly inputs: Readonly<Record<I, string>>
  /** absolute paths to write each output to (in a staging directory) */
  readonly outputs: Readonly<Record<O, string>>
  /** the workspace root: external files named in params resolve against it */
  readonly workspace: string
  /** survives failures and kills; removed when the stage succeeds or its key changes */
  readonly scratchDir: string
  readonly progress: Progress
  readonly log: (line: string) => Effect.Effect<void>
}

export interface Stage<
  Name extends string = string,
  P = any,
  I extends string = string,
  O extends string = string
> {
  readonly _tag: "Stage"
  readonly name: Name
  readonly description: string
  /** absolute path of the module that defines the stage: the root of its code fingerprint */
  readonly module: string
  /** more files whose content is part of the stage's code (scripts a command runs) */
  readonly codeFiles: ReadonlyArray<string>
  readonly params: ParamSections
  readonly inputs: Readonly<Record<I, OutputRef>>
  /**
   * The inputs these params read, when that depends on them (a GGUF made from the merged
   * model, or straight from base + adapter); undefined: all of them. The workspace keeps only
   * these, so the DAG, the key and the plan see only what a run reads.
   */
  readonly inputsFor: ((params: P) => ReadonlyArray<I>) | undefined
  /**
   * Runs only when a stage that runs reads its outputs, or when it is the target (an
   * intermediate, as make has them): `pipeline run` leaves it out when nothing needs it.
   */
  readonly onDemand: boolean
  readonly outputs: Readonly<Record<O, OutputDecl>>
  /** external files (workspace-relative) read by the stage, e.g. a local dataset */
  readonly deps: (params: P) => ReadonlyArray<string>
  /** versions of what the stage runs (addon build id, tokenizer digest); part of the key */
  readonly versions: (params: P, workspace: string) => Readonly<Record<string, string>>
  /** what a run takes of a machine (memory, GPUs), given the params (a GPU only for device: cuda) */
  readonly resources: (params: P) => Resources
  readonly estimate: (input: EstimateInput<P>) => Estimate<O>
  readonly variants: Variants<P> | undefined
  /** checked when the plan is made, before anything runs: a problem is a config error (exit 2) */
  readonly preflight: ((ctx: PreflightContext<P>) => string | undefined) | undefined
  readonly external: External<P> | undefined
  readonly run: (ctx: RunContext<P, I, O>) => Effect.Effect<void, StageError, ChildProcesses>
  /** references to this stage's outputs, for downstream stages */
  readonly out: { readonly [K in O]: OutputRef }
}

export type AnyStage = Stage<string, any, string, string>

export interface StageSpec<Name extends string, S extends ParamSections, I extends string, O extends string> {
  readonly name: Name
  readonly description?: string
  /** pass `import.meta.url` */
  readonly module: string
  readonly codeFiles?: ReadonlyArray<string>
  readonly params: S
  readonly inputs?: Readonly<Record<I, OutputRef>>
  /** see Stage.inputsFor */
  readonly inputsFor?: (params: ParamsOf<S>) => ReadonlyArray<I>
  /** see Stage.onDemand */
  readonly onDemand?: boolean
  readonly outputs: Readonly<Record<O, OutputDecl>>
  readonly deps?: (params: ParamsOf<S>) => ReadonlyArray<string>
  readonly versions?: (params: ParamsOf<S>, workspace: string) => Readonly<Record<string, string>>
  readonly resources?: Resources | ((params: ParamsOf<S>) => Resources)
  readonly estimate: (input: EstimateInput<ParamsOf<S>>) => Estimate<O>
  readonly variants?: Variants<ParamsOf<S>>
  readonly preflight?: (ctx: PreflightContext<ParamsOf<S>>) => string | undefined
  readonly external?: External<ParamsOf<S>>
  /** a stage may start processes through the ChildProcesses service; nothing else */
  readonly run: (ctx: RunContext<ParamsOf<S>, I, O>) => Effect.Effect<void, StageError, ChildProcesses>
}

const NAME = /^[a-z][a-z0-9_-]*$/

export const make = <const Name extends string, S extends ParamSections, I extends string = never, O extends string = never>(
  spec: StageSpec<Name, S, I, O>
): Stage<Name, ParamsOf<S>, I, O> => {
  if (!NAME.test(spec.name)) throw new Error(`stage name ${JSON.stringify(spec.name)} must match ${NAME}`)
  const out = Object.fromEntries(
    Object.keys(spec.outputs).map((o) => [o, { _tag: "OutputRef", stage: spec.name, output: o } satisfies OutputRef])
  ) as unknown as { readonly [K in O]: OutputRef }
  return {
    _tag: "Stage",
    name: spec.name,
    description: spec.description ?? "",
    module: spec.module.startsWith("file:") ? fileURLToPath(spec.module) : spec.module,
    codeFiles: spec.codeFiles ?? [],
    params: spec.params,
    inputs: spec.inputs ?? ({} as Record<I, OutputRef>),
    inputsFor: spec.inputsFor,
    onDemand: spec.onDemand ?? false,
    outputs: spec.outputs,
    deps: spec.deps ?? (() => []),
    versions: spec.versions ?? (() => ({})),
    resources: typeof spec.resources === "function" ? spec.resources : () => (spec.resources as Resources | undefined) ?? {},
    estimate: spec.estimate,
    variants: spec.variants,
    preflight: spec.preflight,
    external: spec.external,
    run: spec.run,
    out
  }
}
