/**
 * Publishing to a remote target (an S3 prefix, a Hub repo), the same way for
 * both:
 *
 * - The target holds a manifest, `.pipeline-publish.json`, written last: the
 *   stage key, and for each file its size, the engine's digest and what the
 *   target calls that content (`remote`: an S3 ETag, a Hub blob and LFS oid).
 * - Before sending, the target is asked what it already holds: a file whose
 *   bytes are there is not sent again (a publish killed half-way resumes with
 *   what is missing); a deleted or changed remote file is sent again.
 * - Files an earlier publish recorded and this one no longer has are removed;
 *   nothing else on the target is ever deleted.
 * - `checkPublished` is the stage's external check: the plan reruns upload
 *   when the target lacks the manifest of this key, or any file it records is
 *   gone or changed. `previewPublish` is what `--dry-run` lists.
 */
import * as Effect from "effect/Effect"
import { type Progress, StageError, Units } from "../../engine/index.ts"
import { isManifest, MANIFEST, type Manifest, type PublishedFile } from "../lib/publish.ts"
import type { LocalFile } from "./layout.ts"

export type ManifestState = Manifest | "absent" | "damaged"

export const parseManifest = (text: string | undefined): ManifestState => {
  if (text === undefined) return "absent"
  try {
    const m = JSON.parse(text) as unknown
    return isManifest(m) ? m : "damaged"
  } catch {
    return "damaged"
  }
}

export interface Io {
  readonly progress: Progress
  readonly log: (line: string) => Effect.Effect<void>
}

export interface Commit {
  readonly key: string
  /** files to send */
  readonly send: ReadonlyArray<LocalFile>
  /** paths an earlier publish wrote that this one does not have */
  readonly remove: ReadonlyArray<string>
  /** the manifest's entries for files already in place (with their remote ids) */
  readonly kept: ReadonlyArray<PublishedFile>
}

export interface RemoteTarget {
  /** `s3://bucket/prefix`, `hf://owner/name`: for messages */
  readonly label: string
  readonly readManifest: Effect.Effect<ManifestState, StageError>
  /**
   * For each local file the target already holds byte for byte, its remote id.
   * `cheap`: answer from the manifest and the target's listing, without reading
   * local files (the plan's preview); a run may hash them.
   */
  readonly survey: (files: ReadonlyArray<LocalFile>, previous: ManifestState, cheap: boolean) => Effect.Effect<Map<string, string>, StageError>
  /** whether every file `manifest` records is still there, unchanged; else why not */
  readonly verify: (manifest: Manifest) => Effect.Effect<string | undefined, StageError>
  /** sends, removes, and writes the manifest last; returns it */
  readonly commit: (c: Commit, io: Io) => Effect.Effect<Manifest, StageError>
}

/** The stage's external check: undefined when the target holds what `key` published. */
export const checkPublished = (target: RemoteTarget, key: string): Effect.Effect<string | undefined> =>
  Effect.gen(function* () {
    const m = yield* target.readManifest
    if (m === "absent") return `not published: ${target.label} has no ${MANIFEST}`
    if (m === "damaged") return `${target.label}/${MANIFEST} is damaged`
    if (m.key !== key) return `${target.label} holds another publish (other inputs or params)`
    return yield* target.verify(m)
  }).pipe(Effect.catch((e) => Effect.succeed(`cannot check ${target.label}: ${e.message}`)))

export interface Preview {
  readonly send: ReadonlyArray<LocalFile>
  readonly unchanged: number
  readonly remove: ReadonlyArray<string>
}

const plan = (files: ReadonlyArray<LocalFile>, previous: ManifestState, held: Map<string, string>): Preview => {
  const send = files.filter((f) => !held.has(f.path))
  const now = new Set(files.map((f) => f.path))
  const remove = typeof previous === "object" ? previous.files.map((f) => f.path).filter((p) => !now.has(p)) : []
  return { send, unchanged: files.length - send.length, remove }
}

/** What a publish of `files` would send now (the card and the manifest aside). */
export const previewPublish = (target: RemoteTarget, files: ReadonlyArray<LocalFile>): Effect.Effect<Preview, StageError> =>
  Effect.gen(function* () {
    const previous = yield* target.readManifest
    return plan(files, previous, yield* target.survey(files, previous, true))
  })

export const describePreview = (label: string, p: Preview): Array<string> => {
  const bytes = p.send.reduce((a, f) => a + f.size, 0)
  const lines = [
    p.send.length === 0
      ? `${label} holds all ${p.unchanged} files; sends nothing but the manifest`
      : `sends ${p.send.length} file${p.send.length === 1 ? "" : "s"} (${Units.formatBytes(bytes)}) to ${label}${p.unchanged > 0 ? `, ${p.unchanged} already there` : ""}:`
  ]
  for (const f of p.send) lines.push(`  ${f.path}  ${Units.formatBytes(f.size)}`)
  if (p.remove.length > 0) lines.push(`removes ${p.remove.length} file${p.remove.length === 1 ? "" : "s"} an earlier publish wrote: ${p.remove.join(", ")}`)
  return lines
}

/** Publishes `files` to the target under `key`; what is already there is not sent. */
export const publishTo = (target: RemoteTarget, files: ReadonlyArray<LocalFile>, key: string, io: Io): Effect.Effect<Manifest, StageError> =>
  Effect.gen(function* () {
    const previous = yield* target.readManifest
    if (previous === "damaged") yield* io.log(`${target.label}/${MANIFEST} is damaged: files it recorded and this publish lacks stay on the target`)
    const held = yield* target.survey(files, previous, false)
    const p = plan(files, previous, held)
    for (const line of describePreview(target.label, p)) yield* io.log(line)
    const kept = files.filter((f) => held.has(f.path)).map((f): PublishedFile => ({ path: f.path, size: f.size, digest: f.digest, remote: held.get(f.path)! }))
    return yield* target.commit({ key, send: p.send, remove: p.remove, kept }, io)
  })

/** A one-line StageError for a remote failure. */
export const remoteError = (message: string) => new StageError({ message })
