/**
 * Peak memory of merge and GGUF export on a model of about 1 GB (a random Qwen3: hidden 1024,
 * 22 layers, the real vocabulary; bf16; a rank-8 adapter on q and v), each step in a process of
 * its own under /usr/bin/time -v. The goal: peak RSS near the largest tensor, not the model (the
 * reference run's tooling used 6.4 GB of RAM to merge a 4B model).
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const node = process.execPath

const measure = (args: ReadonlyArray<string>): { rssMB: number; seconds: number } => {
  const r = spawnSync("/usr/bin/time", ["-v", node, ...args], { encoding: "utf8" })
  if (r.status !== 0) throw new Error(`${args.join(" ")}: ${r.stderr.slice(-500)}`)
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)/.exec(r.stderr)
  return { rssMB: Number(rss![1]) / 1024, seconds: Number(wall![1] ?? 0) * 3600 + Number(wall![2]) * 60 + Number(wall![3]) }
}

export const exportTable = (): string => {
  if (!fs.existsSync("/usr/bin/time")) return "## Export memory\n\n/usr/bin/time is not installed (Debian: `apt-get install time`).\n"
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "export-bench-"))
  try {
    const modelMB = Number(execFileSync(node, [path.join(here, "export", "make-model.ts"), dir], { encoding: "utf8" }).trim()) / 2 ** 20
    const embedMB = (151936 * 1024 * 2) / 2 ** 20 // bf16 on disk; twice that as fp32
    const nodeOnly = measure(["-e", ""])
    const rows = [
      ["merge (fp16)", measure([path.join(here, "export", "run-merge.ts"), dir])],
      ["gguf Q8_0", measure([path.join(here, "export", "run-gguf.ts"), dir, "Q8_0"])],
      ["gguf Q4_K_M", measure([path.join(here, "export", "run-gguf.ts"), dir, "Q4_K_M"])]
    ] as const
    return [
      `## Export memory on a ${(modelMB / 1024).toFixed(2)} GB model (largest tensor: the ${embedMB.toFixed(0)} MB embedding, ${(2 * embedMB).toFixed(0)} MB as fp32)`,
      "",
      "| step | seconds | peak RSS MB | of the model |",
      "|---|---:|---:|---:|",
      ...rows.map(([name, m]) => `| ${name} | ${m.seconds.toFixed(1)} | ${m.rssMB.toFixed(0)} | ${((100 * m.rssMB) / modelMB).toFixed(0)} % |`),
      `| (node alone) | ${nodeOnly.seconds.toFixed(1)} | ${nodeOnly.rssMB.toFixed(0)} | |`,
      "",
      "Goal: peak RSS near the largest tensor, not the model."
    ].join("\n")
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
