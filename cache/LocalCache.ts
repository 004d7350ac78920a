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

  private readonly remote: (stage: string, key: Digest) => { readonly name: string; readonly entry: E } | undefined

  /**
   * `remote`: an entry this process learnt from a remote, by stage and key: where it came from
   * (a remote's name, for the plan), and the entry itself, whose objects may not be here yet
   */
  constructor(store: Store, runs: RunCache<E>, remote: (stage: string, key: Digest) => { readonly name: string; readonly entry: E } | undefined = () => undefined) {
    this.store = store
    this.runs = runs
    this.remote = remote
  }

  /** Whether every object the outputs need is here and intact. */
  has(outputs: ReadonlyArray<OutputRecord>): boolean {
    return outputs.every((o) => this.store.canRestore(o))
  }

  private hit(stage: string, entry: E, fetch: boolean): Hit<E> {
    return {
      source: this.remote(stage, entry.key)?.name ?? "local",
      entry,
      fetch,
      available: (o) => fetch || this.store.canRestore(o),
      apply: (dir, stage, wanted = () => true) => {
        const prefix = `out/${stage}/`
        for (const o of entry.outputs) if (wanted(o)) this.store.materialize(o, path.join(dir, o.path.slice(prefix.length)))
      }
    }
  }

  readonly get = (stage: string, key: Digest, options: { readonly known?: E; readonly needed?: (o: OutputRecord) => boolean } = {}): Hit<E> | undefined => {
    const remote = this.remote(stage, key)
    const entry = options.known !== undefined && options.known.key === key ? options.known : (this.runs.get(stage, key)?.entry ?? remote?.entry)
    if (entry === undefined) return undefined
    if (this.has(entry.outputs.filter(options.needed ?? (() => true)))) return this.hit(stage, entry, false)
    // known from a remote: a hit whose objects come from there first
    return remote !== undefined ? this.hit(stage, remote.entry, true) : undefined
  }

  readonly put = (stage: string, entry: E, createdAt: Date): boolean => {
    this.runs.put(stage, entry, createdAt)
    return true
  }
}
