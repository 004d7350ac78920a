/**
 * The local cache: the content-addressed store (Store.ts) and the run-cache
 * (RunCache.ts) behind the engine's Cache interface (Cache.ts). A hit needs
 * every object of every output present and intact (checked through the stat
 * cache); applying it links or copies them into place.
 */
import * as path from "node:path"
import type { Cache, CachedResult, Hit } from "./Cache.ts"
import type { Digest } from "./Digest.ts"
import type { RunCache } from "./RunCache.ts"
import type { OutputRecord, Store } from "./Store.ts"

export class LocalCache<E extends CachedResult> implements Cache<E> {
  private readonly store: Store
  private readonly runs: RunCache<E>

  private readonly origin: (stage: string, key: Digest) => string | undefined

  /** `origin`: where an entry came from when not from this workspace (a remote's name, for the plan) */
  constructor(store: Store, runs: RunCache<E>, origin: (stage: string, key: Digest) => string | undefined = () => undefined) {
    this.store = store
    this.runs = runs
    this.origin = origin
  }

  /** Whether every object the outputs need is here and intact. */
  has(outputs: ReadonlyArray<OutputRecord>): boolean {
    return outputs.every((o) => this.store.canRestore(o))
  }

  private hit(stage: string, entry: E): Hit<E> {
    return {
      source: this.origin(stage, entry.key) ?? "local",
      entry,
      available: (o) => this.store.canRestore(o),
      apply: (dir, stage, wanted = () => true) => {
        const prefix = `out/${stage}/`
        for (const o of entry.outputs) if (wanted(o)) this.store.materialize(o, path.join(dir, o.path.slice(prefix.length)))
      }
    }
  }

  readonly get = (stage: string, key: Digest, options: { readonly known?: E; readonly needed?: (o: OutputRecord) => boolean } = {}): Hit<E> | undefined => {
    const entry = options.known !== undefined && options.known.key === key ? options.known : this.runs.get(stage, key)?.entry
    if (entry === undefined) return undefined
    return this.has(entry.outputs.filter(options.needed ?? (() => true))) ? this.hit(stage, entry) : undefined
  }

  readonly put = (stage: string, entry: E, createdAt: Date): boolean => {
    this.runs.put(stage, entry, createdAt)
    return true
  }
}
