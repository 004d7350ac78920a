/**
 * A stage's declarations are part of its key: a param section or an input it
 * declares but never reads makes it rerun for nothing. This reads each stage
 * module of the pipeline and checks that every declared param section and
 * every declared input is touched by its code.
 */
import * as fs from "node:fs"
import { describe, expect, it } from "vitest"
import pipeline from "../pipeline.ts"

/** Names read off `params` / `inputs`: `ctx.params.train`, `params["train"]`, `const { train: t } = ctx.params`. */
const touched = (source: string, what: "params" | "inputs"): { names: Set<string>; whole: boolean } => {
  const names = new Set<string>()
  for (const m of source.matchAll(new RegExp(`\\b${what}\\.(\\w+)|\\b${what}\\[["'](\\w+)["']\\]`, "g"))) names.add((m[1] ?? m[2])!)
  for (const m of source.matchAll(new RegExp(`\\{([^{}]*)\\}\\s*=\\s*(?:ctx\\.)?${what}\\b`, "g")))
    for (const part of m[1]!.split(",")) {
      const name = part.split(":")[0]!.trim()
      if (name) names.add(name)
    }
  // handed on as a whole (`publish(ctx.inputs, …)`, `Object.entries(ctx.inputs)`); a helper in the
  // module that takes all of ctx reads `ctx.params.x` in its own body, which is found above
  // or read by a computed name (`ctx.inputs[part]`)
  const whole = new RegExp(`(?<!\\}\\s*=\\s*)\\bctx\\.${what}\\b(?![.\\[])|\\b${what}\\[[a-zA-Z_]`).test(source)
  return { names, whole }
}

export const unused = (source: string, params: ReadonlyArray<string>, inputs: ReadonlyArray<string>): Array<string> => {
  const p = touched(source, "params")
  const i = touched(source, "inputs")
  return [
    ...params.filter((s) => !p.whole && !p.names.has(s)).map((s) => `param section ${s}`),
    ...inputs.filter((n) => !i.whole && !i.names.has(n)).map((n) => `input ${n}`)
  ]
}

describe("declarations match use", () => {
  it("finds an unused section or input (the check itself)", () => {
    const src = "run: (ctx) => { const { merge } = ctx.params; read(ctx.inputs.adapter) }"
    expect(unused(src, ["merge", "lora"], ["adapter", "model"])).toEqual(["param section lora", "input model"])
    expect(unused("const { lora, train: t } = ctx.params; publish(ctx.inputs, x)", ["lora", "train"], ["a", "b"])).toEqual([])
  })

  it.each(pipeline.stages.map((s) => [s.name, s] as const))("%s touches every param section and input it declares", (_, stage) => {
    const source = fs.readFileSync(stage.module, "utf8")
    expect(unused(source, Object.keys(stage.params), Object.keys(stage.inputs))).toEqual([])
  })
})
