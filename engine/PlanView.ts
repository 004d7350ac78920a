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
export const render = (plan: Plan): Array<string> => {
  const width = Math.max(...plan.stages.map((s) => s.name.length), 5)
  const lines = [`plan${plan.target ? ` for ${plan.target}` : ""}: ${plan.stages.length} stages, ${plan.totals.stagesToRun} to run or restore`]
  for (const s of plan.stages) {
    const cost = s.action === "run" ? `  [~${formatBytes(s.estimate.diskBytes)}, ~${formatSeconds(s.estimate.seconds)}]` : ""
    const action = s.action === "restore" ? `restore (${s.source})` : s.action
    lines.push(`  ${pad(s.name, width)}  ${pad(action, 15)}${s.reasons.join("; ")}${cost}`)
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
  measured?: ReadonlyMap<string, { action: string; bytes: number | null; seconds: number | null; reasons?: ReadonlyArray<string> }>
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
      seconds: m?.seconds ?? null
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
