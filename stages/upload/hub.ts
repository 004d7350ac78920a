/**
 * The Hugging Face Hub target, `hf://owner/name` (a model repo), through
 * `@huggingface/hub`: the repo is created if missing (private unless
 * `upload.private: false`), and one commit adds what changed, deletes what
 * an earlier publish wrote and this one lacks, and writes the manifest — a
 * commit is atomic, so the repo never shows half a publish. Large files go
 * through the Hub's LFS (or Xet) storage first; the Hub keeps each blob by
 * its sha256, so after a killed publish the next one does not send them again.
 *
 * What the repo holds is asked with `paths-info`: each file's size, its git
 * blob id, and for LFS files the sha256 of the content. The manifest records
 * both ids of what it published (`remote`: "<sha256> <git blob sha1>"), so a
 * check is one call and reads no local file; a publish hashes only files the
 * manifest does not vouch for.
 *
 * `HF_ENDPOINT` names the Hub (default https://huggingface.co), `HF_TOKEN`
 * the write token. The token goes in the Authorization header to that
 * endpoint and nowhere else: not in a URL, a message, the manifest or a key.
 */
import type { CommitOperation } from "@huggingface/hub"
import * as Effect from "effect/Effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { MANIFEST, type Manifest, type PublishedFile } from "../lib/publish.ts"
import type { LocalFile } from "./layout.ts"
import { parseManifest, remoteError, type RemoteTarget } from "./remote.ts"

export interface HubTargetOptions {
  /** `owner/name` */
  readonly repo: string
  readonly revision: string
  /** HF_ENDPOINT, no trailing slash */
  readonly endpoint: string
  readonly token: string | undefined
  /** create the repo private (the default) */
  readonly private: boolean
  /** per request, in ms, for the calls that read (the check, the manifest) */
  readonly timeoutMs?: number
}

interface PathInfo {
  readonly size: number
  readonly oid: string
  readonly lfsOid: string | undefined
}

/** The Hub library, imported when a Hub target is used (not when the CLI starts). */
const hubLib = () => import("@huggingface/hub")

/** sha256 and git blob sha1 of a file, in one pass. */
export const hubIds = (abs: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const size = fs.statSync(abs).size
    const sha = createHash("sha256")
    const git = createHash("sha1").update(`blob ${size}\0`)
    fs.createReadStream(abs, { highWaterMark: 4 << 20 })
      .on("data", (c) => {
        sha.update(c)
        git.update(c)
      })
      .on("error", reject)
      .on("end", () => resolve(`${sha.digest("hex")} ${git.digest("hex")}`))
  })

const matches = (remote: string | undefined, info: PathInfo): boolean => {
  if (remote === undefined) return false
  const [sha, git] = remote.split(" ")
  return (info.lfsOid !== undefined && info.lfsOid === sha) || info.oid === git
}

/** One line for a Hub failure, without the token (the library's errors carry the URL and the Hub's message). */
const hubError = (what: string) => (e: unknown): ReturnType<typeof remoteError> => {
  const err = e as { statusCode?: number; message?: string }
  const status = err.statusCode
  const hint = status === 401 ? ": HF_TOKEN is missing or refused" : status === 403 ? ": HF_TOKEN has no write access to this repo" : ""
  return remoteError(`${what}${hint}: ${(err.message ?? String(e)).split("\n")[0]}`)
}

