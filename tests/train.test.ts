/** The training loop: PEFT's parameter count, schedule, loss scaling, learning, bit-exact resume, the PEFT adapter round trip. */
import * as fs from "node:fs"
import { PROJECTIONS } from "../native/qwen3.ts"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import type { Qwen3Config } from "../native/qwen3.ts"
import { loadAdapter, loadQwen3, writeAdapter } from "../stages/lib/checkpoint.ts"
import * as Trainer from "../stages/train/trainer.ts"
import { writeTiny } from "../stages/download/tiny.ts"
import { Rng } from "../stages/lib/rng.ts"
import * as Format from "../stages/tokenize/format.ts"
import { runWorker } from "../stages/lib/worker.ts"
import { ChildProcesses } from "../engine/Services.ts"
import { protocol } from "../stages/train/protocol.ts"
import * as Effect from "effect/Effect"
import { REPO } from "./helpers.ts"
import { missedGates } from "../stages/evaluate.ts"

const ALL = [...PROJECTIONS]

describe("the training loop's arithmetic", () => {
  it("counts parameters as PEFT does (Qwen3-4B, r=16 on all seven projections)", () => {
    const qwen3_4b: Qwen3Config = { hidden: 2560, intermediate: 9728, heads: 32, kvHeads: 8, headDim: 128, layers: 36, vocab: 151936, ropeTheta: 5e6, rmsEps: 1e-6, tied: true }
    const c = Trainer.parameterCount(qwen3_4b, { r: 16, alpha: 16, dropout: 0.05, targets: ALL })
    expect(c.line).toBe("trainable params: 33,030,144 || all params: 4,055,498,240 || trainable%: 0.8145")
    expect(c.trainable).toBe(16 * 36 * 57_344)
  })

  it("warms up linearly, then decays by cosine to zero", () => {
    const t = { lr: 1e-3, warmupSteps: 4, scheduler: "cosine" } as Trainer.TrainConfig
    expect([0, 1, 3].map((s) => Trainer.learningRate(t, s, 20))).toEqual([2.5e-4, 5e-4, 1e-3])
    expect(Trainer.learningRate(t, 4, 20)).toBeCloseTo(1e-3, 12)
    expect(Trainer.learningRate(t, 12, 20)).toBeCloseTo(5e-4, 12)
    expect(Trainer.learningRate(t, 20, 20)).toBeCloseTo(0, 12)
  })

  it("skips a step with a non-finite gradient and lowers the scale; raises it after a run of good steps", () => {
    const s = { scale: 1024, goodSteps: 0, skipped: 0 }
    expect(Trainer.scalerUpdate(s, false)).toBe(false)
    expect(s).toEqual({ scale: 512, goodSteps: 0, skipped: 1 })
    for (let i = 0; i < 3; i++) expect(Trainer.scalerUpdate(s, true, 3)).toBe(true)
    expect(s.scale).toBe(1024)
    // fp32 and bf16 need no scaling: a ceiling of 1, so the scale only comes back to 1
    const f = { scale: 1, goodSteps: 0, skipped: 0 }
    expect(Trainer.scalerUpdate(f, false, 2, 1)).toBe(false)
    expect(f.scale).toBe(0.5)
    for (let i = 0; i < 6; i++) Trainer.scalerUpdate(f, true, 2, 1)
    expect(f).toEqual({ scale: 1, goodSteps: 0, skipped: 1 })
  })

  it("gates eval metrics: losses at most their threshold, other metrics at least", () => {
    expect(missedGates({ valLoss: 2.5, toolNameAccuracy: 0.95 }, { valLoss: 3, toolNameAccuracy: 0.9 })).toEqual([])
    expect(missedGates({ valLoss: 3.5, toolNameAccuracy: 0.8 }, { valLoss: 3, toolNameAccuracy: 0.9 })).toEqual(["valLoss 3.5000 > 3", "toolNameAccuracy 0.8000 < 0.9"])
    expect(missedGates({ valLoss: 1 }, { bleu: 1 })[0]).toMatch(/no metric named bleu/)
  })

  it("visits every sequence once per epoch, in a seeded order", () => {
    const seen = [0, 1, 2].flatMap((m) => Trainer.microBatchIndices(5, 2, 7, m))
    expect(seen.slice(0, 5).sort()).toEqual([0, 1, 2, 3, 4])
    expect(Trainer.epochOrder(5, 7, 0)).not.toEqual(Trainer.epochOrder(5, 7, 1))
  })
})

