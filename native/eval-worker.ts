/**
 * The evaluation process (run by the eval stage as a child, like the trainer):
 * validation loss of the adapter, and of the base model alone when asked, over
 * the first `maxSamples` validation sequences. Prints one JSON object.
 */
import * as fs from "node:fs"
import * as Format from "../stages/tokenize/format.ts"
import { loadAdapter, loadQwen3 } from "./qwen3.ts"
import { quantizeBase, validationLoss, type TrainConfig } from "./trainer.ts"

const job = JSON.parse(fs.readFileSync(process.argv[2]!, "utf8")) as { modelDir: string; adapterDir: string; valBin: string; maxSamples: number; compareBase: boolean }
const { config, weights } = loadQwen3(job.modelDir)
const base = quantizeBase(weights)
const val = Format.read(job.valBin)
const input = { config, weights: base, val, t: { evalSamples: job.maxSamples } as TrainConfig }
const lora = loadAdapter(job.adapterDir, config)
const samples = Math.min(job.maxSamples, val.sequenceOffsets.length - 1)
const result: Record<string, number> = { samples, valLoss: validationLoss(input, lora) }
if (job.compareBase) {
  for (const p of lora.proj) p?.B.fill(0) // B = 0: the adapter adds nothing
  result["baseValLoss"] = validationLoss(input, lora)
}
process.stdout.write(JSON.stringify(result) + "\n")
