/**
 * tokenize: rendered conversations → token ids and loss masks in the binary
 * format of `tokenize/format.ts`, with the model's own tokenizer.json.
 *
 * The native Hugging Face tokenizers (`@anush008/tokenizers`) do the work: on
 * this machine they measured 1.4 M tokens/s against 0.47 M for the pure-JS
 * `@huggingface/tokenizers` on the same texts (ids identical); the JS one is the
 * independent check in the tests. Sequences longer than `tokenize.maxSeqLen`
 * are dropped or truncated (`tokenize.overflow`) and counted; `tokenize.packing`
 * packs short examples into `maxSeqLen` windows.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { Digest, Stage, StageError } from "../engine/index.ts"
import { download } from "./download.ts"
import { readJsonl, writeJsonl } from "./lib/jsonl.ts"
import { SPECIAL } from "./lib/qwen3.ts"
import { withDefault } from "./lib/schema.ts"
import { split } from "./split.ts"
import type { Conversation } from "./toolcalls.ts"
import { Encoder, type AddedToken, type Encoded } from "./tokenize/encode.ts"
import * as Format from "./tokenize/format.ts"

/**
 * No conversation this pipeline renders fits in fewer tokens: the chat
 * template's frame alone is 15, and the shortest Bitext row rendered bare (no
 * system prompt, no tools) is 42 (tests/data-stages.test.ts checks every sample
 * row). Where the real bound lies depends on the data and the system prompt:
 * a maxSeqLen that leaves no conversation fails this stage, naming the
 * shortest length, before anything trains.
 */
export const MIN_SEQ_LEN = 32

export const TokenizeParams = Schema.Struct({
  maxSeqLen: withDefault(Schema.Int.check(Schema.isBetween({ minimum: MIN_SEQ_LEN, maximum: 262144 })), 384),
  overflow: withDefault(Schema.Literals(["drop", "truncate"]), "drop"),
  packing: withDefault(Schema.Boolean, false)
})

/** Loads a model directory's tokenizer (native) and its added tokens. */
export const loadEncoder = async (modelDir: string) => {
  const file = path.join(modelDir, "tokenizer.json")
  const json = JSON.parse(fs.readFileSync(file, "utf8")) as { added_tokens: Array<AddedToken>; model: { vocab: Record<string, number> } }
  const { Tokenizer } = (await import("@anush008/tokenizers")).default
  const tokenizer = Tokenizer.fromFile(file)
  const vocabSize = Object.keys(json.model.vocab).length + json.added_tokens.length
  return { encoder: new Encoder(tokenizer, json.added_tokens), digest: Digest.ofFile(file).digest, vocabSize }
}

/** Greedy in-order packing of examples into windows of at most `maxSeqLen` tokens. */
export const pack = (lengths: ReadonlyArray<number>, maxSeqLen: number): Array<number> => {
  const starts: Array<number> = [0]
  let inWindow = 0
  let at = 0
  for (const n of lengths) {
    if (inWindow > 0 && inWindow + n > maxSeqLen) {
      starts.push(at)
      inWindow = 0
    }
    inWindow += n
    at += n
  }
  starts.push(at)
  return lengths.length === 0 ? [0] : starts
}

const histogram = (lengths: ReadonlyArray<number>): Record<string, number> => {
  const h: Record<string, number> = {}
  for (const n of lengths) {
    const lo = Math.floor(n / 64) * 64
    const k = `${lo}-${lo + 63}`
    h[k] = (h[k] ?? 0) + 1
  }
  return Object.fromEntries(Object.entries(h).sort(([a], [b]) => Number(a.split("-")[0]) - Number(b.split("-")[0])))
}

