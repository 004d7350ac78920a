/**
 * The evaluation process (run by the eval stage as a child, like the trainer): teacher-forced
 * cross-entropy over the assistant tokens of each chosen validation example, with the adapter on
 * the NF4 base the trainer used, and of the base alone when asked. Prints one `result` event.
 */
import { Template } from "@huggingface/jinja"
import { Tokenizer } from "@huggingface/tokenizers"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Native from "../../native/index.ts"
import { chatTemplateOf, SPECIAL } from "../lib/qwen3.ts"
import { loadEncoder } from "../tokenize.ts"
import { loadAdapter, loadQwen3With } from "../lib/checkpoint.ts"
import { makeBatch, quantizeProjection } from "../train/trainer.ts"
import * as Format from "../tokenize/format.ts"
import { workerMain } from "../lib/worker.ts"
import { protocol } from "./protocol.ts"

await workerMain(protocol, async (job, emit) => {
  // each projection through NF4 and back as it is read: one fp32 copy of the base, not two
  const { config, weights: base } = loadQwen3With(job.modelDir, quantizeProjection)
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
  // greedy generation at every assistant turn, given the turns before it, rendered with the model's template
  const template = new Template(chatTemplateOf(job.modelDir))
  const { encoder } = await loadEncoder(job.modelDir)
  const dir = job.modelDir
  const decoder = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")), JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")))
  const prompts: Array<{ conversation: number; turn: number; text: string }> = []
  job.generate.forEach((c, ci) => {
    const messages = c.messages as ReadonlyArray<{ role: string }>
    messages.forEach((m, i) => {
      if (m.role === "assistant") prompts.push({ conversation: ci, turn: i, text: template.render({ messages: messages.slice(0, i), tools: c.tools.length ? c.tools : undefined, add_generation_prompt: true }) })
    })
  })
  const encoded = await encoder.encodeAll(prompts.map((p) => p.text))
  const stops = [SPECIAL.imEnd, SPECIAL.endoftext]
  const gen = () => encoded.map((e) => decoder.decode(Array.from(Native.qwen3Generate(config, base, lora, e.ids, job.maxNewTokens, stops)), { skip_special_tokens: false }))
  const adapterText = gen()
  const adapter = measure()
  let baseline: typeof adapter | null = null
  let baseText: Array<string> | null = null
  if (job.compareBase) {
    for (const p of lora.proj) p?.B.fill(0) // B = 0: the adapter adds nothing
    baseline = measure()
    baseText = gen()
  }
  emit({ type: "result", adapter, base: baseline, generated: prompts.map((p, i) => ({ conversation: p.conversation, turn: p.turn, text: adapterText[i]!, base: baseText ? baseText[i]! : null })) })
})
