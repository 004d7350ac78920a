/**
 * train: QLoRA fine-tuning through the native addon (train/trainer.ts for the
 * loop, train/worker.ts as the child process that runs it).
 *
 * Checkpoints live in the stage's scratch directory, which the engine keeps
 * across failures and kills and wipes when the key changes: an interrupted run
 * with the same key resumes from its latest checkpoint, and says so. Writes the
 * PEFT adapter with the best validation loss and metrics.jsonl (a `loss` per
 * step, a `valLoss` per evaluation, the first at step 0 for the untrained
 * adapter).
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { Stage, StageError } from "../engine/index.ts"
import { fileURLToPath } from "node:url"
import * as Native from "../native/index.ts"
import { addonBuildId } from "./lib/addon.ts"
import { type Job, LoraParams, protocol, TrainParams, type TrainEvent } from "./train/protocol.ts"
import { runWorker } from "./lib/worker.ts"
import { download } from "./download.ts"
import { tokenize } from "./tokenize.ts"

export { LoraParams, TrainParams } from "./train/protocol.ts"

/** Bytes per trainable parameter held on disk per checkpoint: fp32 weights, the best copy, two 8-bit Adam moments. */
const CHECKPOINT_BYTES_PER_PARAM = 4 + 4 + 2

export const train = Stage.make({
  name: "train",
  description: "QLoRA fine-tuning (native CPU trainer)",
  module: import.meta.url,
  // the addon's build id: a digest of its sources and build options
  versions: () => ({ addon: addonBuildId() }),
  params: { train: TrainParams, lora: LoraParams },
  inputs: { train: tokenize.out.train, val: tokenize.out.val, model: download.out.model },
  outputs: { adapter: Stage.dir("adapter"), metrics: Stage.file("metrics.jsonl", { metrics: true, plot: { x: "step", y: ["loss", "valLoss", "lr"] } }) },
  // device cuda takes a GPU: the local executor runs one such stage per GPU, Slurm asks for --gres=gpu:1
  resources: (p) => ({ memoryMB: 2000, ...(p.train.device === "cuda" ? { gpu: 1 } : {}) }),
  estimate: ({ params, inputSizes }) => {
    // LoRA r=16 on all seven projections is 0.82% of Qwen3's parameters; the
    // base weights are bf16, so parameters ≈ model bytes / 2.
    const baseParams = (inputSizes["model"] ?? 0) / 2
    const loraParams = baseParams * 0.0082 * (params.lora.r / 16)
    const adapter = loraParams * 4
    const t = params.train
    // ~5 bytes a token in the tokenized file (u32 id + u8 mask); ~600 tokens a conversation
    const tokens = (inputSizes["train"] ?? 0) / 5
    const seq = 600
    const steps = t.maxSteps ?? Math.ceil((t.epochs * tokens) / (t.batchSize * t.gradAccum * seq))
    const trainedTokens = Math.min(t.epochs * tokens, steps * t.batchSize * t.gradAccum * seq)
    // forward + backward to the inputs through the frozen base: ~4 FLOP a parameter a token;
    // measured throughput: ~150 GFLOP/s on the 2-core CPU (npm run bench), ~8 TFLOP/s on a T4
    const flopsPerSecond = t.device === "cuda" ? 8e12 : 150e9
    const evalTokens = Math.ceil(steps / t.evalEvery + 1) * t.evalSamples * seq
    // host memory: cpu holds the NF4-rounded base in fp32 (4 bytes a parameter); cuda keeps NF4
    // codes and the fp32 embedding (~1.5 bytes a parameter); both quantize each tensor as it is read
    const memoryBytes = (t.device === "cuda" ? 1.5 : 4) * baseParams + 2 ** 30
    return {
      memoryBytes: Math.round(memoryBytes),
      bytes: { adapter: Math.round(adapter), metrics: 200 * steps },
      scratchBytes: Math.round(t.keepCheckpoints * loraParams * CHECKPOINT_BYTES_PER_PARAM),
      seconds: 5 + ((4 * trainedTokens + 2 * evalTokens) * baseParams) / flopsPerSecond
    }
  },
  // known before anything runs: say it then, not after the data stages
  preflight: ({ params }) => backendProblem(params.train),
  run: (ctx) =>
    Effect.gen(function* () {
      const { lora, train: t } = ctx.params
      const refused = backendProblem(t)
      if (refused !== undefined) return yield* new StageError({ message: refused })
      const scratch = ctx.scratchDir
      const { device, precision, ...trainer } = t
      const job: Job = {
        modelDir: ctx.inputs.model,
        trainBin: ctx.inputs.train,
        valBin: ctx.inputs.val,
        adapterDir: ctx.outputs.adapter,
        metricsFile: path.join(scratch, "metrics.jsonl"),
        scratch,
        t: trainer,
        lora,
        device,
        precision
      }
      yield* runWorker({ file: WORKER, label: "trainer", protocol, job, jobFile: path.join(scratch, "job.json"), onEvent: (e) => onEvent(ctx, e) })
      fs.copyFileSync(job.metricsFile, ctx.outputs.metrics)
    })
})