/** A tiny model and a few short random sequences, everything trained on. */
const fixture = (seqs: number, len: number, pattern?: ReadonlyArray<number>) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "train-"))
  writeTiny(path.join(dir, "model"), 2, 3)
  const { config, weights } = loadQwen3(path.join(dir, "model"))
  const rng = new Rng(5)
  const make = (n: number): Format.Tokenized => {
    const ids = Uint32Array.from({ length: n * len }, (_, i) => (pattern ? pattern[i % pattern.length]! : rng.nextU32() % 2000))
    const offsets = Uint32Array.from({ length: n + 1 }, (_, i) => i * len)
    return {
      header: { format: 1, tokenizer: { digest: "x", vocabSize: 151669, modelVocabSize: 151936 }, special: {}, maxSeqLen: len, packing: false, tokens: n * len, examples: n, sequences: n },
      ids,
      mask: new Uint8Array(n * len).fill(1),
      exampleOffsets: offsets,
      sequenceOffsets: offsets
    }
  }
  return { dir, config, weights: Trainer.quantizeBase(weights), train: make(seqs), val: make(2) }
}

const tcfg = (over: Partial<Trainer.TrainConfig>): Trainer.TrainConfig => ({
  lr: 1e-2, epochs: 1, maxSteps: 4, batchSize: 2, gradAccum: 1, warmupSteps: 0, scheduler: "constant", weightDecay: 0, maxGradNorm: 1,
  seed: 1, evalEvery: 100, evalSamples: 2, checkpointEvery: 2, keepCheckpoints: 2, activationCheckpointing: false, ...over
})
const lora = { r: 4, alpha: 8, dropout: 0, targets: ALL }

