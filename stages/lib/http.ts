/**
 * Resumable, verified HTTP downloads to disk (Node's fetch).
 *
 * A download streams into `<dest>.part` (a stage puts `dest` in its scratch
 * directory, which survives failed and killed runs), hashing as it writes.
 * `<dest>.part.json` remembers the URL and ETag, so a later attempt resumes
 * with `Range: bytes=<have>-` (and `If-Range`); a 200 answer to it restarts
 * from zero. Failures are `DownloadError`s with a reason: `transient` ones
 * (5xx, 429, network errors) are retried by `Effect.retry` on an exponential
 * `Schedule` that honours Retry-After; the others (404, 401/403, other 4xx, a
 * checksum mismatch, a bad URL, the disk) fail at once. Only a complete download whose sha256 matches
 * becomes `dest`, with its record in `<dest>.json`, and asking for the same
 * URL again returns that record without touching the network.
 *
 * Redirects are followed by hand: the Hub's `X-Repo-Commit` is on the
 * redirect, not on the CDN's answer, and the token must not follow a redirect
 * to another origin. The token never appears in a URL, a log line or an error.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { createHash, type Hash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { type Progress, StageError, Units } from "../../engine/index.ts"

const { formatBytes, formatSeconds } = Units

export interface HttpOptions {
  /** sent as `Authorization: Bearer …`, and only to `authOrigin` */
  readonly token?: string | undefined
  /** the origin (`https://huggingface.co`) that may receive the token */
  readonly authOrigin?: string | undefined
  /** attempts in all (default 5) */
  readonly tries?: number | undefined
  /** first retry delay in ms, doubled on each retry (default 500) */
  readonly baseDelayMs?: number | undefined
}

/** What a download reports to: a stage's `ctx.progress` and `ctx.log`. */
export interface Io {
  readonly progress: Progress
  readonly log: (line: string) => Effect.Effect<void>
}

export interface FetchRequest {
  readonly url: string
  /** the completed file; `<dest>.part` while downloading */
  readonly dest: string
  /** names the file in logs and errors (`dataset`, `model config.json`) */
  readonly label: string
  /** expected sha256 (hex); a mismatch deletes the part and fails */
  readonly sha256?: string | undefined
}

export interface Fetched {
  /** the URL asked for (never a redirect target, never a token) */
  readonly url: string
  readonly bytes: number
  readonly sha256: string
  /** the Hub's `X-Repo-Commit`, when the server sent one */
  readonly commit: string | null
}

// ---- failures

/**
 * Why a download failed, as a closed set of reasons. Only `transient` (5xx,
 * 429, a dropped or cut connection) is retried; the rest fail at once.
 */
export const DownloadReason = Schema.Literals(["transient", "not-found", "denied", "http", "checksum", "url", "disk", "gave-up"])

export class DownloadError extends Schema.TaggedError<DownloadError>()("DownloadError", {
  reason: DownloadReason,
  message: Schema.String,
  /** a server's Retry-After, honoured by the next try */
  retryAfterMs: Schema.optional(Schema.Number)
}) {}

const transient = (message: string, retryAfterMs?: number) =>
  new DownloadError(retryAfterMs === undefined ? { reason: "transient", message } : { reason: "transient", message, retryAfterMs })

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim()

/** `ECONNRESET`, `other side closed`, …: a system error code, else the innermost message. */
const networkReason = (e: unknown): string => {
  const err = e as { message?: string; cause?: { code?: string; message?: string } }
  const cause = err?.cause
  const code = cause?.code
  return oneLine(code !== undefined && /^E[A-Z]+$/.test(code) ? code : (cause?.message || err?.message || String(e)))
}

const retryAfterMs = (res: Response): number | undefined => {
  const v = res.headers.get("retry-after")
  return v !== null && /^\d+$/.test(v.trim()) ? Math.min(60, Number(v)) * 1000 : undefined
}

const statusFailure = (res: Response, url: string, label: string, tokenSent: boolean): DownloadError => {
  const s = res.status
  const what = `${label}: ${s} ${res.statusText}`.trim()
  if (s === 429 || s >= 500) return transient(`${s} ${res.statusText}`.trim(), retryAfterMs(res))
  if (s === 404) return new DownloadError({ reason: "not-found", message: `${label}: not found: ${url}` })
  if (s === 401 || s === 403)
    return new DownloadError({
      reason: "denied",
      message: tokenSent
        ? `${what} from ${url}: HF_TOKEN was refused or has no access to this repo (gated repos need their terms accepted)`
        : `${what} from ${url}: the repo is private or gated (or does not exist); it needs HF_TOKEN`
    })
  return new DownloadError({ reason: "http", message: `${what} from ${url}` })
}

// ---- files next to the download

interface PartMeta {
  readonly url: string
  readonly etag: string | null
}