/**
 * What this configuration cannot train with, known before anything runs: the precision each
 * backend computes in, and a CUDA backend in this build. Whether a GPU is there is known only
 * where the stage runs (a Slurm job runs on another host): the worker says so in its first second.
 */
const backendProblem = (t: { readonly device: string; readonly precision: string }): string | undefined => {
  if (t.device === "cpu" && t.precision !== "fp32")
    return `train.precision ${t.precision}: the CPU backend computes in fp32 (fp16 and bf16 are the CUDA backend's: train.device: cuda)`
  if (t.device === "cuda") {
    if (t.precision !== "fp16" && t.precision !== "bf16")
      return `train.precision ${t.precision}: the CUDA backend trains in mixed precision (16-bit operands, fp32 accumulation and master weights); set train.precision: fp16 (any GPU from a T4) or bf16 (sm_80+: A100, L4, H100)`
    let mod: ReturnType<typeof Native.cuda>
    try {
      mod = Native.cuda()
    } catch {
      return undefined // no addon built at all: the run says how to build it
    }
    if (typeof mod === "string") return `train.device cuda: ${mod}`
  }
  return undefined
}

// the worker is this stage's code too: the code fingerprint follows `new URL(…, import.meta.url)` like an import
const WORKER = fileURLToPath(new URL("./train/worker.ts", import.meta.url))

const onEvent = (ctx: { log: (l: string) => Effect.Effect<void>; progress: { total: (n: number, u: string) => Effect.Effect<void>; update: (d: number, n?: string) => Effect.Effect<void> } }, e: TrainEvent) => {
  switch (e.type) {
    case "start":
      return Effect.andThen(
        ctx.log(`${e.params}; ${e.trainSequences} sequences, ${e.totalSteps} steps${e.resumedFrom !== null ? `; resuming from the checkpoint at step ${e.resumedFrom}` : ""}`),
        Effect.andThen(ctx.log(`on ${e.device}`), ctx.progress.total(e.totalSteps, "steps"))
      )
    case "step":
      return ctx.progress.update(e.step, `loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${Math.round(e.tokensPerSecond)} tok/s${e.skipped ? " (skipped: non-finite gradient)" : ""}`)
    case "eval":
      return ctx.log(`step ${e.step}: validation loss ${e.valLoss.toFixed(4)}${e.best ? " (best)" : ""}`)
    case "checkpoint":
      return Effect.void
    case "loading":
      return e.done === 1 ? Effect.andThen(ctx.progress.total(e.total, "base layers loaded"), ctx.progress.update(e.done)) : ctx.progress.update(e.done)
    case "done":
      return ctx.log(`done at step ${e.step}; kept the adapter with the best validation loss ${e.bestVal?.toFixed(4) ?? "n/a"}`)
    case "warning":
      return ctx.log(`warning: ${e.message}`)
  }
}
