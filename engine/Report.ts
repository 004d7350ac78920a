/**
 * `pipeline report`: one self-contained HTML file (inline CSS and SVG, no
 * script, nothing fetched) with the DAG and each stage's state, duration and
 * output size, the disk the cache uses against the budget, a line chart for
 * every series a stage declares as a plot (train: loss, valLoss, lr against
 * step), and a table for every declared metrics file (eval's). The engine
 * knows nothing of training: it draws what stages declare.
 *
 * Each chart's polyline carries its points in `data-points` (x,y pairs as
 * JSON), so a test can read back the series the browser rendered.
 */
import * as fs from "node:fs"
import type { Plan, PlannedStage } from "./Planner.ts"
import { formatBytes, formatSeconds } from "./Units.ts"
import type { Workspace } from "./Workspace.ts"

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

const STATE_COLOUR: Record<string, string> = { "up to date": "#2e7d32", restorable: "#1565c0", stale: "#ef6c00", "never run": "#757575" }

const stateOf = (ws: Workspace, s: PlannedStage): string =>
  s.action === "cached" ? "up to date" : s.action === "restore" ? "restorable" : ws.lock[s.name] === undefined ? "never run" : "stale"

/** The DAG in layers (a stage one below its deepest input), as SVG boxes and edges. */
const dagSvg = (ws: Workspace, plan: Plan): string => {
  const depth = new Map<string, number>()
  for (const name of ws.dag.order) {
    const ups = Object.values(ws.dag.byName.get(name)!.inputs).map((r) => depth.get(r.stage) ?? 0)
    depth.set(name, ups.length === 0 ? 0 : Math.max(...ups) + 1)
  }
  const shown = plan.stages.map((s) => s.name)
  const layers: Array<Array<string>> = []
  for (const n of shown) (layers[depth.get(n)!] ??= []).push(n)
  const W = 140
  const H = 54
  const gapX = 30
  const gapY = 24
  const pos = new Map<string, { x: number; y: number }>()
  let layerIndex = 0
  for (const layer of layers) {
    if (layer === undefined) continue
    layer.forEach((n, i) => pos.set(n, { x: 10 + layerIndex * (W + gapX), y: 10 + i * (H + gapY) }))
    layerIndex++
  }
  const width = 20 + layerIndex * (W + gapX)
  const height = 20 + Math.max(...layers.filter(Boolean).map((l) => l.length)) * (H + gapY)
  const edges: Array<string> = []
  const nodes: Array<string> = []
  for (const s of plan.stages) {
    const p = pos.get(s.name)!
    for (const ref of new Set(Object.values(ws.dag.byName.get(s.name)!.inputs).map((r) => r.stage))) {
      const q = pos.get(ref)
      if (q === undefined) continue
      edges.push(`<line x1="${q.x + W}" y1="${q.y + H / 2}" x2="${p.x}" y2="${p.y + H / 2}" stroke="#999" marker-end="url(#arrow)"/>`)
    }
    const state = stateOf(ws, s)
    const rec = ws.lock[s.name]
    const detail = rec ? `${formatSeconds(rec.duration)} · ${formatBytes(rec.outputs.reduce((a, o) => a + o.size, 0))}` : "—"
    nodes.push(
      `<g class="stage" data-stage="${esc(s.name)}" data-state="${state}"><rect x="${p.x}" y="${p.y}" width="${W}" height="${H}" rx="6" fill="#fff" stroke="${STATE_COLOUR[state]}" stroke-width="2"/>` +
        `<text x="${p.x + 8}" y="${p.y + 19}" font-weight="bold">${esc(s.name)}</text>` +
        `<text x="${p.x + 8}" y="${p.y + 35}" fill="${STATE_COLOUR[state]}">${state}</text>` +
        `<text x="${p.x + 8}" y="${p.y + 49}" fill="#555" font-size="11">${esc(detail)}</text></g>`
    )
  }
  return `<svg class="dag" width="${width}" height="${height}" font-family="sans-serif" font-size="12"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#999"/></marker></defs>${edges.join("")}${nodes.join("")}</svg>`
}

