/**
 * A GET of one object over plain HTTP/1.1 into a file, for the remote cache's
 * restores: the socket reads into one reused 1 MiB buffer (`net` `onread`), and
 * each read is hashed and written from there while it is in cache.
 *
 * Why not node:http: it allocates a fresh 64 KiB buffer per socket read and runs
 * every piece through the parser and a stream. Measured on loopback (nginx, 2
 * cores, 1.25 GiB): node:http receiving and discarding took 1.8–2.5 s, this
 * loop 0.7 s, the same as `curl -o /dev/null`; with hashing and writing to
 * files 1.0 s against curl's 2.7 s (bench/remote.ts has the whole pull).
 *
 * Only the plain case is handled here: a response with a status line, headers
 * and a Content-Length body, no content coding. Anything else (chunked,
 * compressed, no length) answers "fallback" before a byte is written, and the
 * caller asks again with node:http. HTTPS always goes through node:https.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { tempName } from "./Atomic.ts"

const READ_BUFFER = 1024 * 1024
const MAX_HEAD = 64 * 1024

/** An HTTP status other than 2xx/404, as node:http's callers see it. */
const statusError = (code: number, reason: string): Error =>
  Object.assign(new Error(`HTTP ${code}`), { cause: { message: `HTTP ${code} ${reason}`.trim() } })

/**
 * GETs `url` (http:) into `dest` (written to a temp file beside it, renamed when
 * complete). `false`: 404. `"streamed"`: every byte went through `onChunk`
 * (the view is reused after the call returns). `"fallback"`: not a plain
 * response; nothing was written.
 */
export const getToFile = (
  url: URL,
  dest: string,
  options: { readonly onChunk?: ((chunk: Uint8Array) => void) | undefined; readonly signal: AbortSignal; readonly idleMs: number }
): Promise<false | "streamed" | "fallback"> =>
  new Promise((resolve, reject) => {
    let settled = false
    let fd: number | undefined
    let tmp: string | undefined
    let head: Buffer | undefined = Buffer.alloc(0)
    let length = 0
    let got = 0
    const settle = (e: unknown, value?: false | "streamed" | "fallback") => {
      if (settled) return
      settled = true
      options.signal.removeEventListener("abort", onAbort)
      socket.destroy()
      if (fd !== undefined)
        try {
          fs.closeSync(fd)
        } catch {
          /* closed */
        }
      try {
        if (e === undefined && value === "streamed") fs.renameSync(tmp!, dest)
      } catch (x) {
        e = x
      }
      if (e === undefined) return resolve(value!)
      if (tmp !== undefined) fs.rmSync(tmp, { force: true })
      reject(e)
    }
    /** The head is complete: decide what the body is, and take the bytes of it that came with the head. */
    const onHead = (text: string, rest: Buffer) => {
      const lines = text.split("\r\n")
      const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? "")
      if (m === null) return settle(new Error(`not an HTTP response: ${JSON.stringify((lines[0] ?? "").slice(0, 60))}`))
      const code = Number(m[1])
      const headers = new Map<string, string>()
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":")
        if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim())
      }
      if (code === 404) return settle(undefined, false)
      if (code < 200 || code >= 300) return settle(statusError(code, m[2] ?? ""))
      const len = headers.get("content-length")
      const coding = headers.get("content-encoding")
      if (len === undefined || !/^\d+$/.test(len) || headers.has("transfer-encoding") || (coding !== undefined && coding !== "identity"))
        return settle(undefined, "fallback")
      length = Number(len)
      try {
        fs.mkdirSync(path.dirname(dest), { recursive: true })
        tmp = tempName(dest)
        fd = fs.openSync(tmp, "w")
      } catch (e) {
        return settle(e)
      }
      body(rest)
    }
    const body = (c: Uint8Array) => {
      if (c.byteLength === 0) {
        if (got === length) settle(undefined, "streamed")
        return
      }
      got += c.byteLength
      if (got > length) return settle(new Error(`the server sent more than its Content-Length (${length} bytes)`))
      try {
        options.onChunk?.(c)
        fs.writeSync(fd!, c)
      } catch (e) {
        return settle(e)
      }
      if (got === length) settle(undefined, "streamed")
    }
    const onAbort = () => settle(options.signal.reason ?? new Error("aborted"))
    const port = url.port === "" ? 80 : Number(url.port)
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1")
    const socket = net.connect({
      port,
      host,
      onread: {
        buffer: Buffer.allocUnsafe(READ_BUFFER),
        callback: (n: number, buf: Uint8Array) => {
          if (settled) return false
          const c = buf.subarray(0, n)
          if (head === undefined) {
            body(c)
            return true
          }
          head = Buffer.concat([head, c])
          const end = head.indexOf("\r\n\r\n")
          if (end < 0) {
            if (head.length > MAX_HEAD) settle(new Error(`the response head is over ${MAX_HEAD} bytes`))
            return true
          }
          const text = head.subarray(0, end).toString("latin1")
          const rest = head.subarray(end + 4)
          head = undefined
          onHead(text, rest)
          return true
        }
      }
    })
    socket.setNoDelay(true)
    socket.setTimeout(options.idleMs, () => settle(new Error(`no data for ${Math.round(options.idleMs / 1000)} s`)))
    socket.on("connect", () =>
      socket.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUser-Agent: finetune-pipeline\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n`)
    )
    socket.on("error", (e) => settle(e))
    socket.on("close", () =>
      settle(new Error(head !== undefined ? "the connection closed before a response" : `the connection closed mid-body (${got} of ${length} bytes)`))
    )
    if (options.signal.aborted) onAbort()
    else options.signal.addEventListener("abort", onAbort, { once: true })
  })
