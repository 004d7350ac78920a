/**
 * safetensors: u64 little-endian header length, a JSON header mapping tensor
 * names to { dtype, shape, data_offsets }, then the raw little-endian data.
 * (Format: https://github.com/huggingface/safetensors, "Format" section.)
 *
 * The one reader and writer of the project: checkpoints (stages/lib/checkpoint.ts),
 * merge, the model check and the tiny model all go through it.
 */
import * as fs from "node:fs"

export type Dtype = "F32" | "F16" | "BF16"

export interface TensorInfo {
  readonly dtype: Dtype
  readonly shape: ReadonlyArray<number>
  readonly data_offsets: readonly [number, number]
}

export const BYTES: Record<Dtype, number> = { F32: 4, F16: 2, BF16: 2 }

export interface Tensor {
  readonly name: string
  readonly dtype: Dtype
  readonly shape: ReadonlyArray<number>
  readonly data: Uint8Array
}

export const write = (file: string, tensors: ReadonlyArray<Tensor>, metadata: Record<string, string> = {}): void => {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] }
    offset += t.data.byteLength
  }
  let json = JSON.stringify(header)
  json += " ".repeat((8 - (json.length % 8)) % 8)
  const fd = fs.openSync(file, "w")
  try {
    const len = Buffer.alloc(8)
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)))
    fs.writeSync(fd, len)
    fs.writeSync(fd, json)
    for (const t of tensors) fs.writeSync(fd, t.data)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * A safetensors file written tensor by tensor: the header (every name, dtype and shape) is
 * known first, then each tensor's bytes are `put` in order, so memory holds one tensor at a
 * time. Written to a temporary file beside `file` and renamed by `finish`.
 */
export interface StreamWriter {
  /** the next bytes of the current tensor (a whole tensor, or consecutive pieces of it) */
  put(data: Uint8Array): void
  finish(): void
  abort(): void
}

export const openWriter = (file: string, tensors: ReadonlyArray<Omit<Tensor, "data">>, metadata: Record<string, string> = {}): StreamWriter => {
  const header: Record<string, unknown> = { __metadata__: metadata }
  const sizes: Array<number> = []
  let offset = 0
  for (const t of tensors) {
    const size = BYTES[t.dtype] * t.shape.reduce((a, b) => a * b, 1)
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] }
    sizes.push(size)
    offset += size
  }
  let json = Buffer.from(JSON.stringify(header), "utf8")
  json = Buffer.concat([json, Buffer.from(" ".repeat((8 - (json.length % 8)) % 8))])
  const tmp = `${file}.tmp-${process.pid}`
  const fd = fs.openSync(tmp, "w")
  let open = true
  let next = 0
  let inTensor = 0
  const abort = () => {
    if (open) fs.closeSync(fd)
    open = false
    fs.rmSync(tmp, { force: true })
  }
  const write = (b: Uint8Array) => {
    let off = 0
    while (off < b.byteLength) off += fs.writeSync(fd, b, off, b.byteLength - off)
  }
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(json.length))
  try {
    write(len)
    write(json)
  } catch (e) {
    abort()
    throw e
  }
  return {
    put(data) {
      // a tensor's bytes, whole or in consecutive pieces
      const t = tensors[next]
      if (!t || inTensor + data.byteLength > sizes[next]!) {
        abort()
        throw new SafetensorsError(`${file}: ${t ? `${t.name}: ${inTensor + data.byteLength} bytes given, ${sizes[next]} expected` : "more tensors than declared"}`)
      }
      try {
        write(data)
      } catch (e) {
        abort()
        throw e
      }
      inTensor += data.byteLength
      if (inTensor === sizes[next]) {
        next++
        inTensor = 0
      }
    },
    finish() {
      if (next !== tensors.length) {
        abort()
        throw new SafetensorsError(`${file}: ${next} of ${tensors.length} tensors written`)
      }
      fs.fsyncSync(fd)
      fs.closeSync(fd)
      open = false
      fs.renameSync(tmp, file)
    },
    abort
  }
}

/** Bytes per element of every dtype the format defines. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8
}

/** A file that is not valid safetensors; the message names the file (and the tensor). */
export class SafetensorsError extends Error {}

