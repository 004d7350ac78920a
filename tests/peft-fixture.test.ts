/**
 * The fixture the GPU machine's ecosystem check reads (native/cuda/peft/: our adapter of a micro
 * Qwen3, and our logits and LoRA gradients for a batch). Here: it is what the code writes today
 * (regenerated and compared byte for byte, so it cannot drift), and its logits and gradients agree
 * with the independent PyTorch reference (tests/golden/qwen3_ref.py). transformers + peft are not
 * on this machine: check.py, which loads the adapter with peft, says "skipped" here and runs in
 * native/cuda/gpu-check.sh where they are installed.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { makeFixture } from "../native/cuda/peft/make-fixture.ts"
import { relL2, REPO } from "./helpers.ts"

const PYTHON = "/usr/bin/python3"
const hasTorch = spawnSync(PYTHON, ["-c", "import torch"]).status === 0
const committed = path.join(REPO, "native", "cuda", "peft", "fixture")

const files = (dir: string): Array<string> =>
  fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.relative(dir, path.join(d.parentPath, d.name))).sort()

describe("the PEFT fixture of the GPU check", () => {
  it("is what the code writes today, byte for byte", () => {
    const fresh = fs.mkdtempSync(path.join(os.tmpdir(), "peft-fixture-"))
    makeFixture(fresh)
    expect(files(fresh)).toEqual(files(committed))
    for (const f of files(fresh)) expect(fs.readFileSync(path.join(fresh, f)).equals(fs.readFileSync(path.join(committed, f))), `${f} differs: run node native/cuda/peft/make-fixture.ts`).toBe(true)
  }, 60_000)

  it.skipIf(!hasTorch)("holds logits, loss and LoRA gradients that the PyTorch reference agrees with", () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "peft-ref-"))
    const r = spawnSync(PYTHON, [path.join(REPO, "tests", "golden", "qwen3_ref.py"), path.join(committed, "model"), path.join(committed, "adapter"), path.join(committed, "batch.json"), out], { encoding: "utf8" })
    expect(r.status, r.stderr).toBe(0)
    const ref = JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8")) as { loss: number; logits: { file: string }; grads: Record<string, { file: string }> }
    const ours = JSON.parse(fs.readFileSync(path.join(committed, "ours", "manifest.json"), "utf8")) as { loss: number; logits: string; grads: Record<string, string> }
    const f32 = (file: string) => {
      const b = fs.readFileSync(file)
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))
    }
    expect(Math.abs(ours.loss - ref.loss) / ref.loss).toBeLessThan(1e-4)
    expect(relL2(f32(path.join(committed, "ours", ours.logits)), f32(path.join(out, ref.logits.file)))).toBeLessThan(1e-4)
    expect(Object.keys(ours.grads).sort()).toEqual(Object.keys(ref.grads).sort())
    for (const [name, file] of Object.entries(ours.grads)) expect(relL2(f32(path.join(committed, "ours", file)), f32(path.join(out, ref.grads[name]!.file))), name).toBeLessThan(1e-3)
    // and check.py runs here up to its imports: skipped (77) without transformers and peft
    const check = spawnSync(PYTHON, [path.join(REPO, "native", "cuda", "peft", "check.py")], { encoding: "utf8" })
    expect([0, 77]).toContain(check.status)
  }, 120_000)
})
