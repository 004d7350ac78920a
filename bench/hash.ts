/**
 * Hashing a new 2 GiB file, and not hashing an unchanged one.
 *
 * Writes 2 GiB of random bytes to a file in os.tmpdir() (one 64 MiB random
 * buffer written 32 times) and reads it once, so every tool sees it in the page
 * cache: this measures hashing, not the disk. Then, three runs each (best and
 * mean, in GB/s, 1 GB = 10^9 bytes):
 *   - ours: Digest.ofFile (BLAKE3, one thread, 256 KiB reads), in-process;
 *   - b3sum --num-threads 1, md5sum (DVC's hash), sha256sum: child processes,
 *     timed by wall clock around the spawn;
 *   - node's crypto sha256 fed by the same 256 KiB read loop, in-process.
 * Then the unchanged-file case: StatCache.hashFile twice on the same file; the
 * second call must read 0 bytes, and we report how long it took.
 * The file is deleted at the end, also on error or Ctrl-C.
 *
 * Goal: ours ≥ 3 GB/s on one core.
 */
import { spawnSync } from "node:child_process"
import { createHash, randomFillSync } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Digest from "../cache/Digest.ts"
import { StatCache } from "../cache/StatCache.ts"

const MiB = 1024 * 1024
const BLOCK = 64 * MiB
const BLOCKS = 32 // 2 GiB
const RUNS = 3

const has = (tool: string): boolean => spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0

const makeFile = (file: string): number => {
  const buf = Buffer.allocUnsafe(BLOCK)
  randomFillSync(buf)
  const fd = fs.openSync(file, "w")
  try {
    for (let i = 0; i < BLOCKS; i++) fs.writeSync(fd, buf, 0, BLOCK)
  } finally {
    fs.closeSync(fd)
  }
  return BLOCK * BLOCKS
}

/** Reads the whole file once, so it sits in the page cache for every tool. */
const warm = (file: string): void => {
  const buf = Buffer.allocUnsafe(BLOCK)
  const fd = fs.openSync(file, "r")
  try {
    while (fs.readSync(fd, buf, 0, BLOCK, null) > 0);
  } finally {
    fs.closeSync(fd)
  }
}

const nodeSha256 = (file: string): string => {
  const buf = Buffer.allocUnsafe(256 * 1024)
  const fd = fs.openSync(file, "r")
  try {
    const h = createHash("sha256")
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(n === buf.length ? buf : buf.subarray(0, n))
    return h.digest("hex")
  } finally {
    fs.closeSync(fd)
  }
}

const spawnHash = (cmd: string, args: Array<string>) => (): string => {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: MiB })
  if (r.status !== 0) throw new Error(`${cmd} failed (exit ${r.status}): ${r.stderr}`)
  return r.stdout.split(/\s+/)[0]!
}

export interface Row {
  readonly tool: string
  readonly bestGBs?: number
  readonly meanGBs?: number
  readonly bestS?: number
  readonly note?: string
}

/** Times f RUNS times; returns GB/s figures and the last result. */
const measure = (tool: string, bytes: number, f: () => string): { row: Row; result: string } => {
  const secs: Array<number> = []
  let result = ""
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now()
    result = f()
    secs.push((performance.now() - t0) / 1000)
  }
  const best = Math.min(...secs)
  const mean = secs.reduce((a, b) => a + b, 0) / secs.length
  return { row: { tool, bestGBs: bytes / 1e9 / best, meanGBs: bytes / 1e9 / mean, bestS: best }, result }
}

export const hashTable = (): string => {
  const file = path.join(os.tmpdir(), `bench-hash-${process.pid}.bin`)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-statcache-"))
  const cleanup = () => {
    fs.rmSync(file, { force: true })
    fs.rmSync(dir, { recursive: true, force: true })
  }
  const onSignal = (sig: NodeJS.Signals) => {
    cleanup()
    process.kill(process.pid, sig)
  }
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  try {
    const bytes = makeFile(file)
    warm(file)
    const rows: Array<Row> = []
    const notes: Array<string> = []

    const ours = measure("ours: Digest.ofFile (BLAKE3, 1 thread)", bytes, () => Digest.ofFile(file).digest)
    rows.push(ours.row)

    if (has("b3sum")) {
      const b3 = measure("b3sum --num-threads 1", bytes, spawnHash("b3sum", ["--num-threads", "1", file]))
      rows.push(b3.row)
      notes.push(`Our digest ${Digest.digestHex(ours.result as Digest.Digest) === b3.result ? "matches" : "DOES NOT match"} b3sum's.`)
    } else rows.push({ tool: "b3sum --num-threads 1", note: "not installed" })
    for (const [tool, cmd] of [["md5sum (DVC's hash)", "md5sum"], ["sha256sum", "sha256sum"]] as const) {
      rows.push(has(cmd) ? measure(tool, bytes, spawnHash(cmd, [file])).row : { tool, note: "not installed" })
    }
    rows.push(measure("node crypto sha256 (in-process)", bytes, () => nodeSha256(file)).row)

    // Unchanged file: the first call hashes and records, the second only stats.
    const cache = new StatCache(path.join(dir, "stat-cache.json"))
    cache.hashFile(file)
    const t0 = performance.now()
    const again = cache.hashFile(file)
    const againMs = performance.now() - t0

    const bestOurs = ours.row.bestGBs!
    const out = [
      "## Hashing a new 2 GiB file (warm page cache)",
      "",
      `${RUNS} runs each; GB/s = 10^9 bytes per second; ratio = tool's best GB/s / ours.`,
      "",
      "| tool | best GB/s | mean GB/s | best s | ratio vs ours |",
      "|---|---:|---:|---:|---:|"
    ]
    for (const r of rows) {
      if (r.bestGBs === undefined) out.push(`| ${r.tool} | ${r.note ?? "–"} | | | |`)
      else out.push(`| ${r.tool} | ${r.bestGBs.toFixed(2)} | ${r.meanGBs!.toFixed(2)} | ${r.bestS!.toFixed(3)} | ${(r.bestGBs / bestOurs).toFixed(2)} |`)
    }
    out.push(
      "",
      ...notes,
      `Goal: ours ≥ 3 GB/s on one core. Ours: ${bestOurs.toFixed(2)} GB/s best: ${bestOurs >= 3 ? "met" : "NOT met"}.`,
      "",
      "## Unchanged 2 GiB file (StatCache.hashFile, second call)",
      "",
      "| case | bytesRead | time ms |",
      "|---|---:|---:|",
      `| stat-cache hit | ${again.bytesRead}${again.bytesRead === 0 ? "" : " (expected 0!)"} | ${againMs.toFixed(3)} |`
    )
    return out.join("\n") + "\n"
  } finally {
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
    cleanup()
  }
}
