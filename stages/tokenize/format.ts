/**
 * The tokenized format the trainer reads without parsing JSON per example.
 *
 *   bytes 0..8   magic "FTTOKv1\0"
 *   u32          H, length of the header
 *   H bytes      JSON header (format, tokenizer digest, vocab sizes, special ids, counts), padded to 4
 *   u32[T]       token ids
 *   u8[T]        loss mask: 1 where the token is trained on, padded to 4
 *   u32[E+1]     example offsets (one conversation each)
 *   u32[S+1]     sequence offsets (training sequences: equal to the examples
 *                unless packing put several short examples in one window)
 *
 * All little-endian.
 */
import * as fs from "node:fs"

export const MAGIC = Buffer.from("FTTOKv1\0", "latin1")

export interface Header {
  readonly format: 1
  readonly tokenizer: { readonly digest: string; readonly vocabSize: number; readonly modelVocabSize: number }
  readonly special: Readonly<Record<string, number>>
  readonly maxSeqLen: number
  readonly packing: boolean
  readonly tokens: number
  readonly examples: number
  readonly sequences: number
}

export interface Tokenized {
  readonly header: Header
  readonly ids: Uint32Array
  readonly mask: Uint8Array
  readonly exampleOffsets: Uint32Array
  readonly sequenceOffsets: Uint32Array
}

const pad4 = (n: number) => (4 - (n % 4)) % 4

/** Examples laid end to end: their ids and masks, and where each starts (offsets [n + 1]). */
export const concat = (
  examples: ReadonlyArray<{ readonly ids: ArrayLike<number>; readonly mask: ArrayLike<number> }>
): { ids: Uint32Array; mask: Uint8Array; offsets: Uint32Array } => {
  const total = examples.reduce((a, e) => a + e.ids.length, 0)
  const ids = new Uint32Array(total)
  const mask = new Uint8Array(total)
  const offsets = new Uint32Array(examples.length + 1)
  let at = 0
  examples.forEach((e, i) => {
    offsets[i] = at
    ids.set(e.ids, at)
    mask.set(e.mask, at)
    at += e.ids.length
  })
  offsets[examples.length] = at
  return { ids, mask, offsets }
}

export const write = (file: string, t: Tokenized): void => {
  const json = Buffer.from(JSON.stringify(t.header))
  const len = Buffer.alloc(4)
  len.writeUInt32LE(json.length)
  const parts = [
    MAGIC,
    len,
    json,
    Buffer.alloc(pad4(json.length)),
    Buffer.from(t.ids.buffer, t.ids.byteOffset, t.ids.byteLength),
    Buffer.from(t.mask.buffer, t.mask.byteOffset, t.mask.byteLength),
    Buffer.alloc(pad4(t.mask.byteLength)),
    Buffer.from(t.exampleOffsets.buffer, t.exampleOffsets.byteOffset, t.exampleOffsets.byteLength),
    Buffer.from(t.sequenceOffsets.buffer, t.sequenceOffsets.byteOffset, t.sequenceOffsets.byteLength)
  ]
  fs.writeFileSync(file, Buffer.concat(parts))
}

export const read = (file: string): Tokenized => {
  let buf: Buffer
  try {
    buf = fs.readFileSync(file)
  } catch (e) {
    throw new Error(`${file === "" ? "(no file name)" : file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  if (!buf.subarray(0, 8).equals(MAGIC)) throw new Error(`${file}: not a tokenized file (bad magic)`)
  const h = buf.readUInt32LE(8)
  const header = JSON.parse(buf.subarray(12, 12 + h).toString("utf8")) as Header
  let at = 12 + h + pad4(h)
  const u32 = (n: number) => {
    const a = new Uint32Array(n)
    Buffer.from(a.buffer).set(buf.subarray(at, at + 4 * n))
    at += 4 * n
    return a
  }
  const ids = u32(header.tokens)
  const mask = new Uint8Array(buf.subarray(at, at + header.tokens))
  at += header.tokens + pad4(header.tokens)
  const exampleOffsets = u32(header.examples + 1)
  const sequenceOffsets = u32(header.sequences + 1)
  if (at !== buf.length) throw new Error(`${file}: ${buf.length - at} trailing bytes`)
  return { header, ids, mask, exampleOffsets, sequenceOffsets }
}