/** Headers are small (a 36-layer model's is ~40 kB); this bound refuses garbage lengths before allocating. */
const MAX_HEADER = 100_000_000

/**
 * Reads and checks the header: its length fits the file, it is a JSON object,
 * and every tensor has a known dtype, a shape of whole numbers, and data
 * offsets inside the data section whose span is exactly shape × dtype bytes,
 * so reading a tensor can never run past the end of the file.
 */
export const readHeader = (file: string): { header: Record<string, TensorInfo>; dataStart: number } => {
  const fail = (why: string): never => {
    throw new SafetensorsError(`${file}: ${why}`)
  }
  let fd: number
  try {
    fd = fs.openSync(file, "r")
  } catch (e) {
    return fail((e as NodeJS.ErrnoException).code === "ENOENT" ? "missing" : `cannot be read (${(e as NodeJS.ErrnoException).code})`)
  }
  try {
    const size = fs.fstatSync(fd).size
    const len = Buffer.alloc(8)
    if (size < 8 || fs.readSync(fd, len, 0, 8, 0) !== 8) return fail(`bad safetensors header length: the file is only ${size} bytes`)
    const n = Number(len.readBigUInt64LE())
    if (n < 2 || n > MAX_HEADER || 8 + n > size) return fail(`bad safetensors header length ${n} (the file is ${size} bytes)`)
    const buf = Buffer.alloc(n)
    fs.readSync(fd, buf, 0, n, 8)
    let parsed: unknown
    try {
      parsed = JSON.parse(buf.toString("utf8"))
    } catch {
      return fail("the safetensors header is not JSON")
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return fail("the safetensors header is not a JSON object")
    const dataSize = size - 8 - n
    const header: Record<string, TensorInfo> = {}
    for (const [name, t] of Object.entries(parsed as Record<string, unknown>)) {
      if (name === "__metadata__") continue
      const info = t as Partial<TensorInfo> | null
      if (typeof info !== "object" || info === null) return fail(`${name}: not a tensor entry`)
      const bytes = typeof info.dtype === "string" ? DTYPE_BYTES[info.dtype] : undefined
      if (bytes === undefined) return fail(`${name}: unknown dtype ${JSON.stringify(info.dtype)}`)
      const shape = info.shape
      if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) return fail(`${name}: shape must be a list of whole numbers`)
      const off = info.data_offsets
      if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0]! > off[1]!)
        return fail(`${name}: data_offsets must be two whole numbers [begin, end]`)
      const [a, b] = off as [number, number]
      if (b > dataSize) return fail(`${name}: data runs past the end of the file (offsets ${a}..${b}, ${dataSize} bytes of data)`)
      const count = (shape as Array<number>).reduce((x, y) => x * y, 1)
      if (b - a !== count * bytes) return fail(`${name}: ${b - a} bytes of data for shape [${shape.join(", ")}] of ${info.dtype} (${count * bytes} expected)`)
      header[name] = { dtype: info.dtype as Dtype, shape: shape as Array<number>, data_offsets: [a, b] }
    }
    return { header, dataStart: 8 + n }
  } finally {
    fs.closeSync(fd)
  }
}

/** fp32 → bf16 bits, round to nearest even. */
export const toBf16 = (x: Float32Array): Uint16Array => {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length)
  const out = new Uint16Array(x.length)
  for (let i = 0; i < u.length; i++) {
    const v = u[i]!
    out[i] = (v + 0x7fff + ((v >>> 16) & 1)) >>> 16
  }
  return out
}

/** bf16 bits → fp32. */
export const fromBf16 = (b: Uint16Array): Float32Array => {
  const u = new Uint32Array(b.length)
  for (let i = 0; i < b.length; i++) u[i] = b[i]! << 16
  return new Float32Array(u.buffer)
}

