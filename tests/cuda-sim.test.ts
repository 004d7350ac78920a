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
import { NODE, REPO } from "./helpers.ts"

const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0
const cudaHeaders = (() => {
  const nvcc = spawnSync("sh", ["-c", "command -v nvcc"], { encoding: "utf8" }).stdout.trim()
  const dirs = [...(nvcc ? [path.join(path.dirname(path.dirname(fs.realpathSync(nvcc))), "include")] : []), "/usr/local/cuda/include"]
  return dirs.find((d) => fs.existsSync(path.join(d, "cuda_runtime.h")))
})()
const supported = process.platform === "linux" && process.arch === "x64" && has("g++") && has("python3") && cudaHeaders !== undefined

const ADDON = path.join(REPO, "native", "cuda", "sim", "addon.sh")
const TESTS = [
  "tiny model step = CPU backend",
  "tiny model step = CPU backend, bf16",
  "bf16 gemm, every layout",
  "NF4 weights dequantized in the product, bf16",
  "attention bf16: odd T, T=300 D=128, T=1",
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
  "fp32 adamw step and scale = CPU",
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
  "forward only: loss vs the training step's",
  "dropout 0.25, 1 x 30: loss",
  "dropout: LoRA gradients",
  "dropout off: dA differs",
  "dropout set, forward only",
  "3 x 37 tokens in a 2 x 37 trainer: refused",
  "4 adapters disabled: loss",
  "4 adapters disabled: the others' LoRA gradients",
  "4 adapters disabled: their gradients",
  "device optimizer: sum of squares",
  "device optimizer: clip + AdamW = the host's"
]

