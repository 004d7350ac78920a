/**
 * The training process. The train stage runs this file as a child process
 * (stages/lib/worker.ts) so that a crash in native code cannot take the engine
 * down. It prints one JSON event per line (see TrainEvent), writes
 * metrics.jsonl, and writes the PEFT adapter when training has finished; a
 * failure ends with an error event carrying its one-line reason.
 */
import * as fs from "node:fs"
import * as Native from "../../native/index.ts"
import { PROJECTIONS } from "../../native/qwen3.ts"
import { loadQwen3With, writeAdapter } from "../lib/checkpoint.ts"
import { cudaBackend, cudaBase, type Backend } from "./backend.ts"
import { protocol, type Job, type TrainEvent } from "./protocol.ts"
import { longestSequence, quantizeProjection, train } from "./trainer.ts"
import * as Format from "../tokenize/format.ts"
import { workerMain } from "../lib/worker.ts"

/**
 * The model, the data and the backend the job asks for (the model first: a missing model is the
 * likelier mistake, and says so). CUDA: each projection goes to NF4 as it is read (the host never
 * holds the whole fp32 base), and the device holds steps of up to batchSize x the longest sequence.
 */
const prepare = (job: Job, emit: (e: TrainEvent) => void) => {
  // the base's layers as they are read (Qwen3-4B: 36 layers, 8 GB of bf16), at each layer's last projection
  const loaded = <W>(w: W, done: number, total: number): W => {
    if (done % PROJECTIONS.length === 0) emit({ type: "loading", done: done / PROJECTIONS.length, total: total / PROJECTIONS.length })
    return w
  }
  if (job.device === "cpu") {
    // each projection through NF4 and back as it is read: one fp32 copy of the base, not two
    const { config, weights } = loadQwen3With(job.modelDir, (w, done, total) => loaded(quantizeProjection(w), done, total))
    return { config, weights, backend: undefined as Backend | undefined, trainData: Format.read(job.trainBin), valData: Format.read(job.valBin) }
  }
  const { config, weights } = loadQwen3With(job.modelDir, (w, done, total) => loaded(Native.nf4Quantize(w), done, total))
  const trainData = Format.read(job.trainBin)
  const valData = Format.read(job.valBin)
  const seqLen = Math.max(longestSequence(trainData), longestSequence(valData))
  const precision = job.precision === "bf16" ? "bf16" : "fp16"
  return { config, weights: undefined, backend: cudaBackend(config, cudaBase(weights), job.lora, job.t.batchSize, seqLen, precision), trainData, valData }
}

await workerMain(protocol, (job, emit) => {
  const { config, weights, backend, trainData, valData } = prepare(job, emit)
  // metrics live in the scratch directory so that a resumed run continues them
  let metrics = fs.openSync(job.metricsFile, "a")
  const onEvent = (e: TrainEvent) => {
    if (e.type === "start") {
      // keep what the checkpoint covers, drop what a killed run wrote after it (all of it
      // when there is no checkpoint: the step-0 evaluation is done again)
      const upTo = e.resumedFrom ?? -1
      const kept = fs.readFileSync(job.metricsFile, "utf8").split("\n").filter((l) => l !== "" && (JSON.parse(l) as { step: number }).step <= upTo)
      fs.closeSync(metrics)
      fs.writeFileSync(job.metricsFile, kept.map((l) => l + "\n").join(""))
      metrics = fs.openSync(job.metricsFile, "a")
    }
    if (e.type === "step") fs.writeSync(metrics, JSON.stringify({ step: e.step, loss: e.loss, lr: e.lr, gradNorm: e.gradNorm, tokensPerSecond: e.tokensPerSecond, skipped: e.skipped }) + "\n")
    if (e.type === "eval") fs.writeSync(metrics, JSON.stringify({ step: e.step, valLoss: e.valLoss }) + "\n")
    emit(e)
  }
  try {
    const result = train({
      config,
      ...(weights !== undefined ? { weights } : {}),
      ...(backend !== undefined ? { backend } : {}),
      train: trainData,
      val: valData,
      t: job.t,
      lora: job.lora,
      scratch: job.scratch,
      ...(job.stopAfter !== undefined ? { stopAfter: job.stopAfter } : {}),
      onEvent
    })
    if (result.finished) writeAdapter(job.adapterDir, config, job.lora, result.lora, null)
  } finally {
    fs.closeSync(metrics)
    backend?.close()
  }
})
