/**
 * The native addon as the pipeline keys it: stages that run native code put
 * `addonBuildId()` in their versions, so a change to the addon's sources or
 * build packages reruns them. It is a digest of the bytes of
 * `Native.buildInputs(dir)` and the versions of the build packages; it leaves
 * out the compiler and the machine, so it is the same on every machine with
 * the same sources. (native/ is a leaf: the digest is taken here.)
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Digest } from "../../engine/index.ts"
import * as Native from "../../native/index.ts"

export const addonBuildId = (dir: string = Native.nativeDir): Digest.Digest => {
  const files: Record<string, Digest.Digest> = {}
  for (const file of Native.buildInputs(dir)) files[file] = Digest.ofBytes(fs.readFileSync(path.join(dir, file)))
  const tools = Object.fromEntries(Native.BUILD_PACKAGES.map((p) => [p, Native.packageVersion(p)]))
  return Digest.ofJson({ files, tools })
}
