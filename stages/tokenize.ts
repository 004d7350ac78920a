/**
 * tokenize: conversations → the binary layout the trainer reads.
 *
 * Layout of a `.bin` file: u32 LE header length, a JSON header (tokenizer,
 * vocab size, special ids, counts), then u32 token ids, u8 loss mask (1 where
 * the token is trained on), and u32 sequence offsets (n + 1 of them).
 *
 * Today the ids are UTF-8 bytes (a stand-in, named as such in the header) so
 * the layout, the loss mask rules and the overflow policy work end to end; the
 * real Qwen3 tokenizer and chat template arrive with issue #3.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import { Stage } from "../engine/index.ts"
import { readJsonl } from "./lib/jsonl.ts"
import { withDefault } from "./lib/schema.ts"
import { download } from "./download.ts"
import { split } from "./split.ts"
import type { Conversation } from "./toolcalls.ts"

export const TokenizeParams = Schema.Struct({
  maxSeqLen: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 16, maximum: 262144 })), 384),
  overflow: withDefault(Schema.Literals(["drop", "truncate"]), "drop"),
  packing: withDefault(Schema.Boolean, false)
})

interface Encoded {
  ids: Array<number>
  mask: Array<number>
}

const encode = (c: Conversation): Encoded => {
  const ids: Array<number> = []
  const mask: Array<number> = []
  for (const m of c.messages) {
    const head = Buffer.from(`<|im_start|>${m.role}\n`)
    const body = Buffer.from(`${m.content}<|im_end|>\n`)
    for (const b of head) (ids.push(b), mask.push(0))
    for (const b of body) (ids.push(b), mask.push(m.role === "assistant" ? 1 : 0))
  }
  return { ids, mask }
}

const writeBin = (file: string, seqs: ReadonlyArray<Encoded>, header: Record<string, unknown>) => {
  const total = seqs.reduce((a, s) => a + s.ids.length, 0)
  const ids = new Uint32Array(total)
  const mask = new Uint8Array(total)
  const offsets = new Uint32Array(seqs.length + 1)
  let o = 0
  seqs.forEach((s, i) => {
    offsets[i] = o
    ids.set(s.ids, o)
    mask.set(s.mask, o)
    o += s.ids.length
  })
  offsets[seqs.length] = o
  const json = Buffer.from(JSON.stringify({ ...header, sequences: seqs.length, tokens: total }))
  const len = Buffer.alloc(4)
  len.writeUInt32LE(json.length)
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.from(ids.buffer), Buffer.from(mask), Buffer.from(offsets.buffer)]))
}

export const tokenize = Stage.make({
  name: "tokenize",
  description: "token ids and loss masks (Qwen3 tokenizer: #3)",
  module: import.meta.url,
  params: { tokenize: TokenizeParams },
  inputs: { train: split.out.train, val: split.out.val, model: download.out.model },
  outputs: { train: Stage.file("train.bin"), val: Stage.file("val.bin"), stats: Stage.file("stats.json", { metrics: true }) },
  estimate: ({ inputSizes }) => ({
    bytes: { train: Math.round((inputSizes["train"] ?? 0) * 5), val: Math.round((inputSizes["val"] ?? 0) * 5), stats: 2000 },
    seconds: 1 + ((inputSizes["train"] ?? 0) + (inputSizes["val"] ?? 0)) / 20e6
  }),
  run: (ctx) =>
    Effect.gen(function* () {
      const { maxSeqLen, overflow } = ctx.params.tokenize
      const stats: Record<string, unknown> = {}
      for (const part of ["train", "val"] as const) {
        const seqs: Array<Encoded> = []
        let dropped = 0
        let truncated = 0
        for (const c of readJsonl<Conversation>(ctx.inputs[part])) {
          const e = encode(c)
          if (e.ids.length > maxSeqLen) {
            if (overflow === "drop") {
              dropped++
              continue
            }
            e.ids.length = maxSeqLen
            e.mask.length = maxSeqLen
            truncated++
          }
          seqs.push(e)
        }
        writeBin(ctx.outputs[part], seqs, { tokenizer: "utf8-bytes (stand-in until #3)", vocabSize: 256, maxSeqLen })
        stats[part] = { sequences: seqs.length, dropped, truncated, tokens: seqs.reduce((a, s) => a + s.ids.length, 0) }
        yield* ctx.log(`${part}: ${seqs.length} sequences, ${dropped} dropped, ${truncated} truncated`)
      }
      fs.writeFileSync(ctx.outputs.stats, JSON.stringify(stats, null, 2) + "\n")
    })
})
