/**
 * The CUDA kernels and the whole training step, run without a GPU: native/cuda/sim (a CPU
 * simulation of CUDA: a fiber per CUDA thread, block and warp barriers, WMMA with scrambled
 * fragment lanes, cudaMalloc'ed memory filled with NaN and bounds-checked copies) builds the
 * kernels' own tests (native/cuda/tests, with FTCUDA_SMALL=1: their small shapes) and runs them
 * under two schedules: warp by warp up to each block barrier (greedy), and every thread in
 * turn up to each barrier (fwd). A kernel whose result depends on the schedule (a missing
 * barrier), reads memory it never wrote, or uses a fragment's layout fails a row here. Blind
 * spots: native/cuda/README.md, "CPU simulator". The Qwen3-4B cases need a GPU (gpu-check.sh).
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { REPO } from "./helpers.ts"

const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0
const cudaHeaders = (() => {
  const nvcc = spawnSync("sh", ["-c", "command -v nvcc"], { encoding: "utf8" }).stdout.trim()
  const dirs = [...(nvcc ? [path.join(path.dirname(path.dirname(fs.realpathSync(nvcc))), "include")] : []), "/usr/local/cuda/include"]
  return dirs.find((d) => fs.existsSync(path.join(d, "cuda_runtime.h")))
})()
const supported = process.platform === "linux" && process.arch === "x64" && has("g++") && has("python3") && cudaHeaders !== undefined

const RUN = path.join(REPO, "native", "cuda", "sim", "run.sh")
const TESTS = [
  "tiny model step = CPU backend",
  "nf4 dequantize",
  "double-quantized absmax",
  "fp16 gemm, every layout",
  "NF4 weights dequantized in the product",
  "rmsnorm forward and backward",
  "rope forward and inverse",
  "swiglu forward and backward",
  "cross-entropy fwd+bwd",
  "adamw8bit step = CPU",
  "adamw8bit non-finite gradients = CPU",
  "unscale and check",
  "scaler schedule",
  "attention odd T",
  "attention T=300 D=128",
  "attention T=1 and T=17",
  "attention shape checks"
]
const STEP_ROWS = [
  "loss (relative difference)",
  "counted positions (difference)",
  "logits [",
  "dA q (worst of",
  "dB down (worst of",
  "determinism: second step's loss (difference)",
  "accumulation: grads after 2 steps vs 2 x one step",
  "forward only: loss vs the training step's"
]

describe.skipIf(!supported)("the CUDA kernels and the step on the CPU simulator (native/cuda/sim)", () => {
  let build = ""
  beforeAll(() => {
    build = fs.mkdtempSync(path.join(os.tmpdir(), "ftcuda-sim-"))
    const r = spawnSync("bash", [RUN, build], { encoding: "utf8", env: { ...process.env, CUDA_INCLUDE: cudaHeaders } })
    expect(r.status, r.stdout + r.stderr).toBe(0)
  }, 150_000)

  // the two schedules run at once (one process each)
  it.concurrent.each(["greedy", "fwd"])("SIM_ORDER=%s: every kernel's small cases and the tiny step match their references", async (order) => {
    const { status, out } = await new Promise<{ status: number | null; out: string }>((resolve) => {
      const p = spawn(path.join(build, "ftcuda_sim"), TESTS, { env: { ...process.env, FTCUDA_SMALL: "1", SIM_ORDER: order } })
      let out = ""
      p.stdout.on("data", (d) => (out += d))
      p.stderr.on("data", (d) => (out += d))
      p.on("close", (code) => resolve({ status: code, out }))
    })
    expect(status, out).toBe(0)
    expect(out).toContain(`${TESTS.length} tests, 0 rows failed`)
    const rows = out.split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| test |"))
    expect(rows.filter((l) => / \| FAIL \| /.test(l)), out).toEqual([])
    for (const t of TESTS) expect(rows.some((l) => l.startsWith(`| ${t} | `)), t).toBe(true)
    for (const r of STEP_ROWS) expect(rows.some((l) => l.startsWith(`| tiny model step = CPU backend | ${r}`)), r).toBe(true)
  }, 120_000)
})