const readJson = <A>(file: string): A | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as A
  } catch {
    return undefined
  }
}

const writeJson = (file: string, value: unknown) => fs.writeFileSync(file, JSON.stringify(value, null, 2) + "\n")

const sizeOf = (file: string): number | undefined => fs.statSync(file, { throwIfNoEntry: false })?.size

const partOf = (dest: string) => ({ part: `${dest}.part`, meta: `${dest}.part.json`, record: `${dest}.json` })

const discardPart = (dest: string) => {
  const p = partOf(dest)
  fs.rmSync(p.part, { force: true })
  fs.rmSync(p.meta, { force: true })
}

/** Bytes of a part that can be resumed: same URL, meta written before the first byte. */
const resumable = (req: FetchRequest): { have: number; etag: string | null } => {
  const p = partOf(req.dest)
  const meta = readJson<PartMeta>(p.meta)
  const have = sizeOf(p.part)
  if (meta === undefined || meta.url !== req.url || have === undefined) {
    discardPart(req.dest)
    return { have: 0, etag: null }
  }
  return { have, etag: meta.etag }
}

/** A download finished by an earlier run (its record next to it). */
const completed = (req: FetchRequest): Fetched | undefined => {
  const rec = readJson<Fetched>(partOf(req.dest).record)
  return rec !== undefined && rec.url === req.url && sizeOf(req.dest) === rec.bytes ? rec : undefined
}

const hashFileInto = async (file: string, hash: Hash): Promise<void> => {
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
}

/** Streamed sha256 and size of a local file. */
export const sha256File = async (file: string): Promise<{ sha256: string; bytes: number }> => {
  const hash = createHash("sha256")
  await hashFileInto(file, hash)
  return { sha256: hash.digest("hex"), bytes: fs.statSync(file).size }
}

// ---- one request, redirects followed by hand

interface Opened {
  readonly res: Response
  readonly commit: string | null
  readonly tokenSent: boolean
}

const MAX_REDIRECTS = 10

const open = async (url: string, headers: Record<string, string>, opts: HttpOptions, signal: AbortSignal): Promise<Opened> => {
  let current = url
  let commit: string | null = null
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const sendToken = opts.token !== undefined && opts.token !== "" && new URL(current).origin === opts.authOrigin
    const h: Record<string, string> = sendToken ? { ...headers, authorization: `Bearer ${opts.token}` } : { ...headers }
    let res: Response
    try {
      res = await fetch(current, { headers: h, redirect: "manual", signal })
    } catch (e) {
      if (signal.aborted) throw e
      throw transient(`network error: ${networkReason(e)}`)
    }
    commit ??= res.headers.get("x-repo-commit")
    const location = res.headers.get("location")
    if (res.status >= 300 && res.status < 400 && location !== null) {
      await res.body?.cancel()
      current = new URL(location, current).toString()
      continue
    }
    return { res, commit, tokenSent: sendToken }
  }
  throw new DownloadError({ reason: "http", message: `${url}: more than ${MAX_REDIRECTS} redirects` })
}

// ---- one attempt

interface Attempt {
  readonly bytes: number
  readonly sha256: string
  readonly commit: string | null
}

interface Reporter {
  readonly total: (n: number) => void
  /** `final` is never throttled away */
  readonly done: (n: number, final?: boolean) => void
  readonly note: (line: string) => void
}

/** `Content-Range: bytes 100-199/200` → { start: 100, total: 200 }; `bytes *\/200` → { start: null, total: 200 }. */
const contentRange = (v: string | null): { start: number | null; total: number | null } | undefined => {
  const m = v === null ? null : /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(v.trim())
  if (!m) return undefined
  return { start: m[1] !== undefined ? Number(m[1]) : null, total: m[2] === "*" ? null : Number(m[2]) }
}

const contentLength = (res: Response): number | null => {
  const v = res.headers.get("content-length")
  return v !== null && /^\d+$/.test(v) ? Number(v) : null
}

/** Where the body goes: from byte `from` of the part, and how many bytes to expect in all. */
const startPoint = async (
  req: FetchRequest,
  res: Response,
  have: number,
  etag: string | null,
  report: Reporter
): Promise<{ from: number; total: number | null } | "complete"> => {
  if (res.status === 206) {
    const cr = contentRange(res.headers.get("content-range"))
    const now = res.headers.get("etag")
    if (cr === undefined || cr.start !== have || (etag !== null && now !== null && now !== etag)) {
      await res.body?.cancel()
      discardPart(req.dest)
      throw transient(`the resumed answer does not continue the part (${res.headers.get("content-range") ?? "no Content-Range"}); starting over`)
    }
    return { from: have, total: cr.total }
  }
  if (res.status === 416 && have > 0) {
    await res.body?.cancel()
    const cr = contentRange(res.headers.get("content-range"))
    if (cr?.total === have) return "complete"
    discardPart(req.dest)
    throw transient(`416 for a resume at ${have} bytes; starting over`)
  }
  if (res.status === 200) {
    if (have > 0) report.note(`${req.label}: the server sent the whole file (the file changed or Range is not supported); starting over from zero`)
    return { from: 0, total: contentLength(res) }
  }
  throw new DownloadError({ reason: "http", message: `${req.label}: unexpected ${res.status} ${res.statusText} from ${req.url}` })
}

