/**
 * The S3 target, `s3://bucket/prefix`, through the engine's S3 service
 * (cache/S3.ts: any S3-compatible endpoint, multipart, resumable parts).
 *
 * Each object carries the engine's digest of its content as metadata
 * (`x-amz-meta-pipeline-digest`), so asking the bucket what it holds is a
 * HEAD per file; the manifest records each object's ETag, so checking a
 * publish is one listing. An object at a path this publish writes that no
 * publish wrote (no digest metadata, not in the manifest) is refused, never
 * overwritten.
 */
import * as Effect from "effect/Effect"
import * as path from "node:path"
import { S3 } from "../../engine/index.ts"
import { MANIFEST, type Manifest, type PublishedFile } from "../lib/publish.ts"
import { parseManifest, remoteError, type RemoteTarget } from "./remote.ts"

const DIGEST_META = "pipeline-digest"

export interface S3TargetOptions {
  readonly partSize: number
  /** where resumable multipart uploads keep their state (the stage's scratch directory) */
  readonly stateDir: string
}

export const s3Target = (s3: S3.S3, loc: S3.S3Location, options: S3TargetOptions): RemoteTarget => {
  const label = `s3://${loc.bucket}${loc.prefix === "" ? "" : `/${loc.prefix}`}`
  const key = (rel: string) => S3.keyIn(loc, rel)
  const fail = (e: S3.S3Error) => remoteError(e.message)

  const readManifest = Effect.map(Effect.mapError(s3.getText(loc.bucket, key(MANIFEST)), fail), parseManifest)

  const survey: RemoteTarget["survey"] = (files, previous) =>
    Effect.gen(function* () {
      const recorded = new Set(typeof previous === "object" ? previous.files.map((f) => f.path) : [])
      const heads = yield* Effect.forEach(files, (f) => Effect.mapError(s3.head(loc.bucket, key(f.path)), fail), { concurrency: 8 })
      const held = new Map<string, string>()
      const foreign: Array<string> = []
      files.forEach((f, i) => {
        const h = heads[i]
        if (h === undefined) return
        const digest = h.metadata?.[DIGEST_META]
        if (digest === undefined && !recorded.has(f.path)) foreign.push(f.path)
        else if (digest === f.digest && h.size === f.size) held.set(f.path, h.etag)
      })
      if (foreign.length > 0)
        return yield* remoteError(
          `${label} holds ${foreign.length} object${foreign.length === 1 ? "" : "s"} that no publish wrote (${foreign.slice(0, 3).join(", ")}${foreign.length > 3 ? ", …" : ""}); publishing would overwrite them, so pick an empty prefix`
        )
      return held
    })

  const verify: RemoteTarget["verify"] = (m) =>
    Effect.gen(function* () {
      const listed = new Map((yield* Effect.mapError(s3.list(loc.bucket, loc.prefix === "" ? "" : `${loc.prefix}/`), fail)).map((o) => [o.key, o]))
      for (const f of m.files) {
        const o = listed.get(key(f.path))
        if (o === undefined) return `published file missing: ${label}/${f.path}`
        if (o.size !== f.size || (f.remote !== undefined && o.etag !== f.remote)) return `published file modified: ${label}/${f.path}`
      }
      return undefined
    })

  const commit: RemoteTarget["commit"] = (c, io) =>
    Effect.gen(function* () {
      const total = c.send.reduce((a, f) => a + f.size, 0)
      yield* io.progress.total(total, "bytes")
      let before = 0
      const sent: Array<PublishedFile> = []
      for (const f of c.send) {
        const stateFile = path.join(options.stateDir, `${f.path.replace(/[^A-Za-z0-9._-]/g, "_")}.multipart.json`)
        let last = 0
        const info = yield* Effect.mapError(
          s3.putFile(loc.bucket, key(f.path), f.abs, {
            metadata: { [DIGEST_META]: f.digest },
            partSize: options.partSize,
            stateFile,
            onBytes: (n) => {
              last = n
              Effect.runSync(io.progress.update(before + n))
            }
          }),
          fail
        )
        if (info.size !== f.size) return yield* remoteError(`${label}/${f.path}: the bucket stored ${info.size} bytes of ${f.size}`)
        before += Math.max(last, f.size)
        sent.push({ path: f.path, size: f.size, digest: f.digest, remote: info.etag })
      }
      if (c.remove.length > 0) yield* Effect.mapError(s3.remove(loc.bucket, c.remove.map(key)), fail)
      const files = [...c.kept, ...sent].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
      const manifest: Manifest = { publisher: "finetune-pipeline", key: c.key, files }
      yield* Effect.mapError(s3.putText(loc.bucket, key(MANIFEST), JSON.stringify(manifest, null, 2) + "\n"), fail)
      return manifest
    })

  return { label, readManifest, survey, verify, commit }
}
