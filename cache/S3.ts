/**
 * S3 access for the publish targets (`upload.target: s3://…`) and the remote
 * cache: one narrow service over `@aws-sdk/client-s3`.
 *
 * - Any S3-compatible store: `endpoint` (MinIO, R2, Ceph, s3rver) with
 *   path-style addressing, `region` (else `AWS_REGION`, else us-east-1).
 *   Credentials come from the SDK's usual chain (the AWS_* environment
 *   variables, `AWS_PROFILE` and the shared config files, SSO, instance
 *   roles); they never pass through this module's arguments, so they cannot
 *   reach a log, a plan, a lock file or a key. Checksums are computed only
 *   where the protocol requires them, since S3-compatible stores differ in
 *   which of the newer checksum headers they accept.
 * - Files go up in one PUT below `partSize`, else as a multipart upload whose
 *   parts are sent four at a time. A multipart upload records its upload id
 *   and the parts done in a state file the caller names (a stage's scratch
 *   directory): a killed upload resumes from the last part sent, after
 *   checking that the file is the same one.
 * - Downloads stream into a temp file beside the destination and are renamed
 *   into place only when complete, so a half-fetched object is never seen.
 * - The SDK is imported on the first call, not when the CLI starts (it doubles
 *   the start-up time of every command otherwise).
 * - Every failure is an `S3Error` with one line naming the operation and the
 *   object (`PUT s3://bucket/key: AccessDenied: …`); `transient` says whether
 *   it was the network or the server (5xx, throttling) rather than the
 *   request.
 */
import type {
  AbortMultipartUploadCommandOutput,
  CompleteMultipartUploadCommandOutput,
  CreateMultipartUploadCommandOutput,
  DeleteObjectsCommandOutput,
  GetObjectCommandOutput,
  HeadObjectCommandOutput,
  ListObjectsV2CommandOutput,
  PutObjectCommandOutput,
  UploadPartCommandOutput,
  S3Client
} from "@aws-sdk/client-s3"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Readable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { tempName, writeFileAtomic } from "./Atomic.ts"

export class S3Error extends Data.TaggedError("S3Error")<{ readonly message: string; readonly transient: boolean }> {}

export interface S3Config {
  /** an S3-compatible endpoint (`http://127.0.0.1:9000`); default: AWS */
  readonly endpoint?: string | undefined
  readonly region?: string | undefined
  /** `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key` (default: true with an endpoint) */
  readonly pathStyle?: boolean | undefined
  /** per request, in ms (default 60 000): a store that does not answer is an error, not a hang */
  readonly timeoutMs?: number | undefined
}

export interface S3Location {
  readonly bucket: string
  /** no leading or trailing slash; "" for the bucket's root */
  readonly prefix: string
}

/** `s3://bucket/some/prefix` → its bucket and prefix, or why it is not one. */
export const parseUrl = (url: string): S3Location | { readonly problem: string } => {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url)
  if (m === null) return { problem: `${url}: expected s3://<bucket>/<prefix>` }
  const bucket = m[1]!
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) return { problem: `${url}: ${JSON.stringify(bucket)} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')` }
  const prefix = (m[2] ?? "").replace(/^\/+|\/+$/g, "")
  if (prefix.split("/").some((p) => p === "." || p === "..") || prefix.includes("//")) return { problem: `${url}: the prefix may not hold empty, '.' or '..' segments` }
  return { bucket, prefix }
}

export const keyIn = (loc: S3Location, rel: string): string => (loc.prefix === "" ? rel : `${loc.prefix}/${rel}`)

export interface ObjectInfo {
  readonly key: string
  readonly size: number
  /** without quotes */
  readonly etag: string
  readonly metadata?: Readonly<Record<string, string>>
}

export interface PutOptions {
  readonly metadata?: Readonly<Record<string, string>>
  /** bytes per part; files of at least this size go up as a multipart upload (default 64 MiB, at least 5 MiB) */
  readonly partSize?: number
  /** where a multipart upload keeps its progress, so that a killed one resumes */
  readonly stateFile?: string
  /** bytes sent so far (parts resumed from a state file count at once) */
  readonly onBytes?: (sent: number, total: number) => void
  readonly concurrency?: number
}

