/**
 * A plan as people and programs read it: the text `run --dry-run` prints and
 * the JSON of DESIGN.md (`--dry-run --json`, and `run --json` with what
 * happened).
 */
import * as Disk from "./DiskBudget.ts"
import { DiskBudgetError } from "./Errors.ts"
import type { Plan } from "./Planner.ts"
import { formatBytes, formatSeconds } from "./Units.ts"

export const pad = (s: string, n: number) => (s.length >= n ? s : s + " ".repeat(n - s.length))

/** The plan as `run --dry-run` prints it: a line per stage, the disk check, the time, the warnings. */
export const render = (plan: Plan, previews: ReadonlyMap<string, ReadonlyArray<string>> = new Map()): Array<string> => {
  const width = Math.max(...plan.stages.map((s) => s.name.length), 5)
  const lines = [`plan${plan.target ? ` for ${plan.target}` : ""}: ${plan.stages.length} stages, ${plan.totals.stagesToRun} to run or restore`]
  for (const s of plan.stages) {
    const cost = s.action === "run" ? `  [~${formatBytes(s.estimate.diskBytes)}, ~${formatSeconds(s.estimate.seconds)}]` : ""
    const action = s.action === "restore" ? `restore (${s.source})` : s.action === "cached" && s.source !== null ? `cached (on ${s.source})` : s.action
    lines.push(`  ${pad(s.name, width)}  ${pad(action, Math.max(15, action.length + 1))}${s.reasons.join("; ")}${cost}`)
    for (const l of previews.get(s.name) ?? []) lines.push(`  ${pad("", width)}    ${l}`)
  }
  if (plan.totals.stagesToRun > 0) {
    const d = plan.disk
    const budget = d.budgetBytes !== null ? `, budget ${formatBytes(d.budgetBytes)} (${formatBytes(d.usedBytes)} used)` : ""
    lines.push(
      `disk: writes up to ${formatBytes(d.requiredBytes)}${d.peakAtStage ? ` (peak at ${d.peakAtStage})` : ""}, ${Number.isFinite(d.freeBytes) ? formatBytes(d.freeBytes) : "?"} free${budget}: ${d.ok ? "ok" : "DOES NOT FIT"}`
    )
    for (const f of d.fits) lines.push(`  to fit: ${f}`)
    lines.push(`time: ~${formatSeconds(plan.totals.seconds)}`)
  }
  for (const w of plan.warnings) lines.push(`warning: ${w}`)
  return lines
}

/** The pre-flight failure of a plan that does not fit (exit 3). */
export const budgetError = (plan: Plan): DiskBudgetError => {
  const d = plan.disk
  const limits = { usedBytes: d.usedBytes, freeBytes: d.freeBytes, budgetBytes: d.budgetBytes ?? undefined }
  return new DiskBudgetError({
    message: `the plan does not fit${Disk.shortfall(d, limits)?.limit === "budget" ? " the disk budget" : " on disk"}: stage ${d.peakAtStage} ${Disk.describeLimits(d, limits)}${d.fits.length ? `. Ways to fit: ${d.fits.join("; ")}` : ""}`,
    stage: d.peakAtStage ?? "",
    neededBytes: d.requiredBytes,
    availableBytes: Math.min(d.freeBytes, (d.budgetBytes ?? Infinity) - d.usedBytes),
    fits: [...d.fits]
  })
}


/** The JSON shape of DESIGN.md (`run --dry-run --json`, and `run --json` with measured values). */
export const toJson = (
  p: Plan,
  measured?: ReadonlyMap<string, { action: string; bytes: number | null; seconds: number | null; reasons?: ReadonlyArray<string>; job?: unknown }>,
  previews?: ReadonlyMap<string, ReadonlyArray<string>>
) => ({
  target: p.target,
  stages: p.stages.map((s) => {
    const m = measured?.get(s.name)
    return {
      name: s.name,
      action: m?.action ?? s.action,
      source: s.source,
      reasons: m?.reasons ?? s.reasons,
      estimate: { diskBytes: s.estimate.diskBytes, seconds: s.estimate.seconds },
      bytes: m?.bytes ?? null,
      seconds: m?.seconds ?? null,
      ...(previews?.has(s.name) ? { preview: previews.get(s.name) } : {}),
      ...(m?.job !== undefined ? { job: m.job } : {})
    }
  }),
  disk: {
    requiredBytes: p.disk.requiredBytes,
    peakBytes: p.disk.peakBytes,
    peakAtStage: p.disk.peakAtStage,
    freeBytes: Number.isFinite(p.disk.freeBytes) ? p.disk.freeBytes : null,
    budgetBytes: p.disk.budgetBytes,
    ok: p.disk.ok,
    fits: p.disk.fits
  },
  warnings: p.warnings,
  totals: p.totals
})

/** A number as people read a metric: whole numbers as they are, others to 4 decimals. */
const showNumber = (n: number): string => (Number.isInteger(n) ? String(n) : Math.abs(n) >= 1000 ? n.toFixed(1) : n.toFixed(4))

/**
 * The key metrics of a file: its scalar values, nested objects flattened with
 * dotted names; lists, long strings (digests) and big maps (histograms) left
 * to `status --json`.
 */
export const keyMetrics = (value: unknown, prefix = ""): Array<string> => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return []
  const out: Array<string> = []
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const name = prefix ? `${prefix}.${k}` : k
    if (typeof v === "number") out.push(`${name} ${showNumber(v)}`)
    else if (typeof v === "boolean") out.push(`${name} ${v}`)
    else if (typeof v === "string" && v.length <= 24) out.push(`${name} ${v}`)
    else if (typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length <= 8) out.push(...keyMetrics(v, name))
  }
  return out
}

/** `status`'s metrics: a line per metrics file, its key metrics (at most six), the full JSON under --json. */
export const metricsTable = (metrics: Readonly<Record<string, unknown>>, most = 6): Array<string> => {
  const files = Object.keys(metrics)
  if (files.length === 0) return []
  const width = Math.max(...files.map((f) => f.length))
  return [
    "metrics (all of them: status --json)",
    ...files.map((f) => {
      const m = keyMetrics(metrics[f])
      return `  ${pad(f, width)}  ${m.slice(0, most).join(" · ")}${m.length > most ? ` · (+${m.length - most} more)` : ""}`
    })
  ]
}
