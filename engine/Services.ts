/**
 * The effects the engine reaches the world through, as services with a Node
 * layer each, so tests can swap them:
 *
 * - `FileSystem`: the synchronous file calls the store, the caches, the
 *   planner and the executor make (cache/Fs.ts). `FileSystem.node` is node:fs;
 *   a test provides one that fails where it wants (a disk that fills up as an
 *   object enters the store).
 * - the clock is Effect's own `Clock` service: run-cache entries are stamped
 *   and stages timed with `Clock.currentTimeMillis`, and `gc --older-than 7d`
 *   counts from it, so a test moves time with `TestClock`.
 * - console output is `Output` (Progress.ts).
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import { type Fs, nodeFs } from "../cache/Fs.ts"

export class FileSystem extends Context.Service<FileSystem, Fs>()("finetune-pipeline/engine/FileSystem") {
  static readonly node = Layer.sync(FileSystem, () => nodeFs)
}