export interface S3 {
  /** `s3://bucket/key`, for messages */
  readonly url: (bucket: string, key: string) => string
  readonly head: (bucket: string, key: string) => Effect.Effect<ObjectInfo | undefined, S3Error>
  /** every object under `prefix` (pages followed) */
  readonly list: (bucket: string, prefix: string) => Effect.Effect<Array<ObjectInfo>, S3Error>
  /** a small object's text (a manifest, a run-cache entry), or undefined when absent */
  readonly getText: (bucket: string, key: string) => Effect.Effect<string | undefined, S3Error>
  /** streams an object into `dest` (temp file, then rename), each chunk to `onChunk` as it comes; false when it is absent */
  readonly getFile: (bucket: string, key: string, dest: string, onChunk?: (chunk: Uint8Array) => void) => Effect.Effect<boolean, S3Error>
  readonly putText: (bucket: string, key: string, text: string, metadata?: Readonly<Record<string, string>>) => Effect.Effect<ObjectInfo, S3Error>
  readonly putFile: (bucket: string, key: string, file: string, options?: PutOptions) => Effect.Effect<ObjectInfo, S3Error>
  /** deletes the keys (absent ones are fine) */
  readonly remove: (bucket: string, keys: ReadonlyArray<string>) => Effect.Effect<void, S3Error>
}

export const MIN_PART = 5 * 1024 * 1024
/** parts are read whole into memory (four at a time): at most 2 GiB each, Node's largest read */
export const MAX_PART = 2047 * 1024 * 1024
export const DEFAULT_PART = 64 * 1024 * 1024

const unquote = (etag: string | undefined): string => (etag ?? "").replace(/^"|"$/g, "")

interface SdkError {
  readonly name?: string
  readonly message?: string
  readonly code?: string
  readonly $metadata?: { readonly httpStatusCode?: number }
  readonly $retryable?: unknown
}

const statusOf = (e: unknown): number | undefined => (e as SdkError | null)?.$metadata?.httpStatusCode

/** One line for a failed call; the SDK's messages name no credential, and none is passed to it here. */
const toError = (op: string, where: string) => (e: unknown): S3Error => {
  const err = (e ?? {}) as SdkError
  const status = statusOf(e)
  const name = err.name && err.name !== "Error" ? err.name : err.code ?? "error"
  const message = (err.message ?? String(e)).split("\n")[0]!.trim()
  const transient = status === undefined ? !/Credentials|Region|InvalidEndpoint|TypeError/i.test(name) : status >= 500 || status === 429 || status === 408
  const hint =
    /CredentialsProviderError|Could not load credentials/i.test(`${name} ${message}`)
      ? " (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
      : ""
  const text = message === "" || message === name || message === "UnknownError" ? `${name}${status ? ` (HTTP ${status})` : ""}` : `${name}: ${message}`
  return new S3Error({ message: `${op} ${where}: ${text}${hint}`, transient })
}

interface PartState {
  readonly bucket: string
  readonly key: string
  readonly size: number
  readonly mtimeMs: number
  readonly partSize: number
  readonly uploadId: string
  readonly parts: Record<string, string>
}

const readState = (file: string | undefined): PartState | undefined => {
  if (file === undefined) return undefined
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as PartState
  } catch {
    return undefined
  }
}

const readPart = (fd: number, start: number, length: number): Buffer => {
  const b = Buffer.allocUnsafe(length)
  let got = 0
  while (got < length) {
    const n = fs.readSync(fd, b, got, length - got, start + got)
    if (n === 0) throw new Error(`file ended at byte ${start + got}, expected ${start + length}`)
    got += n
  }
  return b
}