/** One line chart: `points` as a polyline in a 520×220 frame with its ranges on the axes. */
const chart = (title: string, xName: string, points: ReadonlyArray<readonly [number, number]>): string => {
  const W = 520
  const H = 220
  const pad = 64
  const xs = points.map((p) => p[0])
  const ys = points.map((p) => p[1])
  const range = (v: ReadonlyArray<number>) => v.reduce(([lo, hi], x) => [Math.min(lo, x), Math.max(hi, x)] as const, [Infinity, -Infinity] as const)
  const [x0, x1] = range(xs)
  const [y0, y1] = range(ys)
  const sx = (x: number) => pad + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * pad)
  const sy = (y: number) => H - pad + -((y - y0) / (y1 - y0 || 1)) * (H - 2 * pad)
  const fmt = (v: number) => (Math.abs(v) >= 1000 || Number.isInteger(v) ? String(Math.round(v)) : v.toPrecision(4))
  const line = points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ")
  return (
    `<figure class="plot"><figcaption>${esc(title)}</figcaption><svg width="${W}" height="${H}" font-family="sans-serif" font-size="11">` +
    `<rect x="${pad}" y="${pad}" width="${W - 2 * pad}" height="${H - 2 * pad}" fill="#fafafa" stroke="#ddd"/>` +
    `<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="${line}" data-series="${esc(title)}" data-points="${esc(JSON.stringify(points))}"/>` +
    `<text x="${pad}" y="${H - pad + 16}">${fmt(x0)}</text><text x="${W - pad}" y="${H - pad + 16}" text-anchor="end">${fmt(x1)} ${esc(xName)}</text>` +
    `<text x="${pad - 4}" y="${H - pad}" text-anchor="end">${fmt(y0)}</text><text x="${pad - 4}" y="${pad + 4}" text-anchor="end">${fmt(y1)}</text>` +
    `</svg></figure>`
  )
}

const readJsonl = (file: string): Array<Record<string, unknown>> =>
  fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>]
      } catch {
        return []
      }
    })

export const render = (ws: Workspace, plan: Plan, now: Date): string => {
  const rows = plan.stages.map((s) => {
    const rec = ws.lock[s.name]
    return `<tr><td>${esc(s.name)}</td><td style="color:${STATE_COLOUR[stateOf(ws, s)]}">${stateOf(ws, s)}</td><td>${rec ? formatSeconds(rec.duration) : "—"}</td><td>${rec ? formatBytes(rec.outputs.reduce((a, o) => a + o.size, 0)) : "—"}</td><td>${esc(s.reasons.join("; "))}</td></tr>`
  })
  const plots: Array<string> = []
  const tables: Array<string> = []
  for (const stage of ws.dag.stages.filter((s) => plan.stages.some((p) => p.name === s.name))) {
    for (const o of Object.values(stage.outputs)) {
      const rel = `out/${stage.name}/${o.path}`
      const abs = ws.abs(rel)
      if (!fs.existsSync(abs)) continue
      if (o.plot !== undefined) {
        const records = readJsonl(abs)
        for (const y of o.plot.y) {
          const pts = records.flatMap((r) => (typeof r[o.plot!.x] === "number" && typeof r[y] === "number" ? [[r[o.plot!.x] as number, r[y] as number] as const] : []))
          if (pts.length > 0) plots.push(chart(`${stage.name}: ${y}`, o.plot.x, pts))
        }
      } else if (o.metrics && rel.endsWith(".json")) {
        let m: Record<string, unknown>
        try {
          m = JSON.parse(fs.readFileSync(abs, "utf8")) as Record<string, unknown>
        } catch {
          continue
        }
        const cells = Object.entries(m)
          .filter(([, v]) => typeof v === "number" || typeof v === "string")
          .map(([k, v]) => `<tr><td>${esc(k)}</td><td class="num">${typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : esc(String(v))}</td></tr>`)
        tables.push(`<h3>${esc(rel)}</h3><table class="metrics"><tr><th>metric</th><th>value</th></tr>${cells.join("")}</table>`)
      }
    }
  }
  const used = ws.store.usedBytes()
  const budget = ws.engine.budgetBytes
  const disk = `cache ${formatBytes(used)}${budget !== undefined ? ` of a ${formatBytes(budget)} budget (${((used / budget) * 100).toFixed(1)} %)` : " (no budget set)"}`
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pipeline report</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #222 }
table { border-collapse: collapse; margin: 8px 0 16px } td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; font-size: 13px } td.num { text-align: right; font-variant-numeric: tabular-nums }
figure.plot { display: inline-block; margin: 0 16px 16px 0 } figcaption { font-weight: bold; font-size: 13px }
</style></head><body>
<h1>pipeline report</h1>
<p>${esc(ws.root)} · ${esc(now.toISOString())} · ${plan.stages.length} stages · ${esc(disk)}</p>
<h2>Stages</h2>
${dagSvg(ws, plan)}
<table><tr><th>stage</th><th>state</th><th>last run</th><th>outputs</th><th>why not up to date</th></tr>${rows.join("")}</table>
<h2>Plots</h2>
${plots.length > 0 ? plots.join("\n") : "<p>no stage declares a plot, or none has run</p>"}
<h2>Metrics</h2>
${tables.length > 0 ? tables.join("\n") : "<p>no metrics yet</p>"}
</body></html>
`
}