describe("training", () => {
  it("resumes from a checkpoint to the same adapter, bit for bit", () => {
    const f = fixture(4, 12)
    const events: Array<Trainer.TrainEvent> = []
    const straight = Trainer.train({ ...f, t: tcfg({}), lora, scratch: path.join(f.dir, "a"), onEvent: () => {} })
    const first = Trainer.train({ ...f, t: tcfg({}), lora, scratch: path.join(f.dir, "b"), stopAfter: 2, onEvent: () => {} })
    expect(first.finished).toBe(false)
    expect(fs.readdirSync(path.join(f.dir, "b"))).toEqual(["ckpt-2"])
    const resumed = Trainer.train({ ...f, t: tcfg({}), lora, scratch: path.join(f.dir, "b"), onEvent: (e) => events.push(e) })
    expect(events[0]).toMatchObject({ type: "start", resumedFrom: 2 })
    expect(events.filter((e) => e.type === "step").map((e) => (e as { step: number }).step)).toEqual([3, 4])
    expect(resumed.finished).toBe(true)
    resumed.lora.proj.forEach((p, i) => {
      expect(Buffer.from(p!.A.buffer).equals(Buffer.from(straight.lora.proj[i]!.A.buffer))).toBe(true)
      expect(Buffer.from(p!.B.buffer).equals(Buffer.from(straight.lora.proj[i]!.B.buffer))).toBe(true)
    })
  }, 120_000)

  it("a damaged checkpoint is said once, removed, and the one before it resumes, to the same adapter", () => {
    const f = fixture(4, 12)
    const straight = Trainer.train({ ...f, t: tcfg({ maxSteps: 6 }), lora, scratch: path.join(f.dir, "a"), onEvent: () => {} })
    const scratch = path.join(f.dir, "b")
    Trainer.train({ ...f, t: tcfg({ maxSteps: 6 }), lora, scratch, stopAfter: 4, onEvent: () => {} })
    expect(fs.readdirSync(scratch).sort()).toEqual(["ckpt-2", "ckpt-4"])
    const bin = path.join(scratch, "ckpt-4", "optimizer.bin")
    fs.writeFileSync(bin, fs.readFileSync(bin).subarray(0, 100)) // a torn file
    const events: Array<Trainer.TrainEvent> = []
    const resumed = Trainer.train({ ...f, t: tcfg({ maxSteps: 6 }), lora, scratch, onEvent: (e) => events.push(e) })
    expect(events[0]).toMatchObject({ type: "warning", message: expect.stringMatching(/^checkpoint at step 4 is damaged \(optimizer\.bin: 100 bytes, expected \d+\); it was removed$/) })
    expect(events[1]).toMatchObject({ type: "start", resumedFrom: 2 })
    resumed.lora.proj.forEach((p, i) => {
      expect(Buffer.from(p!.A.buffer).equals(Buffer.from(straight.lora.proj[i]!.A.buffer))).toBe(true)
      expect(Buffer.from(p!.B.buffer).equals(Buffer.from(straight.lora.proj[i]!.B.buffer))).toBe(true)
    })
  }, 120_000)

  it("the worker's metrics after a kill before the first checkpoint hold each line once", async () => {
    const f = fixture(4, 12)
    const scratch = path.join(f.dir, "scratch")
    fs.mkdirSync(scratch)
    Format.write(path.join(f.dir, "train.bin"), f.train)
    Format.write(path.join(f.dir, "val.bin"), f.val)
    // what a run killed after its step-0 evaluation and before any checkpoint leaves behind
    const metricsFile = path.join(scratch, "metrics.jsonl")
    fs.writeFileSync(metricsFile, '{"step":0,"valLoss":12.5}\n{"step":1,"loss":12,"lr":0.01,"gradNorm":1,"tokensPerSecond":1,"skipped":false}\n')
    const job = {
      modelDir: path.join(f.dir, "model"), trainBin: path.join(f.dir, "train.bin"), valBin: path.join(f.dir, "val.bin"),
      adapterDir: path.join(f.dir, "adapter"), metricsFile, scratch, t: tcfg({ maxSteps: 2, evalEvery: 2 }), lora, device: "cpu" as const, precision: "fp32" as const
    }
    await Effect.runPromise(
      runWorker({ file: path.join(REPO, "stages/train/worker.ts"), label: "trainer", protocol, job, jobFile: path.join(scratch, "job.json"), onEvent: () => Effect.void }).pipe(
        Effect.provide(ChildProcesses.node)
      )
    )
    const lines = fs.readFileSync(metricsFile, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; valLoss?: number })
    expect(lines.map((l) => `${l.step}${l.valLoss !== undefined ? "v" : ""}`)).toEqual(["0v", "1", "2", "2v"])
  }, 120_000)

  it("learns: the loss on a small set falls by far more than 10%, and the PEFT adapter round-trips", () => {
    // a short repeating pattern: learnable in a few steps by a tiny random model
    const f = fixture(2, 16, [1101, 2202, 3303, 4404])
    const losses: Array<number> = []
    const vals: Array<number> = []
    const r = Trainer.train({
      ...f,
      val: f.train,
      t: tcfg({ maxSteps: 12, checkpointEvery: 0, evalEvery: 12, lr: 1e-2 }),
      lora,
      scratch: path.join(f.dir, "s"),
      onEvent: (e) => {
        if (e.type === "step") losses.push(e.loss)
        if (e.type === "eval") vals.push(e.valLoss)
      }
    })
    if (process.env["TRAIN_DEBUG"]) console.log(losses, vals)
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.9)
    expect(vals.at(-1)!).toBeLessThan(vals[0]! * 0.9)
    const out = path.join(f.dir, "adapter")
    writeAdapter(out, f.config, lora, r.lora, null)
    const back = loadAdapter(out, f.config)
    expect(back.rank).toBe(4)
    expect(back.scale).toBe(2)
    back.proj.forEach((p, i) => expect(Array.from(p!.B)).toEqual(Array.from(r.lora.proj[i]!.B)))
    expect(JSON.parse(fs.readFileSync(path.join(out, "adapter_config.json"), "utf8"))).toMatchObject({ peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ALL })
  }, 120_000)
})