export const tokenize = Stage.make({
  name: "tokenize",
  description: "token ids and loss masks with the model's tokenizer",
  module: import.meta.url,
  params: { tokenize: TokenizeParams },
  inputs: { train: split.out.train, val: split.out.val, model: download.out.model },
  outputs: {
    train: Stage.file("train.bin"),
    val: Stage.file("val.bin"),
    /** one line per example kept in val.bin, in its order: the source row's line and intent (eval samples across intents) */
    valExamples: Stage.file("val-examples.jsonl"),
    stats: Stage.file("stats.json", { metrics: true })
  },
  // ~1 token per 4 characters of rendered JSONL (which repeats the text 2×), 5 bytes a token
  estimate: ({ inputSizes }) => ({
    bytes: { train: Math.round((inputSizes["train"] ?? 0) * 0.7), val: Math.round((inputSizes["val"] ?? 0) * 0.7), valExamples: Math.round((inputSizes["val"] ?? 0) / 100) + 1000, stats: 4000 },
    seconds: 2 + ((inputSizes["train"] ?? 0) + (inputSizes["val"] ?? 0)) / 30e6
  }),
  run: (ctx) =>
    Effect.gen(function* () {
      const { maxSeqLen, overflow, packing } = ctx.params.tokenize
      const { encoder, digest, vocabSize } = yield* Effect.tryPromise({
        try: () => loadEncoder(ctx.inputs.model),
        catch: (e) => new StageError({ message: `tokenizer: ${(e as Error).message}` })
      })
      const cfg = JSON.parse(fs.readFileSync(path.join(ctx.inputs.model, "config.json"), "utf8")) as { vocab_size: number }
      const stats: Record<string, unknown> = { tokenizer: digest }
      for (const part of ["train", "val"] as const) {
        const convs = readJsonl<Conversation>(ctx.inputs[part])
        const encoded = yield* Effect.promise(() => encoder.encodeAll(convs.map((c) => c.text)))
        const kept: Array<Encoded> = []
        const keptFrom: Array<Conversation> = []
        let dropped = 0
        let truncated = 0
        encoded.forEach((e, i) => {
          if (e.ids.length <= maxSeqLen) kept.push(e)
          else if (overflow === "drop") return void dropped++
          else if (e.mask.subarray(0, maxSeqLen).some((m) => m !== 0)) {
            truncated++
            kept.push({ ids: e.ids.subarray(0, maxSeqLen), mask: e.mask.subarray(0, maxSeqLen) })
          } else return void dropped++ // cut before the first assistant token: nothing left to learn from
          keptFrom.push(convs[i]!)
        })
        if (kept.length === 0) {
          const shortest = encoded.reduce((a, e) => Math.min(a, e.ids.length), Infinity)
          return yield* new StageError({
            message: `tokenize.maxSeqLen ${maxSeqLen} leaves none of the ${encoded.length} ${part} conversations (the shortest has ${shortest} tokens${overflow === "truncate" ? ", and truncation cuts off every answer" : ""}); raise maxSeqLen`
          })
        }
        const lengths = kept.map((e) => e.ids.length)
        const { ids, mask, offsets: exampleOffsets } = Format.concat(kept)
        const total = ids.length
        const sequenceOffsets = packing ? Uint32Array.from(pack(lengths, maxSeqLen)) : exampleOffsets
        const trained = mask.reduce((a, b) => a + b, 0)
        Format.write(ctx.outputs[part], {
          header: {
            format: 1,
            tokenizer: { digest, vocabSize, modelVocabSize: cfg.vocab_size },
            special: { ...SPECIAL },
            maxSeqLen,
            packing,
            tokens: total,
            examples: kept.length,
            sequences: sequenceOffsets.length - 1
          },
          ids,
          mask,
          exampleOffsets,
          sequenceOffsets
        })
        if (part === "val") writeJsonl(ctx.outputs.valExamples, keptFrom.map((c) => ({ line: c.line, intent: c.intent })))
        stats[part] = {
          examples: kept.length,
          sequences: sequenceOffsets.length - 1,
          dropped,
          truncated,
          tokens: total,
          trainedTokens: trained,
          maxLength: lengths.reduce((a, b) => Math.max(a, b), 0),
          lengthHistogram: histogram(encoded.map((e) => e.ids.length))
        }
        yield* ctx.log(`${part}: ${kept.length} examples, ${total} tokens (${trained} trained), ${dropped} dropped, ${truncated} truncated`)
      }
      // how much the piece memo saved: repeated system prompts and tool schemas hit, real variety misses
      const { pieces, tokenized } = encoder.counts
      stats["memo"] = { pieces, tokenized, hitRate: pieces === 0 ? 0 : Math.round((1 - tokenized / pieces) * 10000) / 10000 }
      fs.writeFileSync(ctx.outputs.stats, JSON.stringify(stats, null, 2) + "\n")
    })
})
