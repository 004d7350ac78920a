/**
 * The CUDA backend where it can be checked without a GPU (CI: nvcc, no GPU, no cuBLAS). The
 * addon's build (tests/setup/build-native.ts, cmake-js) also builds native/cuda when nvcc is
 * found; here: every kernel file compiled into the test executable, with SASS for sm_75, sm_80
 * and sm_90 and PTX for compute_75 in it; the executable lists every kernel's tests and, without
 * a device, says so and exits 77 (ctest's "skipped"); the memory plan of a Qwen3-4B step at
 * 2 x 2048 tokens is within 14 GiB; and gpu-check.sh's standalone build configures from the
 * source tree alone. What runs on a GPU is in native/cuda/gpu-check.sh.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { REPO } from "./helpers.ts"

const hasNvcc = spawnSync("sh", ["-c", "command -v nvcc"]).status === 0
if (!hasNvcc && process.env["CI"] === "true") throw new Error("nvcc is required under CI=true: the CUDA kernels must compile there")
const bin = (name: string) => [path.join(REPO, "native", "build", "cuda", name), path.join(REPO, "native", "build", "Release", name)].find((p) => fs.existsSync(p))

describe.skipIf(!hasNvcc)("the CUDA backend, compiled", () => {
  it("holds every kernel's tests, for sm_75, sm_80, sm_90 and the compute_75 PTX, and skips without a GPU", () => {
    const tests = bin("ftcuda_tests")
    expect(tests, "native/build/cuda/ftcuda_tests: the addon's build did not build the CUDA tests").toBeDefined()
    const list = spawnSync(tests!, ["--list"], { encoding: "utf8" })
    expect(list.status).toBe(0)
    const groups = new Set(list.stdout.trim().split("\n").map((l) => l.split(" ")[0]))
    for (const g of ["nf4", "gemm", "norm", "rope", "swiglu", "attention", "xent", "adamw8bit", "lossscale", "step"]) expect(groups, g).toContain(g)
    // and the bf16 operand type's (sm_80+; they report "skip" rows on older GPUs)
    for (const t of ["gemm bf16 gemm, every layout", "attention attention Qwen3-4B, bf16", "step tiny model step = CPU backend, bf16", "step bf16 refused where the GPU has no bf16 tensor cores"])
      expect(list.stdout.split("\n"), t).toContain(t)
    const run = spawnSync(tests!, [], { encoding: "utf8" })
    expect(run.status, run.stdout + run.stderr).toBe(77)
    expect(run.stdout).toMatch(/^no CUDA device: \d+ tests not run \(built for: 75-real 80-real 90-real 75-virtual\)/)
    // the fat binary: an ELF per real architecture (its embedded ptxas options) and the PTX text
    const strings = spawnSync("strings", [tests!], { encoding: "utf8", maxBuffer: 1 << 28 }).stdout
    for (const a of ["sm_75", "sm_80", "sm_90"]) expect(strings, a).toContain(`-arch ${a}`)
    expect(strings).toMatch(/\.target sm_75/)
  })

  it("plans a Qwen3-4B step at 2 x 2048 tokens within 14 GiB, and says what takes the memory", () => {
    const plan = spawnSync(bin("ftcuda_memplan")!, [], { encoding: "utf8" })
    expect(plan.status, plan.stdout).toBe(0)
    const peak = Number(/\| \*\*peak\*\* \| \*\*([\d.]+)\*\* \|/.exec(plan.stdout)?.[1])
    expect(peak).toBeGreaterThan(4) // the NF4 base alone is 1.7 GiB, activations more
    expect(peak).toBeLessThanOrEqual(14)
    expect(plan.stdout).toContain("(33030144 parameters)") // PEFT's count (tests/train.test.ts)
    for (const g of ["weights", "LoRA", "optimizer", "activations", "head", "workspace"]) expect(plan.stdout).toMatch(new RegExp(`\\| ${g} \\| [\\d.]+ \\|`))
    // a batch that cannot fit says so and fails
    expect(spawnSync(bin("ftcuda_memplan")!, ["16", "4096"], { encoding: "utf8" }).status).toBe(1)
  })

  it("configures standalone from the source tree gpu-check.sh ships (no Node.js, no addon)", () => {
    const build = fs.mkdtempSync(path.join(os.tmpdir(), "ftcuda-configure-"))
    const r = spawnSync("cmake", ["-S", path.join(REPO, "native", "cuda"), "-B", build, "-DCMAKE_BUILD_TYPE=Release"], { encoding: "utf8" })
    expect(r.status, r.stdout + r.stderr).toBe(0)
    const flags = fs.readFileSync(path.join(build, "CMakeFiles", "ftcuda.dir", "flags.make"), "utf8")
    for (const g of ["compute_75,code=[sm_75]", "compute_80,code=[sm_80]", "compute_90,code=[sm_90]", "compute_75,code=[compute_75]"]) expect(flags).toContain(`generate-code=arch=${g}`)
    expect(spawnSync("bash", ["-n", path.join(REPO, "native", "cuda", "gpu-check.sh")]).status).toBe(0)
  }, 120_000)
})