export const hubTarget = (o: HubTargetOptions): RemoteTarget => {
  const label = `hf://${o.repo}`
  const repo = { type: "model" as const, name: o.repo }
  const credentials = o.token !== undefined ? { accessToken: o.token } : {}
  const timeout = o.timeoutMs ?? 30_000

  const readManifest = Effect.tryPromise({
    try: async (signal) => {
      const url = `${o.endpoint}/${o.repo}/resolve/${encodeURIComponent(o.revision)}/${MANIFEST}`
      const res = await fetch(url, {
        headers: o.token !== undefined ? { authorization: `Bearer ${o.token}` } : {},
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeout)])
      })
      if (res.status === 404) return undefined
      if (res.status === 401 || res.status === 403)
        throw new Error(`${label}: the Hub answered ${res.status}${o.token === undefined ? " (HF_TOKEN is not set)" : " (HF_TOKEN has no access)"}`)
      if (!res.ok) throw new Error(`${label}/${MANIFEST}: the Hub answered ${res.status}`)
      return await res.text()
    },
    catch: (e) => remoteError(`reading ${label}/${MANIFEST}: ${(e as Error).message}`)
  }).pipe(Effect.map(parseManifest))

  const infos = (paths: ReadonlyArray<string>) =>
    Effect.tryPromise({
      try: async () => {
        const out = new Map<string, PathInfo>()
        for (let i = 0; i < paths.length; i += 100) {
          try {
            const got = await (await hubLib()).pathsInfo({
              repo,
              paths: paths.slice(i, i + 100) as Array<string>,
              revision: o.revision,
              hubUrl: o.endpoint,
              ...credentials,
              // a Hub that does not answer is an error, not a hung plan
              fetch: (input: string | URL | Request, init?: RequestInit) =>
                fetch(input, { ...init, signal: AbortSignal.any([init?.signal ?? new AbortController().signal, AbortSignal.timeout(timeout)]) })
            })
            for (const p of got) if (p.type === "file") out.set(p.path, { size: p.size, oid: p.oid ?? "", lfsOid: p.lfs?.oid })
          } catch (e) {
            // a repo (or revision) that does not exist yet holds nothing
            if ((e as { statusCode?: number }).statusCode === 404) return out
            throw e
          }
        }
        return out
      },
      catch: hubError(`asking ${label} what it holds`)
    })

  const survey: RemoteTarget["survey"] = (files, previous, cheap) =>
    Effect.gen(function* () {
      const there = yield* infos(files.map((f) => f.path))
      const recorded = new Map(typeof previous === "object" ? previous.files.map((f) => [f.path, f]) : [])
      const held = new Map<string, string>()
      for (const f of files) {
        const info = there.get(f.path)
        if (info === undefined || info.size !== f.size) continue
        const r = recorded.get(f.path)
        if (r !== undefined && r.digest === f.digest && matches(r.remote, info)) held.set(f.path, r.remote!)
        else if (!cheap) {
          const ids = yield* Effect.tryPromise({ try: () => hubIds(f.abs), catch: (e) => remoteError(`reading ${f.abs}: ${(e as Error).message}`) })
          if (matches(ids, info)) held.set(f.path, ids)
        }
      }
      return held
    })

  const verify: RemoteTarget["verify"] = (m) =>
    Effect.map(infos(m.files.map((f) => f.path)), (there) => {
      for (const f of m.files) {
        const info = there.get(f.path)
        if (info === undefined) return `published file missing: ${label}/${f.path}`
        if (info.size !== f.size || !matches(f.remote, info)) return `published file modified: ${label}/${f.path}`
      }
      return undefined
    })

  const commit: RemoteTarget["commit"] = (c, io) =>
    Effect.gen(function* () {
      if (o.token === undefined) return yield* remoteError(`publishing to ${label} needs HF_TOKEN (a token with write access)`)
      yield* Effect.tryPromise({
        try: async () => {
          try {
            await (await hubLib()).createRepo({ repo, private: o.private, hubUrl: o.endpoint, accessToken: o.token! })
          } catch (e) {
            if ((e as { statusCode?: number }).statusCode !== 409) throw e // 409: it exists
          }
        },
        catch: hubError(`creating ${label}`)
      })
      const sent: Array<PublishedFile> = []
      for (const f of c.send) {
        const ids = yield* Effect.tryPromise({ try: () => hubIds(f.abs), catch: (e) => remoteError(`reading ${f.abs}: ${(e as Error).message}`) })
        sent.push({ path: f.path, size: f.size, digest: f.digest, remote: ids })
      }
      const files = [...c.kept, ...sent].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
      const manifest: Manifest = { publisher: "finetune-pipeline", key: c.key, files }
      const blobs = yield* Effect.tryPromise({
        try: () => Promise.all(c.send.map((f: LocalFile) => fs.openAsBlob(f.abs))),
        catch: (e) => remoteError(`reading the files to publish: ${(e as Error).message}`)
      })
      const operations: Array<CommitOperation> = [
        ...c.send.map((f, i): CommitOperation => ({ operation: "addOrUpdate", path: f.path, content: blobs[i]! })),
        ...c.remove.map((p): CommitOperation => ({ operation: "delete", path: p })),
        { operation: "addOrUpdate", path: MANIFEST, content: new Blob([JSON.stringify(manifest, null, 2) + "\n"]) }
      ]
      const total = c.send.reduce((a, f) => a + f.size, 0)
      yield* io.progress.total(total, "bytes")
      const sizes = new Map(c.send.map((f) => [f.path, f.size]))
      const done = new Map<string, number>()
      yield* Effect.tryPromise({
        try: async (signal) => {
          const it = (await hubLib()).commitIter({
            repo,
            accessToken: o.token!,
            hubUrl: o.endpoint,
            branch: o.revision,
            title: `finetune-pipeline: publish ${c.key.replace(/^blake3:/, "").slice(0, 12)}`,
            operations,
            abortSignal: signal
          })
          for (;;) {
            const r = await it.next()
            if (r.done) return r.value
            const ev = r.value
            if (ev.event === "fileProgress" && ev.state === "uploading" && sizes.has(ev.path)) {
              done.set(ev.path, ev.progress * sizes.get(ev.path)!)
              Effect.runSync(io.progress.update(Math.round([...done.values()].reduce((a, b) => a + b, 0))))
            }
          }
        },
        catch: hubError(`committing to ${label}`)
      })
      return manifest
    })

  return { label, readManifest, survey, verify, commit }
}