/** fp32 → IEEE fp16 bits, round to nearest even, with subnormals and inf. */
export const toF16 = (x: Float32Array): Uint16Array => {
  const out = new Uint16Array(x.length)
  const f = new Float32Array(1)
  const u = new Uint32Array(f.buffer)
  for (let i = 0; i < x.length; i++) {
    f[0] = x[i]!
    const v = u[0]!
    const sign = (v >>> 16) & 0x8000
    const exp = (v >>> 23) & 0xff
    let mant = v & 0x7fffff
    if (exp === 0xff) out[i] = sign | 0x7c00 | (mant ? 0x200 : 0)
    else {
      const e = exp - 127 + 15
      if (e >= 0x1f) out[i] = sign | 0x7c00
      else if (e <= 0) {
        if (e < -10) out[i] = sign
        else {
          mant |= 0x800000
          const shift = 14 - e
          const half = 1 << (shift - 1)
          let m = mant >>> shift
          const rest = mant & ((1 << shift) - 1)
          if (rest > half || (rest === half && (m & 1))) m++
          out[i] = sign | m
        }
      } else {
        let m = mant >>> 13
        const rest = mant & 0x1fff
        let h = sign | (e << 10) | m
        if (rest > 0x1000 || (rest === 0x1000 && (m & 1))) h++
        out[i] = h
        m = 0
      }
    }
  }
  return out
}

/** IEEE fp16 bits → fp32 (subnormals, inf and NaN included). */
export const fromF16 = (h: Uint16Array): Float32Array => {
  const out = new Float32Array(h.length)
  for (let i = 0; i < h.length; i++) {
    const x = h[i]!
    const sign = x & 0x8000 ? -1 : 1
    const e = (x >> 10) & 0x1f
    const m = x & 0x3ff
    out[i] = e === 0 ? sign * m * 2 ** -24 : e === 31 ? (m ? NaN : sign * Infinity) : sign * (1 + m / 1024) * 2 ** (e - 15)
  }
  return out
}

/** Where a tensor lives: its file, its header entry and where that file's data starts. */
export interface Located {
  readonly file: string
  readonly info: TensorInfo
  readonly dataStart: number
}

/** Tensor name → where it lives, over several files (the shards of a checkpoint); a name in two files is an error. */
export const indexFiles = (files: ReadonlyArray<string>): Map<string, Located> => {
  const out = new Map<string, Located>()
  for (const file of files) {
    const { header, dataStart } = readHeader(file)
    for (const [name, info] of Object.entries(header)) {
      const prev = out.get(name)
      if (prev) throw new SafetensorsError(`${file}: ${name} is also in ${prev.file}`)
      out.set(name, { file, info, dataStart })
    }
  }
  return out
}

/** Reads one tensor as fp32 (from F32, BF16 or F16). */
export const readTensor = (t: Located): Float32Array => readElements(t, 0, t.info.shape.reduce((a, b) => a * b, 1))

/**
 * Reads `count` elements of a tensor from element `start` as fp32: a large tensor can be
 * streamed in row ranges, so memory holds a range, not the tensor.
 */
export const readElements = (t: Located, start: number, count: number): Float32Array => {
  const width = BYTES[t.info.dtype as Dtype]
  if (width === undefined) throw new SafetensorsError(`${t.file}: dtype ${String(t.info.dtype)} is not supported (bf16, fp16 or fp32)`)
  const [a, b] = t.info.data_offsets
  const bytes = count * width
  if (start < 0 || a + (start + count) * width > b) throw new SafetensorsError(`${t.file}: elements ${start}..${start + count} are outside the tensor`)
  // a buffer of its own (not Node's shared pool), aligned for any typed view
  const ab = new ArrayBuffer(bytes)
  const buf = Buffer.from(ab)
  const fd = fs.openSync(t.file, "r")
  try {
    let off = 0
    while (off < bytes) {
      const n = fs.readSync(fd, buf, off, bytes - off, t.dataStart + a + start * width + off)
      if (n === 0) throw new SafetensorsError(`${t.file}: ends inside a tensor`)
      off += n
    }
  } finally {
    fs.closeSync(fd)
  }
  switch (t.info.dtype) {
    case "F32":
      return new Float32Array(ab)
    case "BF16":
      return fromBf16(new Uint16Array(ab))
    case "F16":
      return fromF16(new Uint16Array(ab))
  }
}
