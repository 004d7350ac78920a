// Bundles pipeline.ts + the engine (+ effect, yaml) into one ES module so the
// CLI starts in tens of milliseconds instead of resolving hundreds of modules.
// The bundle is rebuilt only when a file it was built from changed.
import fs from "node:fs"
import path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const BUNDLED = [/^effect(\/|$)/, /^@effect\//, /^yaml(\/|$)/]
const FORMAT = 1

const stamp = (file) => {
  try {
    const st = fs.statSync(file)
    return [file, st.mtimeMs, st.size]
  } catch {
    return [file, 0, -1]
  }
}

const fresh = (manifestFile, entry, engineCli) => {
  let m
  try {
    m = JSON.parse(fs.readFileSync(manifestFile, "utf8"))
  } catch {
    return false
  }
  // a manifest that is not what this code writes (null, garbage, an older format) means "build again"
  if (typeof m !== "object" || m === null || !Array.isArray(m.inputs)) return false
  if (m.format !== FORMAT || m.node !== process.version || m.entry !== entry || m.engine !== engineCli) return false
  for (const rec of m.inputs) {
    if (!Array.isArray(rec) || rec.length !== 3) return false
    const [file, mtimeMs, size] = rec
    const [, t, s] = stamp(file)
    if (t !== mtimeMs || s !== size) return false
  }
  return true
}

const nearestPackageLock = (dir) => {
  for (;;) {
    const p = path.join(dir, "node_modules", ".package-lock.json")
    if (fs.existsSync(p)) return p
    const up = path.dirname(dir)
    if (up === dir) return undefined
    dir = up
  }
}

export const bundled = async (entry, engineCli) => {
  const root = path.dirname(entry)
  const outDir = path.join(root, ".pipeline", "bundle")
  const manifestFile = path.join(outDir, "manifest.json")
  const outFile = path.join(outDir, "pipeline.mjs")
  if (fresh(manifestFile, entry, engineCli)) return pathToFileURL(outFile).href
  const buildStarted = Date.now()

  const { rolldown } = await import("rolldown")
  const VIRTUAL = "\0pipeline-entry"
  const tmpDir = `${outDir}.tmp-${process.pid}`
  fs.rmSync(tmpDir, { recursive: true, force: true })
  const bundle = await rolldown({
    input: VIRTUAL,
    platform: "node",
    logLevel: "silent",
    plugins: [
      {
        name: "pipeline",
        resolveId: {
          order: "pre",
          async handler(source, importer, opts) {
            if (source === VIRTUAL) return VIRTUAL
            // file: URLs are paths: resolve them like one, so they are bundled (and shared) too
            if (source.startsWith("file:")) return this.resolve(fileURLToPath(source), importer, { ...opts, skipSelf: true })
            const bare = !source.startsWith(".") && !path.isAbsolute(source) && !source.startsWith("\0")
            if (!bare || source.startsWith("node:") || BUNDLED.some((r) => r.test(source))) return null
            // Everything else (native addons, tokenizers, SDKs) stays an
            // external import, resolved to an absolute path so the bundle
            // works from any workspace.
            const r = await this.resolve(source, importer, { ...opts, skipSelf: true })
            if (!r || r.external) return { id: source, external: true }
            return { id: pathToFileURL(r.id).href, external: true }
          }
        },
        load(id) {
          if (id !== VIRTUAL) return null
          return `import definition from ${JSON.stringify(entry)}\nexport { main } from ${JSON.stringify(engineCli)}\nexport { definition }\n`
        },
        transform(code, id) {
          if (id.includes(`${path.sep}node_modules${path.sep}`) || !code.includes("import.meta.")) return null
          // Keep each project module's own location: stages fingerprint their source by it.
          return code
            .replaceAll("import.meta.url", JSON.stringify(pathToFileURL(id).href))
            .replaceAll("import.meta.dirname", JSON.stringify(path.dirname(id)))
            .replaceAll("import.meta.filename", JSON.stringify(id))
        }
      }
    ]
  })
  const { output } = await bundle.write({ dir: tmpDir, format: "esm", entryFileNames: "pipeline.mjs", chunkFileNames: "[name]-[hash].mjs" })
  await bundle.close()
  const inputs = new Set()
  for (const chunk of output) if (chunk.type === "chunk") for (const id of chunk.moduleIds) if (!id.startsWith("\0") && !id.includes(`${path.sep}node_modules${path.sep}`)) inputs.add(id)
  const lockStamp = nearestPackageLock(path.dirname(engineCli))
  if (lockStamp) inputs.add(lockStamp)
  inputs.add(entry)
  const stamps = [...inputs].sort().map(stamp)
  // A source edited while rolldown read it may be bundled old but stamped new: then write no
  // manifest, so the next start builds again.
  if (stamps.every(([, mtimeMs]) => mtimeMs < buildStarted - 5))
    fs.writeFileSync(path.join(tmpDir, "manifest.json"), JSON.stringify({ format: FORMAT, node: process.version, entry, engine: engineCli, inputs: stamps }))
  fs.rmSync(outDir, { recursive: true, force: true })
  try {
    fs.renameSync(tmpDir, outDir)
  } catch {
    // another process won the race with an equivalent bundle
    fs.rmSync(tmpDir, { recursive: true, force: true })
  }
  return pathToFileURL(outFile).href
}