/** Streams the body into the part from `from`, hashing the bytes already there first. */
const writeBody = async (req: FetchRequest, res: Response, from: number, total: number | null, report: Reporter): Promise<{ bytes: number; sha256: string }> => {
  const { part } = partOf(req.dest)
  const hash = createHash("sha256")
  if (from > 0) await hashFileInto(part, hash)
  const fh = await fs.promises.open(part, from > 0 ? "a" : "w")
  let done = from
  if (total !== null) report.total(total)
  report.done(done)
  try {
    if (res.body !== null) {
      const reader = res.body[Symbol.asyncIterator]()
      for (;;) {
        let next: IteratorResult<Uint8Array>
        try {
          next = await reader.next()
        } catch (e) {
          throw transient(`connection lost after ${formatBytes(done)}: ${networkReason(e)}`)
        }
        if (next.done) break
        hash.update(next.value)
        await fh.write(next.value)
        done += next.value.byteLength
        report.done(done)
      }
    }
  } finally {
    await fh.close()
  }
  report.done(done, true)
  if (total !== null && done !== total) throw transient(`premature close after ${done} of ${total} bytes`)
  return { bytes: done, sha256: hash.digest("hex") }
}

const attempt = async (req: FetchRequest, opts: HttpOptions, report: Reporter, signal: AbortSignal): Promise<Attempt> => {
  const { have, etag } = resumable(req)
  const headers: Record<string, string> = { "accept-encoding": "identity", "user-agent": "finetune-pipeline" }
  if (have > 0) {
    headers["range"] = `bytes=${have}-`
    if (etag !== null && !etag.startsWith("W/")) headers["if-range"] = etag
    report.note(`${req.label}: resuming at ${formatBytes(have)}`)
  }
  const { res, commit, tokenSent } = await open(req.url, headers, opts, signal)
  if (res.status >= 400 && res.status !== 416) {
    await res.body?.cancel()
    throw statusFailure(res, req.url, req.label, tokenSent)
  }
  const start = await startPoint(req, res, have, etag, report)
  if (start === "complete") {
    const h = await sha256File(partOf(req.dest).part)
    return { ...h, commit }
  }
  writeJson(partOf(req.dest).meta, { url: req.url, etag: res.headers.get("etag") } satisfies PartMeta)
  const body = await writeBody(req, res, start.from, start.total, report)
  return { ...body, commit }
}

// ---- the Effect API

const throttled = (io: Io, label: string): Reporter => {
  let last = 0
  let total = -1
  return {
    total: (n) => {
      total = n
      Effect.runSync(io.progress.total(n, "bytes"))
    },
    done: (n, final) => {
      const now = Date.now()
      if (now - last < 100 && n !== total && final !== true) return
      last = now
      Effect.runSync(io.progress.update(n))
    },
    note: (line) => Effect.runSync(io.log(line.startsWith(label) ? line : `${label}: ${line}`))
  }
}

/** What went wrong in a step that is not an HTTP answer (the file system, a bug), as a download failure. */
const failure = (req: FetchRequest, e: unknown): DownloadError =>
  e instanceof DownloadError
    ? e
    : new DownloadError({ reason: "disk", message: oneLine(e instanceof Error ? `${req.label}: ${e.message}` : `${req.label}: ${String(e)}`) })

/**
 * The retry policy: exponential backoff from `baseDelayMs` (doubling), never
 * sooner than a server's Retry-After, at most `tries` attempts in all; each
 * retry is said in the log.
 */
const retryPolicy = (req: FetchRequest, opts: HttpOptions, io: Io, tries: number) =>
  Schedule.exponential(Duration.millis(opts.baseDelayMs ?? 500), 2).pipe(
    Schedule.setInputType<DownloadError>(),
    Schedule.modifyDelay(({ duration, input }) => Effect.succeed(Duration.millis(Math.max(Duration.toMillis(duration), input.retryAfterMs ?? 0)))),
    // the schedule is asked once more after the last try (Effect.retry's `times` stops it): say only real retries
    Schedule.tap(({ input, attempt, duration }) =>
      attempt < tries
        ? io.log(`${req.label}: ${input.message}; retrying in ${formatSeconds(Duration.toMillis(duration) / 1000)} (attempt ${attempt + 1}/${tries})`)
        : Effect.void
    )
  )

