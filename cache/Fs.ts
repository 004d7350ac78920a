/**
 * The file system as the cache and the engine use it: the synchronous calls
 * of node:fs they make, as one value they are given. Node's own module is the
 * implementation (`nodeFs`); a test hands in another, e.g. one whose disk
 * fills up at the moment an object enters the store, through the engine's
 * FileSystem service (engine/Services.ts).
 *
 * Synchronous on purpose: a no-op run is a few hundred stat calls, and the
 * store's invariants (an object enters by one rename) read best as straight
 * code; the seam is the value, not the calling convention.
 */
import * as fs from "node:fs"

export type Fs = Pick<
  typeof fs,
  | "existsSync"
  | "statSync"
  | "lstatSync"
  | "readFileSync"
  | "writeFileSync"
  | "renameSync"
  | "rmSync"
  | "mkdirSync"
  | "readdirSync"
  | "chmodSync"
  | "linkSync"
  | "copyFileSync"
  | "statfsSync"
  | "openSync"
  | "readSync"
  | "closeSync"
  | "constants"
>

export const nodeFs: Fs = fs
