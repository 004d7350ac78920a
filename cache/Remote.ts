/**
 * Remote caches: the objects and run-cache entries a team shares, behind one
 * narrow interface with two backends.
 *
 * - `http(s)://…`: plain GET, HEAD and PUT, like Bazel's HTTP cache; nginx
 *   with WebDAV PUT (`dav_methods PUT; create_full_put_path on;`) or any
 *   server that stores what is PUT and serves it back.
 * - `s3://bucket/prefix`: the S3 service of cache/S3.ts (any S3-compatible
 *   store: `endpoint`, path-style; credentials from the AWS chain).
 * - `file:///path`: a directory (a shared mount); every write is a temp file
 *   renamed into place.
 *
 * Layout under the remote's URL:
 *
 *   cas/<hex>                    an object (a file's bytes or a tree manifest) by its BLAKE3 digest
 *   ac/<stage>/<key hex>.json    a run-cache entry: the stage's lock entry for that key
 *
 * Objects are content-addressed, so a PUT of one that is there changes
 * nothing and a push can stop anywhere and start again. What comes back is
 * checked against its digest before the store takes it (engine/Remote.ts).
 * No credential is ever part of a URL, a message or a key.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import { get as httpGet, request as httpRequest } from "node:http"
import * as https from "node:https"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { pipeline } from "node:stream/promises"
import { tempName } from "./Atomic.ts"
import { getToFile } from "./HttpGet.ts"
import * as Digest from "./Digest.ts"
import * as S3 from "./S3.ts"

export class RemoteError extends Data.TaggedError("RemoteError")<{ readonly message: string }> {}

export interface RemoteConfig {
  readonly url: string
  /** s3: an S3-compatible endpoint, its region, path-style addressing */
  readonly endpoint?: string | undefined
  readonly region?: string | undefined
  readonly pathStyle?: boolean | undefined
}

export interface Backend {
  readonly name: string
  /** the remote's URL, for messages (it holds no credential) */
  readonly url: string
  readonly has: (rel: string) => Effect.Effect<boolean, RemoteError>
  readonly getText: (rel: string) => Effect.Effect<string | undefined, RemoteError>
  /**
   * Streams `rel` into `dest` (temp file, then rename); false when absent. A backend that
   * streams hands every byte to `onChunk` as it arrives, in order, and returns "streamed".
   */
  readonly getFile: (rel: string, dest: string, onChunk?: (chunk: Uint8Array) => void) => Effect.Effect<boolean | "streamed", RemoteError>
  readonly putText: (rel: string, text: string) => Effect.Effect<void, RemoteError>
  readonly putFile: (rel: string, file: string) => Effect.Effect<void, RemoteError>
  readonly close: () => void
}

export const objectRel = (d: Digest.Digest): string => `cas/${Digest.digestHex(d)}`
export const entryRel = (stage: string, key: Digest.Digest): string => `ac/${stage}/${Digest.digestHex(key)}.json`

/** Why a remote URL cannot be used, or undefined. */
export const urlProblem = (url: string): string | undefined => {
  if (url.startsWith("file://")) return url.startsWith("file:///") ? undefined : `${url}: expected file:///absolute/path`
  if (url.startsWith("s3://")) {
    const loc = S3.parseUrl(url)
    return "problem" in loc ? loc.problem : undefined
  }
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return `${url}: expected http(s)://host/path or s3://bucket/prefix`
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return `${url}: expected http(s)://host/path, s3://bucket/prefix or file:///path`
  if (u.username !== "" || u.password !== "") return `${u.protocol}//${u.host}${u.pathname}: credentials in the URL would end up in logs; give the server's address without them`
  return undefined
}

