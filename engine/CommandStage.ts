/**
 * Command stages: a stage whose body is an external command with declared
 * inputs, outputs and params. Arguments are templates: `{inputs.NAME}`,
 * `{outputs.NAME}`, `{params.SECTION.KEY}`, `{scratch}`. The command runs
 * through the ChildProcesses service (execa, no shell), its output streamed
 * line by line with the stage prefix.
 * The command line and the files named in `codeFiles` are the stage's code.
 */
import * as Effect from "effect/Effect"
import { StageError } from "./Errors.ts"
import { ChildProcesses } from "./Services.ts"
import * as Stage from "./Stage.ts"

export interface CommandSpec<Name extends string, S extends Stage.ParamSections, I extends string, O extends string>
  extends Omit<Stage.StageSpec<Name, S, I, O>, "run" | "estimate"> {
  readonly command: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  readonly estimate?: Stage.StageSpec<Name, S, I, O>["estimate"]
}

const lookup = (root: unknown, dotted: string): unknown =>
  dotted.split(".").reduce<unknown>((v, k) => (v !== null && typeof v === "object" ? (v as Record<string, unknown>)[k] : undefined), root)

export const expand = (template: string, scope: Record<string, unknown>): string =>
  template.replace(/\{([a-zA-Z_][\w.-]*)\}/g, (whole, name: string) => {
    const v = lookup(scope, name)
    if (v === undefined) throw new StageError({ message: `command template ${whole}: nothing is called ${name}` })
    return typeof v === "string" ? v : JSON.stringify(v)
  })

export const make = <const Name extends string, S extends Stage.ParamSections, I extends string = never, O extends string = never>(
  spec: CommandSpec<Name, S, I, O>
): Stage.Stage<Name, Stage.ParamsOf<S>, I, O> =>
  Stage.make<Name, S, I, O>({
    ...spec,
    versions: (params, root) => ({ ...(spec.versions?.(params, root) ?? {}), command: spec.command.join(" ") }),
    estimate: spec.estimate ?? (() => ({ bytes: {} as Record<O, number>, seconds: 1 })),
    run: (ctx) =>
      Effect.gen(function* () {
        const scope = { inputs: ctx.inputs, outputs: ctx.outputs, params: ctx.params, scratch: ctx.scratchDir }
        const argv = yield* Effect.try({
          try: () => spec.command.map((a) => expand(a, scope)),
          catch: (e) => (e instanceof StageError ? e : new StageError({ message: String(e) }))
        })
        const [file, ...args] = argv
        if (!file) return yield* new StageError({ message: "empty command" })
        yield* ctx.log(`$ ${argv.join(" ")}`)
        const processes = yield* ChildProcesses
        const r = yield* Effect.tryPromise({
          try: (signal) => processes.exec(file, args, { cwd: ctx.workspace, env: { ...spec.env }, signal, onLine: (line) => Effect.runSync(ctx.log(line)) }),
          catch: (e) => new StageError({ message: (e instanceof Error ? e.message : String(e)).split("\n")[0]! })
        })
        if (r.failed) return yield* new StageError({ message: r.exitCode !== undefined ? `${file} exited with code ${r.exitCode}` : (r.reason ?? `${file} failed`) })
      })
  })
