/**
 * The benchmark suite (`npm run bench`): runs each benchmark in turn and
 * prints a Markdown table per benchmark, our figure beside the peer tools
 * measured in the same run on the same machine.
 *
 *   noop.ts  no-op run of a fully cached ten-stage pipeline vs snakemake, make
 *   hash.ts  hashing a new 2 GiB file vs b3sum, md5sum, sha256sum, node sha256;
 *            and the unchanged-file case through the stat cache
 *   data.ts  the five data stages on 26,872 rows; tokenize vs a bare encodeBatch
 *   train.ts a full QLoRA training step vs PyTorch on two model sizes
 *   optimizer.ts the host's optimizer step for Qwen3-4B's LoRA vs torch.optim.AdamW
 *   gguf.ts  quantizing to Q8_0, Q4_K, Q5_K, Q6_K vs ggml_quantize_chunk
 *   export.ts peak memory of merge and GGUF export on a ~1 GB model
 *   remote.ts pull of a pushed pipeline from an HTTP remote (nginx) vs curl of the same objects
 *
 * Peers that are not installed get a "not installed" row. Run it on an idle
 * machine: the benchmarks run one after another, never in parallel.
 */
import * as os from "node:os"
import { dataTable } from "./data.ts"
import { exportTable } from "./export.ts"
import { ggufTable } from "./gguf.ts"
import { hashTable } from "./hash.ts"
import { noopTable } from "./noop.ts"
import { optimizerTable } from "./optimizer.ts"
import { remoteTable } from "./remote.ts"
import { trainTable } from "./train.ts"

const benches: ReadonlyArray<readonly [string, () => string | Promise<string>]> = [
  ["noop", noopTable],
  ["hash", hashTable],
  ["data", dataTable],
  ["train", trainTable],
  ["optimizer", optimizerTable],
  ["gguf", ggufTable],
  ["export", exportTable],
  ["remote", remoteTable]
]

const cpu = os.cpus()[0]?.model ?? "unknown CPU"
console.log(`# Benchmarks\n\nNode ${process.version}, ${os.platform()} ${os.arch()}, ${cpu}, ${os.cpus().length} cores, ${new Date().toISOString()}\n`)

// `npm run bench -- data` runs only the named benchmarks
const only = process.argv.slice(2)
for (const [name, table] of benches) {
  if (only.length > 0 && !only.includes(name)) continue
  const t0 = performance.now()
  process.stderr.write(`running ${name}…\n`)
  console.log(await table())
  process.stderr.write(`${name} done in ${((performance.now() - t0) / 1000).toFixed(1)}s\n`)
}
