/**
 * The pipeline's graph: one node per stage, one edge per (upstream output →
 * downstream stage) reference, built with effect's Graph. Cycles and dangling
 * references are named; everything else (closures, consumers, order) is read
 * off the graph.
 */
import * as Effect from "effect/Effect"
import * as Graph from "effect/Graph"
import * as Option from "effect/Option"
import { GraphError } from "./Errors.ts"
import type { AnyStage, OutputDecl } from "./Stage.ts"

export interface Dag {
  readonly stages: ReadonlyArray<AnyStage>
  readonly byName: ReadonlyMap<string, AnyStage>
  readonly graph: Graph.DirectedGraph<string, string>
  readonly index: ReadonlyMap<string, Graph.NodeIndex>
  /** all stages, dependencies first (declaration order breaks ties) */
  readonly order: ReadonlyArray<string>
}

/** The graph of a pipeline, or a GraphError naming a duplicate name, a dangling reference or a cycle. */
export const make = (stages: ReadonlyArray<AnyStage>): Effect.Effect<Dag, GraphError> =>
  Effect.gen(function* () {
    const byName = new Map<string, AnyStage>()
    for (const s of stages) {
      if (byName.has(s.name)) return yield* new GraphError({ message: `two stages are named ${s.name}` })
      byName.set(s.name, s)
    }
    for (const s of stages)
      for (const [input, ref] of Object.entries(s.inputs)) {
        const up = byName.get(ref.stage)
        if (!up) return yield* new GraphError({ message: `stage ${s.name}: input ${input} reads ${ref.stage}.${ref.output}, but there is no stage ${ref.stage}` })
        if (!(ref.output in up.outputs))
          return yield* new GraphError({ message: `stage ${s.name}: input ${input} reads ${ref.stage}.${ref.output}, but ${ref.stage} has no output ${ref.output}` })
      }
    const index = new Map<string, Graph.NodeIndex>()
    const graph = Graph.directed<string, string>((m) => {
      for (const s of stages) index.set(s.name, Graph.addNode(m, s.name))
      for (const s of stages)
        for (const ref of Object.values(s.inputs)) Graph.addEdge(m, index.get(ref.stage)!, index.get(s.name)!, ref.output)
    })
    const cycle = Graph.findCycle(graph)
    if (Option.isSome(cycle)) {
      const names = cycle.value.path.map((i) => Option.getOrThrow(Graph.getNode(graph, i)))
      return yield* new GraphError({ message: `the pipeline has a cycle: ${names.join(" -> ")}` })
    }
    const order = Array.from(Graph.values(Graph.topo(graph)))
    return { stages, byName, graph, index, order }
  })

/** The target and everything it needs, in run order. No target: the whole pipeline. */
export const closure = (dag: Dag, target: string | undefined): Effect.Effect<Array<string>, GraphError> =>
  Effect.suspend(() => {
    if (target !== undefined && !dag.byName.has(target)) return Effect.fail(new GraphError({ message: `unknown stage ${target} (stages: ${dag.order.join(", ")})` }))
    const needed = new Set<string>()
    const visit = (n: string): void => {
      if (needed.has(n)) return
      needed.add(n)
      for (const ref of Object.values(dag.byName.get(n)!.inputs)) visit(ref.stage)
    }
    // no target: every stage, but an on-demand one only when another needs it
    if (target !== undefined) visit(target)
    else for (const s of dag.stages) if (!s.onDemand) visit(s.name)
    return Effect.succeed(dag.order.filter((n) => needed.has(n)))
  })

/** Stages that read any output of `name`, directly. */
export const consumers = (dag: Dag, name: string): Array<string> =>
  dag.stages.filter((s) => Object.values(s.inputs).some((r) => r.stage === name)).map((s) => s.name)

/** Every stage downstream of `name`, transitively. */
export const downstream = (dag: Dag, name: string): Set<string> => {
  const out = new Set<string>()
  const visit = (n: string): void => {
    for (const c of consumers(dag, n)) if (!out.has(c)) (out.add(c), visit(c))
  }
  visit(name)
  return out
}

export const outputDecl = (dag: Dag, stageName: string, output: string): OutputDecl => dag.byName.get(stageName)!.outputs[output]!

export const toText = (dag: Dag): string =>
  dag.order
    .map((n) => {
      const s = dag.byName.get(n)!
      const ins = Object.entries(s.inputs).map(([k, r]) => `${k} <- ${r.stage}.${r.output}`)
      const outs = Object.entries(s.outputs).map(([k, o]) => `${k}: out/${n}/${o.path}${o.temporary ? " (temporary)" : ""}`)
      return [`${n}${s.description ? `  ${s.description}` : ""}`, ...ins.map((x) => `  in   ${x}`), ...outs.map((x) => `  out  ${x}`)].join("\n")
    })
    .join("\n")

export const toMermaid = (dag: Dag): string => {
  const lines = ["flowchart TD"]
  for (const n of dag.order) lines.push(`  ${n}["${n}"]`)
  for (const s of dag.stages) {
    const edges = new Map<string, Array<string>>()
    for (const r of Object.values(s.inputs)) edges.set(r.stage, [...(edges.get(r.stage) ?? []), r.output])
    for (const [up, outs] of edges) lines.push(`  ${up} -->|"${[...new Set(outs)].join(", ")}"| ${s.name}`)
  }
  return lines.join("\n")
}
