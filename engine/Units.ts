/** Byte sizes and durations as people write and read them. */

const UNITS: Record<string, number> = {
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4
}

/** Parses `20GB`, `1.5 GiB`, `512MB` or a plain number of bytes; undefined when it is not a size. */
export const parseBytes = (v: unknown): number | undefined => {
  if (typeof v === "number") return Number.isFinite(v) && v >= 0 ? v : undefined
  if (typeof v !== "string") return undefined
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v)
  if (!m) return undefined
  const unit = UNITS[(m[2] || "b").toLowerCase()]
  return unit === undefined ? undefined : Number(m[1]) * unit
}

export const formatBytes = (n: number): string => {
  const a = Math.abs(n)
  if (a >= 1e12) return `${(n / 1e12).toFixed(1)} TB`
  if (a >= 1e9) return `${(n / 1e9).toFixed(1)} GB`
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)} MB`
  if (a >= 1e3) return `${(n / 1e3).toFixed(1)} kB`
  return `${Math.round(n)} B`
}

export const formatSeconds = (s: number): string => {
  if (!Number.isFinite(s)) return "?"
  if (s < 1) return `${(s * 1000).toFixed(0)}ms`
  if (s < 60) return `${s.toFixed(1)}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
}
