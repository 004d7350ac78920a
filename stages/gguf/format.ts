/**
 * GGUF v3, written from its specification (ggml's docs/gguf.md): a header (magic "GGUF",
 * version 3, tensor count, metadata count), the metadata key/values, one info record per
 * tensor (name, dimensions innermost first, ggml type, offset into the data section), padding
 * to `general.alignment` (32), then each tensor's bytes, each padded to the alignment.
 * Little-endian throughout; strings are a u64 length and UTF-8 bytes.
 *
 * The size of the whole file is known before a byte is written (`layout`), so the stage can
 * report it to the planner and check the disk first. Tensor data is produced one tensor at a
 * time (`bytes()` is called when its turn comes), so memory stays near the largest tensor.
 */
import * as fs from "node:fs"

export const ALIGNMENT = 32

/** ggml type ids (ggml.h), the ones this writer produces */
export const GgmlType = { F32: 0, F16: 1, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14 } as const
export type GgmlType = (typeof GgmlType)[keyof typeof GgmlType]
export const GGML_TYPE_NAME: Record<GgmlType, string> = { 0: "F32", 1: "F16", 8: "Q8_0", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K" }

/** [values per block, bytes per block] */
const BLOCK: Record<GgmlType, readonly [number, number]> = { 0: [1, 4], 1: [1, 2], 8: [32, 34], 12: [256, 144], 13: [256, 176], 14: [256, 210] }

/** bytes of a tensor of `ne0 × rows` values of `type` */
export const tensorBytes = (type: GgmlType, dims: ReadonlyArray<number>): number => {
  const [per, bytes] = BLOCK[type]
  const ne0 = dims[0]!
  if (ne0 % per !== 0) throw new Error(`a row of ${ne0} values is not a whole number of ${GGML_TYPE_NAME[type]} blocks (${per})`)
  return (ne0 / per) * bytes * dims.slice(1).reduce((a, b) => a * b, 1)
}

/** A metadata value with its GGUF type. */
export type Value =
  | { readonly t: "u32" | "i32" | "f32" | "u64"; readonly v: number }
  | { readonly t: "bool"; readonly v: boolean }
  | { readonly t: "string"; readonly v: string }
  | { readonly t: "strings"; readonly v: ReadonlyArray<string> }
  | { readonly t: "i32s"; readonly v: ReadonlyArray<number> }

const VT = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10 } as const

export const u32 = (v: number): Value => ({ t: "u32", v })
export const f32 = (v: number): Value => ({ t: "f32", v })
export const bool = (v: boolean): Value => ({ t: "bool", v })
export const str = (v: string): Value => ({ t: "string", v })
export const strings = (v: ReadonlyArray<string>): Value => ({ t: "strings", v })
export const i32s = (v: ReadonlyArray<number>): Value => ({ t: "i32s", v })

export interface TensorSpec {
  readonly name: string
  /** innermost first: a Hugging Face [out, in] weight is [in, out] here */
  readonly dims: ReadonlyArray<number>
  readonly type: GgmlType
  /** the tensor's bytes, produced when it is written, in consecutive pieces */
  readonly chunks: () => Iterable<Uint8Array>
}

const pad = (n: number) => (ALIGNMENT - (n % ALIGNMENT)) % ALIGNMENT

/** A growing little-endian buffer. */
class Out {
  private buf = Buffer.alloc(1 << 16)
  length = 0
  private room(n: number) {
    if (this.length + n <= this.buf.length) return
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n))
    this.buf.copy(next, 0, 0, this.length)
    this.buf = next
  }
  private put(n: number, write: (buf: Buffer, at: number) => void) {
    this.room(n)
    write(this.buf, this.length)
    this.length += n
  }
  u32(v: number) {
    this.put(4, (b, at) => b.writeUInt32LE(v, at))
  }
  i32(v: number) {
    this.put(4, (b, at) => b.writeInt32LE(v, at))
  }
  u64(v: number) {
    this.put(8, (b, at) => b.writeBigUInt64LE(BigInt(v), at))
  }
  f32(v: number) {
    this.put(4, (b, at) => b.writeFloatLE(v, at))
  }
  u8(v: number) {
    this.room(1)
    this.buf[this.length++] = v
  }
  str(s: string) {
    const b = Buffer.from(s, "utf8")
    this.u64(b.length)
    this.room(b.length)
    b.copy(this.buf, this.length)
    this.length += b.length
  }
  zeros(n: number) {
    this.room(n)
    this.buf.fill(0, this.length, this.length + n)
    this.length += n
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length)
  }
}

const writeValue = (o: Out, value: Value) => {
  switch (value.t) {
    case "u32":
      o.u32(VT.u32)
      return o.u32(value.v)
    case "i32":
      o.u32(VT.i32)
      return o.i32(value.v)
    case "f32":
      o.u32(VT.f32)
      return o.f32(value.v)
    case "u64":
      o.u32(VT.u64)
      return o.u64(value.v)
    case "bool":
      o.u32(VT.bool)
      return o.u8(value.v ? 1 : 0)
    case "string":
      o.u32(VT.string)
      return o.str(value.v)
    case "strings":
      o.u32(VT.array)
      o.u32(VT.string)
      o.u64(value.v.length)
      for (const s of value.v) o.str(s)
      return
    case "i32s":
      o.u32(VT.array)
      o.u32(VT.i32)
      o.u64(value.v.length)
      for (const x of value.v) o.i32(x)
      return
  }
}

