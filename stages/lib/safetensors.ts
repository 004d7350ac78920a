/**
 * safetensors: u64 little-endian header length, a JSON header mapping tensor
 * names to { dtype, shape, data_offsets }, then the raw little-endian data.
 * (Format: https://github.com/huggingface/safetensors, "Format" section.)
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

export const readHeader = (file: string): { header: Record<string, TensorInfo>; dataStart: number } => {
  const fd = fs.openSync(file, "r")
  try {
    const len = Buffer.alloc(8)
    if (fs.readSync(fd, len, 0, 8, 0) !== 8) throw new Error(`${file}: too short for a safetensors header`)
    const n = Number(len.readBigUInt64LE())
    if (n <= 0 || n > 100_000_000) throw new Error(`${file}: bad safetensors header length ${n}`)
    const buf = Buffer.alloc(n)
    fs.readSync(fd, buf, 0, n, 8)
    const parsed = JSON.parse(buf.toString("utf8")) as Record<string, TensorInfo>
    delete parsed["__metadata__"]
    return { header: parsed, dataStart: 8 + n }
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