describe.skipIf(!supported)("the CUDA kernels and the step on the CPU simulator (native/cuda/sim)", () => {
  let build = ""
  beforeAll(() => {
    build = fs.mkdtempSync(path.join(os.tmpdir(), "ftcuda-sim-"))
    // the kernels' test executable (run.sh) and the binding's Node module over the same objects
    const r = spawnSync("bash", [ADDON, build], { encoding: "utf8", env: { ...process.env, CUDA_INCLUDE: cudaHeaders } })
    expect(r.status, r.stdout + r.stderr).toBe(0)
  }, 180_000)

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
    for (const r of STEP_ROWS) expect(rows.some((l) => l.startsWith(`| tiny model step = CPU backend, bf16 | ${r}`)), `bf16: ${r}`).toBe(true)
    expect(rows.filter((l) => / \| skip \| /.test(l))).toEqual([]) // the simulation is an sm_80: nothing skipped
  }, 120_000)

  // a T4's architecture (SIM_SM=75): the bf16 kernels' tests say why they skip, and the Trainer and
  // the training stage's backend refuse bf16 with the reason, before anything is computed
  it.concurrent("SIM_SM=75: bf16 is refused, saying why", async () => {
    const exec = (cmd: string, args: ReadonlyArray<string>, env: Record<string, string>) =>
      new Promise<{ status: number | null; out: string }>((resolve) => {
        const p = spawn(cmd, args, { env: { ...process.env, ...env } })
        let out = ""
        p.stdout.on("data", (d) => (out += d))
        p.stderr.on("data", (d) => (out += d))
        p.on("close", (code) => resolve({ status: code, out }))
      })
    const kernels = await exec(path.join(build, "ftcuda_sim"), ["bf16 refused where the GPU has no bf16 tensor cores", "bf16 gemm, every layout"], {
      FTCUDA_SMALL: "1",
      SIM_SM: "75"
    })
    expect(kernels.status, kernels.out).toBe(0)
    expect(kernels.out).toMatch(/^\| bf16 refused where the GPU has no bf16 tensor cores \| Trainer\(bf16\) throws, naming bf16 and the architecture \| 0 \| 0 \| ok \|.*sm_75\) has no bf16 tensor cores/m)
    expect(kernels.out).toMatch(/^\| bf16 gemm, every layout \| bf16 operands \| \| \| skip \| \| \| this GPU \(sm_75\) has no bf16 tensor cores; they start at sm_80/m)
    expect(kernels.out).toMatch(/^\| bf16 refused where the GPU has no bf16 tensor cores \| gemm\(bf16\) throws before launching \| 0 \| 0 \| ok \|/m)
    expect(kernels.out).toContain("2 tests, 0 rows failed, 1 rows skipped")
    const stage = await exec(NODE, [path.join(REPO, "tests", "fixtures", "cuda-train.ts"), "bf16-refused"], {
      FT_CUDA_ADDON: path.join(build, "ftcuda_sim.node"),
      SIM_SM: "75"
    })
    expect(stage.status, stage.out).toBe(0)
    expect(JSON.parse(stage.out)).toEqual({
      said: "train.precision bf16: this GPU (sm_75) has no bf16 tensor cores; they start at sm_80 (A100, L4, H100); train.precision: fp16 runs on every GPU from sm_75 (T4)"
    })
  }, 60_000)

  // `train.device: cuda` end to end but for the GPU: the training loop (stages/train), the
  // backend (backend.ts), the N-API binding (src/addon_cuda.cpp) and the step's kernels
  it.concurrent("the training loop on the CUDA backend: the CPU backend's losses, and a kill + resume gives the same adapter, bit for bit", async () => {
    const { status, out, err } = await new Promise<{ status: number | null; out: string; err: string }>((resolve) => {
      const p = spawn(NODE, [path.join(REPO, "tests", "fixtures", "cuda-train.ts")], {
        env: { ...process.env, FT_CUDA_ADDON: path.join(build, "ftcuda_sim.node"), SIM_ORDER: "greedy" }
      })
      let out = ""
      let err = ""
      p.stdout.on("data", (d) => (out += d))
      p.stderr.on("data", (d) => (err += d))
      p.on("close", (code) => resolve({ status: code, out, err }))
    })
    expect(status, err).toBe(0)
    type Ev = { type: string; step?: number; loss?: number; valLoss?: number; scale?: number; skipped?: boolean; device?: string; resumedFrom?: number | null }
    type Run = { finished: boolean; events: Array<Ev>; adapter: Array<Array<number>> }
    const r = JSON.parse(out) as { cpu: Run; cuda: Run; bf16: Run; hostOptimizer: Run; resumed: Run; killed: { finished: boolean; steps: number }; checkpoints: Array<string>; noBackend: string }
    const steps = (run: Run) => run.events.filter((e) => e.type === "step")
    const evals = (run: Run) => run.events.filter((e) => e.type === "eval")
    expect(r.cuda.events[0]!.device).toMatch(/^cuda: CPU simulation \(fibers\) \(sm_80, 16\.00 GiB\), fp16 operands with fp32 accumulation; [\d.]+ MiB on the device for 2 x 24 tokens/)
    expect(r.cpu.events[0]!.device).toMatch(/^cpu, \d+ threads, fp32$/)
    expect(r.cuda.events[0]!.device).toMatch(/, AdamW [\d.]+ MiB\); the optimizer step on the device$/)
    // the optimizer on the device against the same backend with it on the host: the same losses,
    // and adapters that differ only by the gradient norm's summation order (it sets the clipping)
    steps(r.hostOptimizer).forEach((e, i) => expect(Math.abs(e.loss! - steps(r.cuda)[i]!.loss!), `step ${e.step}`).toBeLessThan(1e-6))
    {
      let d = 0
      let n = 0
      r.cuda.adapter.forEach((a, i) => a.forEach((x, j) => ((d += (x - r.hostOptimizer.adapter[i]![j]!) ** 2), (n += x ** 2))))
      expect(Math.sqrt(d / n)).toBeLessThan(1e-4)
    }
    // fp16 operands against fp32: the same losses to 2e-3, step by step, with no step skipped
    expect(steps(r.cuda).map((e) => e.step)).toEqual([1, 2, 3, 4])
    steps(r.cuda).forEach((e, i) => {
      const ref = steps(r.cpu)[i]!
      expect(Math.abs(e.loss! - ref.loss!) / ref.loss!, `step ${e.step}: ${e.loss} vs ${ref.loss}`).toBeLessThan(2e-3)
      expect(e.skipped).toBe(false)
      expect(e.scale).toBe(65536) // the GPU's loss scale (GradScaler's start); the CPU's is 1
    })
    // validation losses after training also carry the adapters' difference (below): 5e-3
    evals(r.cuda).forEach((e, i) => expect(Math.abs(e.valLoss! - evals(r.cpu)[i]!.valLoss!) / evals(r.cpu)[i]!.valLoss!, `eval at ${e.step}`).toBeLessThan(5e-3))
    // learning: the validation loss falls (6.60 -> 5.42 here)
    expect(evals(r.cuda).at(-1)!.valLoss!).toBeLessThan(evals(r.cuda)[0]!.valLoss! - 0.5)
    // the adapters: Adam divides each gradient by its own running size, so the small fp16-vs-fp32
    // differences of tiny gradients become full-size differences of their updates; the bound is loose
    let d = 0
    let n = 0
    r.cuda.adapter.forEach((a, i) => a.forEach((x, j) => ((d += (x - r.cpu.adapter[i]![j]!) ** 2), (n += r.cpu.adapter[i]![j]! ** 2))))
    expect(Math.sqrt(d / n)).toBeLessThan(0.15)
    // bf16 operands (sm_80+): 8 bits of mantissa, not 11, so the losses are further from fp32's
    // (the simulator measured up to 3.1e-3, growing as the adapters part), and no loss scaling: the scale stays 1
    expect(r.bf16.events[0]!.device).toMatch(/\), bf16 operands with fp32 accumulation; /)
    expect(steps(r.bf16).map((e) => e.step)).toEqual([1, 2, 3, 4])
    steps(r.bf16).forEach((e, i) => {
      const ref = steps(r.cpu)[i]!
      expect(Math.abs(e.loss! - ref.loss!) / ref.loss!, `bf16 step ${e.step}: ${e.loss} vs ${ref.loss}`).toBeLessThan(1e-2)
      expect(e.skipped).toBe(false)
      expect(e.scale).toBe(1)
    })
    expect(evals(r.bf16).at(-1)!.valLoss!).toBeLessThan(evals(r.bf16)[0]!.valLoss! - 0.5)
    // not the fp16 run under another name
    expect(steps(r.bf16).map((e) => e.loss)).not.toEqual(steps(r.cuda).map((e) => e.loss))
    // killed after 2 steps (a checkpoint at 2), resumed: steps 3 and 4, then the uninterrupted run's adapter
    expect(r.killed).toEqual({ finished: false, steps: 2 })
    expect(r.checkpoints).toEqual(["ckpt-2"])
    expect(r.resumed.events.find((e) => e.type === "start")!.resumedFrom).toBe(2)
    expect(steps(r.resumed).map((e) => e.step)).toEqual([3, 4])
    expect(r.resumed.adapter).toEqual(r.cuda.adapter)
    // and this machine's own CUDA backend: no GPU here, said in one line (or a GPU, where one is)
    const gpu = spawnSync("sh", ["-c", "command -v nvidia-smi && nvidia-smi -L"], { encoding: "utf8" }).status === 0
    if (gpu) expect(r.noBackend).toBe("a GPU")
    else expect(r.noBackend).toMatch(/^train\.device cuda: (no usable GPU: .+ \(hint: no usable GPU or driver here; train\.device: cpu runs without one\)|this build of the native core has no CUDA backend .+)$/)
  }, 150_000)
})
