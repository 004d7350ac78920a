/**
 * The evaluation process (run by the eval stage as a child, like the trainer): teacher-forced
 * cross-entropy over the assistant tokens of each chosen validation example, with the adapter on
 * the NF4 base the trainer used, and of the base alone when asked. Prints one `result` event.
 */
import * as Native from "../../native/index.ts"
import { loadAdapter, loadQwen3 } from "../lib/checkpoint.ts"
import { makeBatch, quantizeBase } from "../train/trainer.ts"
import * as Format from "../tokenize/format.ts"
import { workerMain } from "../lib/worker.ts"
import { protocol } from "./protocol.ts"

await workerMain(protocol, (job, emit) => {
  const { config, weights } = loadQwen3(job.modelDir)
  const base = quantizeBase(weights)
  const val = Format.read(job.valBin)
  // examples, not packed windows: each measured example is one sequence
  const examples: Format.Tokenized = { ...val, sequenceOffsets: val.exampleOffsets }
  const lora = loadAdapter(job.adapterDir, config)
  const measure = () =>
    job.examples.map((e) => {
      if (e < 0 || e >= examples.exampleOffsets.length - 1) throw new Error(`example ${e} is not in ${job.valBin}`)
      const b = makeBatch(examples, [e])
      const r = Native.qwen3ForwardBackward(config, base, lora, b.ids, b.mask, 1, b.seqLen, false)
      return { lossSum: r.counted ? r.loss * r.counted : 0, tokens: r.counted }
    })
  const adapter = measure()
  let baseline: typeof adapter | null = null
  if (job.compareBase) {
    for (const p of lora.proj) p?.B.fill(0) // B = 0: the adapter adds nothing
    baseline = measure()
  }
  emit({ type: "result", adapter, base: baseline })
})
