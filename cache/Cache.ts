/**
 * The cache of stage results as the engine asks it: by stage and key. `get`
 * answers with a hit only when everything the result needs can be had (every
 * object present and intact here, or fetchable from a remote); a hit is
 * something you `apply`: it builds the outputs in a directory the engine then
 * swaps into out/<stage>/. `put` records a finished stage's result and may
 * decline (a read-only remote, a full disk): a cache is an optimisation, and
 * declining never fails a run.
 *
 * The local store and run-cache (LocalCache.ts) are the first implementation;
 * the remote caches of a later issue (HTTP, S3) plug in behind the same
 * interface.
 */
import type { Digest } from "./Digest.ts"
import type { OutputRecord } from "./Store.ts"

/** What a cache keeps per key: the outputs (the lock's record of a stage has this shape and more). */
export interface CachedResult {
  readonly key: Digest
  readonly outputs: ReadonlyArray<OutputRecord>
}

export interface Hit<E extends CachedResult> {
  /** where it comes from, for the plan: "local", or a remote's name */
  readonly source: string
  readonly entry: E
  /**
   * true when the entry is known from a remote and its objects are not all
   * here yet: they must be fetched from `source` before `apply`
   */
  readonly fetch: boolean
  /** whether this output can be had (a freed temporary output may not be) */
  readonly available: (o: OutputRecord) => boolean
  /**
   * Builds the outputs under `dir` (each at its path below `out/<stage>/`),
   * all of them, or those `wanted` says. Throws when a file cannot be
   * written (a full disk); the engine reports it.
   */
  readonly apply: (dir: string, stage: string, wanted?: (o: OutputRecord) => boolean) => void
}

export interface Cache<E extends CachedResult> {
  /**
   * A hit for `key`: the entry recorded for it, or `known` (the lock's entry of
   * the same key), when the outputs `needed` says (default: all) can be had.
   */
  readonly get: (stage: string, key: Digest, options?: { readonly known?: E; readonly needed?: (o: OutputRecord) => boolean }) => Hit<E> | undefined
  /** Records a finished stage's result (its objects are in the store); false when declined. */
  readonly put: (stage: string, entry: E, createdAt: Date) => boolean
}