/** Attempts with retries (transient failures only); fails with the last error. */
const withRetries = (req: FetchRequest, opts: HttpOptions, io: Io, report: Reporter): Effect.Effect<Attempt, DownloadError> => {
  const tries = Math.max(1, opts.tries ?? 5)
  return Effect.tryPromise({ try: (signal) => attempt(req, opts, report, signal), catch: (e) => failure(req, e) }).pipe(
    Effect.retry({ schedule: retryPolicy(req, opts, io, tries), times: tries - 1, while: (e) => e.reason === "transient" }),
    Effect.mapError((e) =>
      e.reason === "transient" ? new DownloadError({ reason: "gave-up", message: `${req.label}: ${e.message} (gave up after ${tries} tries): ${req.url}` }) : e
    )
  )
}

const mismatch = (req: FetchRequest, got: string) =>
  new DownloadError({ reason: "checksum", message: `${req.label}: sha256 ${got} of ${req.url} does not match the expected ${req.sha256}; the download was deleted` })

/** Checks the digest, then turns the part into `dest` with its record. */
const finish = (req: FetchRequest, got: Attempt): Effect.Effect<Fetched, DownloadError> =>
  Effect.suspend(() => {
    if (req.sha256 !== undefined && got.sha256 !== req.sha256) {
      discardPart(req.dest)
      return Effect.fail(mismatch(req, got.sha256))
    }
    const p = partOf(req.dest)
    const rec: Fetched = { url: req.url, bytes: got.bytes, sha256: got.sha256, commit: got.commit }
    return onDisk(req, () => {
      fs.renameSync(p.part, req.dest)
      writeJson(p.record, rec)
      fs.rmSync(p.meta, { force: true })
      return rec
    })
  })

/** A file-system step whose failure (EACCES, ENOSPC) is a one-line error naming the download. */
const onDisk = <A>(req: FetchRequest, f: () => A): Effect.Effect<A, DownloadError> =>
  Effect.try({ try: f, catch: (e) => failure(req, e) })

const checkUrl = (req: FetchRequest): DownloadError | undefined => {
  const bad = (message: string) => new DownloadError({ reason: "url", message })
  let u: URL
  try {
    u = new URL(req.url)
  } catch {
    return bad(`${req.label}: not a URL: ${req.url}`)
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return bad(`${req.label}: only http and https URLs can be downloaded: ${u.protocol}`)
  if (u.username !== "" || u.password !== "") return bad(`${req.label}: credentials in URLs are not supported (the Hub token comes from HF_TOKEN)`)
  return undefined
}

const fetchOrMissing = (req: FetchRequest, opts: HttpOptions, io: Io): Effect.Effect<Fetched, DownloadError> =>
  Effect.gen(function* () {
    const bad = checkUrl(req)
    if (bad !== undefined) return yield* Effect.fail(bad)
    const done = completed(req)
    if (done !== undefined) {
      yield* io.log(`${req.label}: already downloaded by an earlier attempt (${formatBytes(done.bytes)})`)
      return yield* verifyDone(req, done)
    }
    yield* onDisk(req, () => fs.mkdirSync(path.dirname(req.dest), { recursive: true }))
    yield* io.log(`${req.label}: downloading ${req.url}`)
    const got = yield* withRetries(req, opts, io, throttled(io, req.label))
    const rec = yield* finish(req, got)
    yield* io.log(`${req.label}: ${formatBytes(rec.bytes)}, sha256 ${rec.sha256}${rec.commit !== null ? `, commit ${rec.commit}` : ""}`)
    return rec
  })

/** A completed download is checked against the expected digest again (it may have been asked for without one). */
const verifyDone = (req: FetchRequest, done: Fetched): Effect.Effect<Fetched, DownloadError> =>
  Effect.suspend(() => {
    if (req.sha256 === undefined || done.sha256 === req.sha256) return Effect.succeed(done)
    fs.rmSync(req.dest, { force: true })
    fs.rmSync(partOf(req.dest).record, { force: true })
    return Effect.fail(mismatch(req, done.sha256))
  })

const toStageError = (e: DownloadError) => new StageError({ message: e.message })

/** Downloads `req.url` to `req.dest` (resuming, retrying, verifying). */
export const fetchToFile = (req: FetchRequest, opts: HttpOptions, io: Io): Effect.Effect<Fetched, StageError> =>
  fetchOrMissing(req, opts, io).pipe(Effect.mapError(toStageError))

/** Like fetchToFile, but a 404 is `null` (optional files). */
export const fetchIfExists = (req: FetchRequest, opts: HttpOptions, io: Io): Effect.Effect<Fetched | null, StageError> =>
  fetchOrMissing(req, opts, io).pipe(
    Effect.catch((e) => (e.reason === "not-found" ? Effect.succeed(null) : Effect.fail(toStageError(e))))
  )
