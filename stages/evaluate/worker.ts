/**
 * The evaluation process (run by the eval stage as a child, like the trainer):
 * validation loss of the adapter, and of the base model alone when asked, over
 * the first `maxSamples` validation sequences. Prints one `result` event.
 */
import { loadAdapter, loadQwen3 } from "../lib/checkpoint.ts"
import { quantizeBase, validationLoss, type TrainConfig } from "../train/trainer.ts"
import * as Format from "../tokenize/format.ts"
import { workerMain } from "../lib/worker.ts"
import { protocol } from "./protocol.ts"

await workerMain(protocol, (job, emit) => {
  const { config, weights } = loadQwen3(job.modelDir)
  const base = quantizeBase(weights)
  const val = Format.read(job.valBin)
  const input = { config, weights: base, val, t: { evalSamples: job.maxSamples } as TrainConfig }
  const lora = loadAdapter(job.adapterDir, config)
  const samples = Math.min(job.maxSamples, val.sequenceOffsets.length - 1)
  const metrics: Record<string, number> = { samples, valLoss: validationLoss(input, lora) }
  if (job.compareBase) {
    for (const p of lora.proj) p?.B.fill(0) // B = 0: the adapter adds nothing
    metrics["baseValLoss"] = validationLoss(input, lora)
  }
  emit({ type: "result", metrics })
})
