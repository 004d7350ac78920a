/**
 * Content digests. Every digest in the lock, the run-cache and the store is a
 * BLAKE3-256 hash written as `blake3:<64 hex>`; the brand keeps digests from
 * being confused with paths or keys in signatures.
 */
import { Blake3Hasher } from "@napi-rs/blake-hash"
import { type Fs, nodeFs } from "./Fs.ts"
import { canonicalJson } from "./Canonical.ts"

export type Digest = string & { readonly __brand: "Digest" }

const PREFIX = "blake3:"

export const isDigest = (s: unknown): s is Digest =>
  typeof s === "string" && s.length === PREFIX.length + 64 && s.startsWith(PREFIX)

/** The hex part, used to name objects in the store. */
export const digestHex = (d: Digest): string => d.slice(PREFIX.length)

export const ofBytes = (data: string | Uint8Array): Digest => {
  const h = new Blake3Hasher()
  h.update(typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength))
  return (PREFIX + h.digest("hex")) as Digest
}

/** A digest computed piece by piece (bytes as they arrive from a remote). */
export const incremental = (): { readonly update: (chunk: Uint8Array) => void; readonly digest: () => Digest } => {
  const h = new Blake3Hasher()
  return {
    update: (c) => void h.update(Buffer.from(c.buffer, c.byteOffset, c.byteLength)),
    digest: () => (PREFIX + h.digest("hex")) as Digest
  }
}

/** The digest of a value's canonical JSON (Canonical.ts): equal values, equal digests, on any machine. */
export const ofJson = (value: unknown): Digest => ofBytes(canonicalJson(value))

/**
 * Chunk size for streaming a file. Reading into a buffer that stays in L2 and
 * hashing it from there is faster than big buffers that go through memory
 * twice: 256 KiB measured 4.1 GB/s against 3.5 GB/s for 4 MiB on this machine
 * (bench/hash.ts).
 */
const CHUNK = 256 * 1024
let shared: Buffer | undefined

/** Streams a file through BLAKE3 on the calling thread; returns digest and bytes read. */
export const ofFile = (path: string, fs: Fs = nodeFs): { digest: Digest; bytes: number } => {
  const buf = (shared ??= Buffer.allocUnsafe(CHUNK))
  const fd = fs.openSync(path, "r")
  try {
    const h = new Blake3Hasher()
    let total = 0
    for (;;) {
      const n = fs.readSync(fd, buf, 0, CHUNK, null)
      if (n === 0) break
      h.update(n === CHUNK ? buf : buf.subarray(0, n))
      total += n
    }
    return { digest: (PREFIX + h.digest("hex")) as Digest, bytes: total }
  } finally {
    fs.closeSync(fd)
  }
}