const http = (name: string, url: string, timeoutMs: number): Backend => {
  const base = url.replace(/\/+$/, "")
  const at = (rel: string) => `${base}/${rel}`
  /** `whole`: the call is small (HEAD, an entry): a total timeout; transfers get an idle timeout instead */
  const request = <A>(op: string, rel: string, f: (signal: AbortSignal) => Promise<A>, whole = true): Effect.Effect<A, RemoteError> =>
    Effect.tryPromise({
      try: (signal) => f(whole ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : signal),
      catch: (e) => {
        const err = e as Error & { cause?: { code?: string; message?: string } }
        const why = err.cause?.code ?? err.cause?.message ?? err.message
        return new RemoteError({ message: `${op} ${at(rel)}: ${why}` })
      }
    })
  const status = (op: string, rel: string, res: Response): never => {
    throw Object.assign(new Error(`HTTP ${res.status}`), { cause: { message: `HTTP ${res.status} ${res.statusText}`.trim() } })
  }
  /** GET through node:http(s): HTTPS, and the responses HttpGet.ts does not take */
  const nodeGet = (u: URL, dest: string, onChunk: ((chunk: Uint8Array) => void) | undefined, signal: AbortSignal) =>
    new Promise<boolean | "streamed">((resolve, reject) => {
      const get = u.protocol === "https:" ? https.get : httpGet
      // a server that sends nothing for timeoutMs is an error; a long transfer is not
      const req = get(u, { signal, timeout: timeoutMs }, (res) => {
        const code = res.statusCode ?? 0
        if (code === 404) {
          res.resume()
          return resolve(false)
        }
        if (code < 200 || code >= 300) {
          res.resume()
          return reject(Object.assign(new Error(`HTTP ${code}`), { cause: { message: `HTTP ${code} ${res.statusMessage ?? ""}`.trim() } }))
        }
        const tmp = tempName(dest)
        let fd: number
        try {
          fs.mkdirSync(path.dirname(dest), { recursive: true })
          fd = fs.openSync(tmp, "w")
        } catch (e) {
          res.destroy()
          return reject(e)
        }
        let n = 0
        // each socket piece is hashed and written as it comes (gathering them into 1 MiB blocks
        // measured slower: 4.3 s against 2.6–3.4 s of system time for 1.25 GiB, after a sync)
        // an aborted body fires "aborted" and "error" both: settle once
        let settled = false
        const finish = (e: unknown) => {
          if (settled) return
          settled = true
          try {
            fs.closeSync(fd)
          } catch {
            /* closed */
          }
          try {
            if (e === undefined) {
              const want = res.headers["content-length"]
              if (want !== undefined && n !== Number(want)) throw new Error(`short read: ${n} of ${want} bytes`)
              fs.renameSync(tmp, dest)
              return resolve("streamed")
            }
          } catch (x) {
            e = x
          }
          fs.rmSync(tmp, { force: true })
          reject(e)
        }
        res.on("data", (c: Buffer) => {
          try {
            n += c.length
            onChunk?.(c)
            fs.writeSync(fd, c)
          } catch (e) {
            res.destroy()
            finish(e)
          }
        })
        res.on("error", finish)
        res.on("aborted", () => finish(new Error("the connection closed mid-body")))
        res.on("end", () => finish(undefined))
      })
      req.on("timeout", () => req.destroy(new Error(`no data for ${Math.round(timeoutMs / 1000)} s`)))
      req.on("error", reject)
    })
  return {
    name,
    url: base,
    has: (rel) =>
      request("HEAD", rel, async (signal) => {
        const res = await fetch(at(rel), { method: "HEAD", signal })
        if (res.status === 404) return false
        if (!res.ok) return status("HEAD", rel, res)
        return true
      }),
    getText: (rel) =>
      request("GET", rel, async (signal) => {
        const res = await fetch(at(rel), { signal })
        if (res.status === 404) return undefined
        if (!res.ok) return status("GET", rel, res)
        return await res.text()
      }),
    // plain http: our own loop over one reused read buffer (HttpGet.ts: 1.25 GiB received, hashed
    // and written in 1.0 s, against node:http's 2.6 s and curl's 2.7 s); https, and responses that
    // are not plain, through node:http (itself faster than fetch: 256 MiB in 0.43 s against 0.51 s)
    getFile: (rel, dest, onChunk) =>
      request(
        "GET",
        rel,
        async (signal) => {
          const u = new URL(at(rel))
          if (u.protocol === "http:") {
            const got = await getToFile(u, dest, { onChunk, signal, idleMs: timeoutMs })
            if (got !== "fallback") return got
          }
          return await nodeGet(u, dest, onChunk, signal)
        },
        false
      ),
    putText: (rel, text) =>
      request("PUT", rel, async (signal) => {
        const res = await fetch(at(rel), { method: "PUT", body: text, headers: { "content-type": "application/json" }, signal })
        await res.body?.cancel()
        if (!res.ok) status("PUT", rel, res)
      }),
    putFile: (rel, file) =>
      request(
        "PUT",
        rel,
        (signal) =>
          new Promise<void>((resolve, reject) => {
            const u = new URL(at(rel))
            const size = fs.statSync(file).size
            const req = (u.protocol === "https:" ? https.request : httpRequest)(
              u,
              { method: "PUT", signal, timeout: timeoutMs, headers: { "content-length": String(size), "content-type": "application/octet-stream" } },
              (res) => {
                res.resume()
                const code = res.statusCode ?? 0
                res.on("end", () =>
                  code >= 200 && code < 300 ? resolve() : reject(Object.assign(new Error(`HTTP ${code}`), { cause: { message: `HTTP ${code} ${res.statusMessage ?? ""}`.trim() } }))
                )
              }
            )
            req.on("timeout", () => req.destroy(new Error(`no progress for ${Math.round(timeoutMs / 1000)} s`)))
            req.on("error", reject)
            const body = fs.createReadStream(file)
            body.on("error", (e) => req.destroy(e))
            body.pipe(req)
          }),
        false
      ),
    close: () => {}
  }
}