/** An S3 service over one client; `destroy` closes its sockets. */
export const make = (config: S3Config = {}): S3 & { readonly destroy: () => void } => {
  const endpoint = config.endpoint
  let client: S3Client | undefined
  let sdk: typeof import("@aws-sdk/client-s3") | undefined
  /** the SDK's module and the client, made on the first call */
  const open = async () => {
    sdk ??= await import("@aws-sdk/client-s3")
    client ??= new sdk.S3Client({
      ...(endpoint !== undefined ? { endpoint } : {}),
      region: config.region ?? process.env["AWS_REGION"] ?? process.env["AWS_DEFAULT_REGION"] ?? "us-east-1",
      forcePathStyle: config.pathStyle ?? endpoint !== undefined,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 3,
      requestHandler: { connectionTimeout: 10_000, requestTimeout: config.timeoutMs ?? 60_000 }
    })
    return { c: client, m: sdk }
  }
  type Sdk = typeof import("@aws-sdk/client-s3")
  /** sends the command `make` builds from the lazily imported SDK; `O` is that command's output type */
  const send = <O>(make: (m: Sdk) => unknown, abortSignal: AbortSignal): Promise<O> =>
    open().then(({ c, m }) => (c.send as unknown as (command: unknown, options: { abortSignal: AbortSignal }) => Promise<O>).call(c, make(m), { abortSignal }))
  const url = (bucket: string, key: string) => `s3://${bucket}/${key}`
  const call = <A>(op: string, where: string, f: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, S3Error> =>
    Effect.tryPromise({ try: (signal) => f(signal), catch: toError(op, where) })

  const head: S3["head"] = (bucket, key) =>
    Effect.tryPromise({
      try: (abortSignal) => send<HeadObjectCommandOutput>((m) => new m.HeadObjectCommand({ Bucket: bucket, Key: key }), abortSignal),
      catch: (e) => e
    }).pipe(
      Effect.map((r): ObjectInfo | undefined => ({ key, size: r.ContentLength ?? 0, etag: unquote(r.ETag), metadata: r.Metadata ?? {} })),
      Effect.catch((e) => (statusOf(e) === 404 ? Effect.succeed(undefined) : Effect.fail(toError("HEAD", url(bucket, key))(e))))
    )

  const list: S3["list"] = (bucket, prefix) =>
    Effect.gen(function* () {
      const out: Array<ObjectInfo> = []
      let token: string | undefined
      do {
        const r = yield* call("LIST", url(bucket, prefix), (abortSignal) =>
          send<ListObjectsV2CommandOutput>((m) => new m.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }), abortSignal)
        )
        for (const o of r.Contents ?? []) if (o.Key !== undefined) out.push({ key: o.Key, size: o.Size ?? 0, etag: unquote(o.ETag) })
        token = r.IsTruncated ? r.NextContinuationToken : undefined
      } while (token !== undefined)
      return out
    })

  const getBody = (bucket: string, key: string) =>
    Effect.tryPromise({
      try: (abortSignal) => send<GetObjectCommandOutput>((m) => new m.GetObjectCommand({ Bucket: bucket, Key: key }), abortSignal),
      catch: (e) => e
    }).pipe(Effect.catch((e) => (statusOf(e) === 404 || (e as SdkError).name === "NoSuchKey" ? Effect.succeed(undefined) : Effect.fail(toError("GET", url(bucket, key))(e)))))

  const getText: S3["getText"] = (bucket, key) =>
    Effect.flatMap(getBody(bucket, key), (r) =>
      r?.Body === undefined ? Effect.succeed(undefined) : call("GET", url(bucket, key), () => r.Body!.transformToString("utf8"))
    )

  const getFile: S3["getFile"] = (bucket, key, dest, onChunk) =>
    Effect.flatMap(getBody(bucket, key), (r) => {
      if (r?.Body === undefined) return Effect.succeed(false)
      const tmp = tempName(dest)
      return call("GET", url(bucket, key), async () => {
        fs.mkdirSync(path.dirname(dest), { recursive: true })
        try {
          const body = r.Body as Readable
          if (onChunk) body.on("data", (c: Buffer) => onChunk(c))
          await pipeline(body, fs.createWriteStream(tmp))
          const want = r.ContentLength
          if (want !== undefined && fs.statSync(tmp).size !== want) throw new Error(`short read: ${fs.statSync(tmp).size} of ${want} bytes`)
          fs.renameSync(tmp, dest)
          return true
        } finally {
          fs.rmSync(tmp, { force: true })
        }
      })
    })

  const putText: S3["putText"] = (bucket, key, text, metadata) =>
    Effect.map(
      call("PUT", url(bucket, key), (abortSignal) =>
        send<PutObjectCommandOutput>((m) => new m.PutObjectCommand({ Bucket: bucket, Key: key, Body: text, ContentType: key.endsWith(".json") ? "application/json" : "text/plain; charset=utf-8", Metadata: { ...metadata } }), abortSignal)
      ),
      (r) => ({ key, size: Buffer.byteLength(text), etag: unquote(r.ETag), metadata: { ...metadata } })
    )

  const putFile: S3["putFile"] = (bucket, key, file, options = {}) =>
    Effect.gen(function* () {
      const where = url(bucket, key)
      const st = yield* Effect.try({ try: () => fs.statSync(file), catch: (e) => new S3Error({ message: `PUT ${where}: cannot read ${file}: ${(e as Error).message}`, transient: false }) })
      const partSize = Math.min(MAX_PART, Math.max(MIN_PART, options.partSize ?? DEFAULT_PART))
      const metadata = { ...options.metadata }
      if (st.size < partSize) {
        const body = yield* Effect.try({ try: () => fs.readFileSync(file), catch: (e) => new S3Error({ message: `PUT ${where}: cannot read ${file}: ${(e as Error).message}`, transient: false }) })
        const r = yield* call("PUT", where, (abortSignal) => send<PutObjectCommandOutput>((m) => new m.PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length, Metadata: metadata }), abortSignal))
        options.onBytes?.(st.size, st.size)
        return { key, size: st.size, etag: unquote(r.ETag), metadata }
      }
      // multipart, resumable through the state file
      const previous = readState(options.stateFile)
      const same = previous !== undefined && previous.bucket === bucket && previous.key === key && previous.size === st.size && previous.mtimeMs === st.mtimeMs && previous.partSize === partSize
      const uploadId = same
        ? previous.uploadId
        : (yield* call("CREATE-MULTIPART", where, (abortSignal) => send<CreateMultipartUploadCommandOutput>((m) => new m.CreateMultipartUploadCommand({ Bucket: bucket, Key: key, Metadata: metadata }), abortSignal))).UploadId!
      const parts: Record<string, string> = same ? { ...previous.parts } : {}
      const save = () => {
        if (options.stateFile !== undefined) writeFileAtomic(options.stateFile, JSON.stringify({ bucket, key, size: st.size, mtimeMs: st.mtimeMs, partSize, uploadId, parts } satisfies PartState))
      }
      save()
      const count = Math.ceil(st.size / partSize)
      const lengthOf = (n: number) => Math.min(partSize, st.size - (n - 1) * partSize)
      let sent = 0
      for (const n of Object.keys(parts)) sent += lengthOf(Number(n))
      options.onBytes?.(sent, st.size)
      const todo = Array.from({ length: count }, (_, i) => i + 1).filter((n) => parts[n] === undefined)
      const fd = fs.openSync(file, "r")
      const uploadPart = (n: number) =>
        Effect.gen(function* () {
          const body = yield* Effect.try({
            try: () => readPart(fd, (n - 1) * partSize, lengthOf(n)),
            catch: (e) => new S3Error({ message: `PUT ${where}: reading part ${n} of ${file}: ${(e as Error).message}`, transient: false })
          })
          const r = yield* call(`PUT part ${n}/${count}`, where, (abortSignal) =>
            send<UploadPartCommandOutput>((m) => new m.UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: n, Body: body, ContentLength: body.length }), abortSignal)
          )
          parts[n] = unquote(r.ETag)
          save()
          sent += body.length
          options.onBytes?.(sent, st.size)
        })
      const finished = yield* Effect.forEach(todo, uploadPart, { concurrency: options.concurrency ?? 4, discard: true }).pipe(
        Effect.andThen(
          call("COMPLETE-MULTIPART", where, (abortSignal) =>
            send<CompleteMultipartUploadCommandOutput>(
              (m) =>
                new m.CompleteMultipartUploadCommand({
                  Bucket: bucket,
                  Key: key,
                  UploadId: uploadId,
                  MultipartUpload: { Parts: Array.from({ length: count }, (_, i) => ({ PartNumber: i + 1, ETag: `"${parts[i + 1]}"` })) }
                }),
              abortSignal
            )
          )
        ),
        Effect.ensuring(Effect.sync(() => fs.closeSync(fd))),
        // without a state file nothing can resume it: abort the upload so its parts are not kept (and billed)
        Effect.onError(() =>
          options.stateFile !== undefined
            ? Effect.void
            : Effect.ignore(call("ABORT-MULTIPART", where, (abortSignal) => send<AbortMultipartUploadCommandOutput>((m) => new m.AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }), abortSignal)))
        ),
        // an upload id the store no longer knows (completed, aborted, expired): start over once
        Effect.catchIf(
          (e) => same && /NoSuchUpload/.test(e.message),
          () => {
            if (options.stateFile !== undefined) fs.rmSync(options.stateFile, { force: true })
            return putFile(bucket, key, file, options).pipe(Effect.map((i) => ({ ETag: `"${i.etag}"` })))
          }
        )
      )
      if (options.stateFile !== undefined) fs.rmSync(options.stateFile, { force: true })
      return { key, size: st.size, etag: unquote(finished.ETag), metadata }
    })

  const remove: S3["remove"] = (bucket, keys) =>
    Effect.forEach(
      Array.from({ length: Math.ceil(keys.length / 1000) }, (_, i) => keys.slice(i * 1000, (i + 1) * 1000)),
      (batch) =>
        call("DELETE", url(bucket, batch[0]!), (abortSignal) =>
          send<DeleteObjectsCommandOutput>((m) => new m.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }), abortSignal)
        ).pipe(
          Effect.flatMap((r) => {
            const failed = r.Errors ?? []
            return failed.length === 0
              ? Effect.void
              : Effect.fail(new S3Error({ message: `DELETE ${url(bucket, failed[0]!.Key ?? "")}: ${failed[0]!.Code ?? "error"}: ${failed[0]!.Message ?? ""}`, transient: false }))
          })
        ),
      { discard: true }
    )

  return { url, head, list, getText, getFile, putText, putFile, remove, destroy: () => client?.destroy() }
}

/** The service, for code that gets its S3 from the context (a layer per configured store). */
export class S3Service extends Context.Service<S3Service, S3>()("finetune-pipeline/cache/S3") {
  static readonly layer = (config: S3Config = {}) =>
    Layer.effect(
      S3Service,
      Effect.acquireRelease(
        Effect.sync(() => make(config)),
        (s) => Effect.sync(() => s.destroy())
      )
    )
}
