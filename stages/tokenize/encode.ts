/**
 * Rendered conversations → token ids and loss masks.
 *
 * Speed comes from tokenizing each distinct piece of text once. A text is cut
 * into pieces at the tokenizer's added tokens (<|im_start|>, <tool_call>, …:
 * the tokenizer splits them out before anything else) and, inside those
 * segments, right after a newline that is followed by a non-space character.
 * The Qwen pre-tokenizer's pattern always ends a pre-token there (every
 * alternative that can hold a newline ends with the newline run), NFC does
 * not compose across a newline, and byte-level BPE works inside pre-tokens, so
 * the ids of the pieces concatenated are the ids of the whole text. The tests
 * check this against the pure-JS tokenizer on every sample row. Tool schemas
 * and template boilerplate repeat in every system turn; they are tokenized
 * once.
 *
 * Labels: only assistant turns are trained on, their content and the closing
 * <|im_end|>, never the `<|im_start|>assistant\n` header. A token that starts
 * in the header belongs to it: when the content itself starts with newlines,
 * they merge with the header's newline into one token, which is not trained on.
 */

export interface NativeEncoding {
  getIds(): Array<number>
  getOffsets(): Array<Array<number>>
}
export interface BatchTokenizer {
  encodeBatch(texts: Array<string>, options?: { addSpecialTokens?: boolean }): Promise<Array<NativeEncoding>>
}

export interface AddedToken {
  readonly id: number
  readonly content: string
}

export interface Encoded {
  readonly ids: Uint32Array
  /** 1 where the token is trained on */
  readonly mask: Uint8Array
}

type Piece = { readonly special: number } | { readonly text: string; readonly role: string | undefined; readonly header: boolean }

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

export class Encoder {
  private readonly addedRe: RegExp
  private readonly addedIds: Map<string, number>
  private readonly imStart: number
  private readonly imEnd: number
  private readonly memo = new Map<string, { ids: Array<number>; offsets?: Array<Array<number>> }>()
  /** text pieces looked up, and how many of them went to the tokenizer (the rest were in the memo) */
  readonly counts = { pieces: 0, tokenized: 0 }

  private readonly tokenizer: BatchTokenizer

  constructor(tokenizer: BatchTokenizer, added: ReadonlyArray<AddedToken>) {
    this.tokenizer = tokenizer
    this.addedIds = new Map(added.map((t) => [t.content, t.id]))
    const sorted = [...added].sort((a, b) => b.content.length - a.content.length)
    this.addedRe = new RegExp(sorted.map((t) => escape(t.content)).join("|"), "g")
    this.imStart = this.addedIds.get("<|im_start|>")!
    this.imEnd = this.addedIds.get("<|im_end|>")!
  }

  /** Splits a text into special tokens and text pieces, each text piece tagged with its turn's role. */
  private pieces(text: string): Array<Piece> {
    const out: Array<Piece> = []
    let role: string | undefined
    let afterStart = false
    let last = 0
    const pushText = (seg: string) => {
      if (seg === "") return
      let first = true
      let from = 0
      for (let i = 0; i < seg.length - 1; i++) {
        if (seg.charCodeAt(i) === 10 && !/\s/.test(seg[i + 1]!)) {
          out.push({ text: seg.slice(from, i + 1), role, header: first && afterStart })
          first = false
          from = i + 1
        }
      }
      out.push({ text: seg.slice(from), role, header: first && afterStart })
      afterStart = false
    }
    for (const m of text.matchAll(this.addedRe)) {
      const seg = text.slice(last, m.index)
      if (afterStart) role = /^(\w+)/.exec(seg)?.[1]
      pushText(seg)
      const id = this.addedIds.get(m[0])!
      out.push({ special: id })
      if (id === this.imStart) afterStart = true
      last = m.index + m[0].length
    }
    const tail = text.slice(last)
    if (afterStart) role = /^(\w+)/.exec(tail)?.[1]
    pushText(tail)
    return out
  }

  /** Encodes many rendered conversations; distinct pieces go to the tokenizer once, in one batch. */
  async encodeAll(texts: ReadonlyArray<string>): Promise<Array<Encoded>> {
    const split = texts.map((t) => this.pieces(t))
    const todo = new Set<string>()
    for (const ps of split)
      for (const p of ps) {
        if (!("text" in p)) continue
        this.counts.pieces++
        if (!this.memo.has(p.text)) todo.add(p.text)
      }
    const list = [...todo]
    this.counts.tokenized += list.length
    const CHUNK = 8192
    for (let i = 0; i < list.length; i += CHUNK) {
      const batch = list.slice(i, i + CHUNK)
      const enc = await this.tokenizer.encodeBatch(batch, { addSpecialTokens: false })
      batch.forEach((s, j) => this.memo.set(s, { ids: enc[j]!.getIds(), offsets: s.startsWith("assistant\n") && s !== "assistant\n" ? enc[j]!.getOffsets() : undefined }))
    }
    return split.map((ps) => this.assemble(ps))
  }

  private assemble(ps: ReadonlyArray<Piece>): Encoded {
    let n = 0
    for (const p of ps) n += "special" in p ? 1 : this.memo.get(p.text)!.ids.length
    const ids = new Uint32Array(n)
    const mask = new Uint8Array(n)
    let k = 0
    let inAssistant = false
    for (const p of ps) {
      if ("special" in p) {
        ids[k] = p.special
        // the closing <|im_end|> of an assistant turn is trained on; the next <|im_start|> is not
        mask[k] = inAssistant ? 1 : 0
        if (p.special === this.imEnd) inAssistant = false
        k++
        continue
      }
      const { ids: pieceIds, offsets } = this.memo.get(p.text)!
      const assistant = p.role === "assistant"
      if (p.header && assistant) inAssistant = true
      for (let j = 0; j < pieceIds.length; j++) {
        ids[k] = pieceIds[j]!
        // header tokens: the piece's first "assistant\n" characters
        const inHeader = p.header && (offsets ? (offsets[j]?.[0] ?? 0) < "assistant\n".length : true)
        mask[k] = inAssistant && !(p.header && inHeader) ? 1 : 0
        k++
      }
    }
    return { ids, mask }
  }
}