const s3 = (name: string, config: RemoteConfig, timeoutMs: number): Backend => {
  const loc = S3.parseUrl(config.url) as S3.S3Location
  const client = S3.make({ endpoint: config.endpoint, region: config.region, pathStyle: config.pathStyle, timeoutMs })
  const key = (rel: string) => S3.keyIn(loc, rel)
  const wrap = <A>(e: Effect.Effect<A, S3.S3Error>) => Effect.mapError(e, (x) => new RemoteError({ message: x.message }))
  return {
    name,
    url: `s3://${loc.bucket}${loc.prefix === "" ? "" : `/${loc.prefix}`}`,
    has: (rel) => wrap(Effect.map(client.head(loc.bucket, key(rel)), (h) => h !== undefined)),
    getText: (rel) => wrap(client.getText(loc.bucket, key(rel))),
    getFile: (rel, dest, onChunk) => wrap(Effect.map(client.getFile(loc.bucket, key(rel), dest, onChunk), (got) => (got && onChunk ? ("streamed" as const) : got))),
    putText: (rel, text) => wrap(Effect.asVoid(client.putText(loc.bucket, key(rel), text))),
    putFile: (rel, file) => wrap(Effect.asVoid(client.putFile(loc.bucket, key(rel), file))),
    close: () => client.destroy()
  }
}

const dir = (name: string, url: string): Backend => {
  const root = fileURLToPath(url)
  const at = (rel: string) => path.join(root, ...rel.split("/"))
  const io = <A>(op: string, rel: string, f: () => A): Effect.Effect<A, RemoteError> =>
    Effect.try({ try: f, catch: (e) => new RemoteError({ message: `${op} ${url.replace(/\/+$/, "")}/${rel}: ${(e as Error).message}` }) })
  const write = (rel: string, put: (tmp: string) => void) => {
    const dest = at(rel)
    fs.mkdirSync(path.dirname(dest), { recursive: true })
    const tmp = tempName(dest)
    try {
      put(tmp)
      fs.renameSync(tmp, dest)
    } finally {
      fs.rmSync(tmp, { force: true })
    }
  }
  return {
    name,
    url: url.replace(/\/+$/, ""),
    has: (rel) => io("stat", rel, () => fs.existsSync(at(rel))),
    getText: (rel) => io("read", rel, () => (fs.existsSync(at(rel)) ? fs.readFileSync(at(rel), "utf8") : undefined)),
    getFile: (rel, dest) =>
      io("read", rel, () => {
        if (!fs.existsSync(at(rel))) return false
        const tmp = tempName(dest)
        try {
          fs.copyFileSync(at(rel), tmp)
          fs.renameSync(tmp, dest)
        } finally {
          fs.rmSync(tmp, { force: true })
        }
        return true
      }),
    putText: (rel, text) => io("write", rel, () => write(rel, (tmp) => fs.writeFileSync(tmp, text))),
    putFile: (rel, file) => io("write", rel, () => write(rel, (tmp) => fs.copyFileSync(file, tmp))),
    close: () => {}
  }
}

/** The backend for a configured remote. */
export const open = (name: string, config: RemoteConfig, timeoutMs = 120_000): Backend =>
  config.url.startsWith("s3://") ? s3(name, config, timeoutMs) : config.url.startsWith("file://") ? dir(name, config.url) : http(name, config.url, timeoutMs)