export interface Layout {
  readonly header: Buffer
  /** offset of each tensor in the data section */
  readonly offsets: ReadonlyArray<number>
  readonly sizes: ReadonlyArray<number>
  /** bytes of the whole file */
  readonly total: number
}

/** The header (metadata and tensor infos, padded) and where every tensor goes. */
export const layout = (metadata: ReadonlyArray<readonly [string, Value]>, tensors: ReadonlyArray<Omit<TensorSpec, "chunks">>): Layout => {
  const seen = new Set<string>()
  for (const [k] of metadata) {
    if (seen.has(k)) throw new Error(`GGUF metadata key ${k} twice`)
    seen.add(k)
  }
  const o = new Out()
  o.u32(0x46554747) // "GGUF"
  o.u32(3)
  o.u64(tensors.length)
  o.u64(metadata.length)
  for (const [k, v] of metadata) {
    o.str(k)
    writeValue(o, v)
  }
  const offsets: Array<number> = []
  const sizes: Array<number> = []
  let at = 0
  for (const t of tensors) {
    const size = tensorBytes(t.type, t.dims)
    o.str(t.name)
    o.u32(t.dims.length)
    for (const d of t.dims) o.u64(d)
    o.u32(t.type)
    o.u64(at)
    offsets.push(at)
    sizes.push(size)
    at += size + pad(size)
  }
  o.zeros(pad(o.length))
  const header = Buffer.from(o.bytes())
  const last = sizes.length ? offsets.at(-1)! + sizes.at(-1)! : 0
  return { header, offsets, sizes, total: header.length + last }
}

/**
 * A GGUF file being written, tensor by tensor, to a temporary file beside `file`: `put` each
 * tensor's bytes in the order of the layout, then `finish` (fsync, rename) or `abort`.
 */
export interface GgufWriter {
  readonly layout: Layout
  /** the next bytes of the current tensor: whole, or consecutive pieces (whole rows of blocks) */
  put(data: Uint8Array): void
  finish(): number
  abort(): void
}

export const openGguf = (file: string, metadata: ReadonlyArray<readonly [string, Value]>, tensors: ReadonlyArray<Omit<TensorSpec, "chunks">>): GgufWriter => {
  const plan = layout(metadata, tensors)
  const tmp = `${file}.tmp-${process.pid}`
  const fd = fs.openSync(tmp, "w")
  let open = true
  let next = 0
  let inTensor = 0
  let written = 0
  const zeros = Buffer.alloc(ALIGNMENT)
  const close = () => {
    if (open) fs.closeSync(fd)
    open = false
  }
  const abort = () => {
    close()
    fs.rmSync(tmp, { force: true })
  }
  const write = (data: Uint8Array) => {
    let off = 0
    while (off < data.byteLength) off += fs.writeSync(fd, data, off, data.byteLength - off)
    written += data.byteLength
  }
  try {
    write(plan.header)
  } catch (e) {
    abort()
    throw e
  }
  return {
    layout: plan,
    put(data) {
      try {
        const t = tensors[next]
        if (!t) throw new Error(`${file}: more tensors than the layout's ${tensors.length}`)
        if (inTensor + data.byteLength > plan.sizes[next]!) throw new Error(`tensor ${t.name}: ${inTensor + data.byteLength} bytes produced, ${plan.sizes[next]} expected`)
        const start = plan.header.length + plan.offsets[next]!
        if (inTensor === 0 && written < start) write(zeros.subarray(0, start - written))
        write(data)
        inTensor += data.byteLength
        if (inTensor === plan.sizes[next]) {
          next++
          inTensor = 0
        }
      } catch (e) {
        abort()
        throw e
      }
    },
    finish() {
      try {
        if (next !== tensors.length) throw new Error(`${file}: ${next} of ${tensors.length} tensors written`)
        if (written !== plan.total) throw new Error(`${file}: wrote ${written} bytes, planned ${plan.total}`)
        fs.fsyncSync(fd)
        close()
        fs.renameSync(tmp, file)
        return written
      } catch (e) {
        abort()
        throw e
      }
    },
    abort
  }
}

/** Writes a whole GGUF file (see openGguf); `progress` hears after each tensor. Returns its size. */
export const writeGguf = (
  file: string,
  metadata: ReadonlyArray<readonly [string, Value]>,
  tensors: ReadonlyArray<TensorSpec>,
  progress?: (done: number, total: number) => void
): number => {
  const w = openGguf(file, metadata, tensors)
  tensors.forEach((t, i) => {
    try {
      for (const piece of t.chunks()) w.put(piece)
    } catch (e) {
      w.abort()
      throw e
    }
    progress?.(i + 1, tensors.length)
  })
  return w.finish()
}
