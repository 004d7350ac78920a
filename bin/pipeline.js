#!/usr/bin/env node
// The `pipeline` command. It finds `pipeline.ts` (here or in a parent
// directory), loads it, and hands its stages to the engine's CLI.
//
// Loading: the pipeline and the engine are TypeScript run as-is (Node's type
// stripping; no build step for users). For start-up speed they are bundled on
// first use into `.pipeline/bundle/` with rolldown, together with effect and
// yaml, and the bundle is reused until a source file it was built from changes
// (checked by size and mtime). PIPELINE_NO_BUNDLE=1 loads the sources directly.
import module from "node:module"
import fs from "node:fs"
import path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

module.enableCompileCache?.()

// The project pins Node 24 (the `node` package in devDependencies), which `npx pipeline` and the
// npm scripts run on. There is deliberately no `engines` field: npm checks it against the Node
// that runs npm itself (often older), and printed ten lines of EBADENGINE on a newcomer's first
// command. This check says the same thing once, where it matters.
const [major, minor] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(`error: the pipeline runs on Node 24 (this is Node ${process.versions.node}): run it as \`npx pipeline\`, which uses the Node that \`npm ci\` installed into node_modules\n`)
  process.exit(2)
}

const findPipeline = (dir) => {
  for (;;) {
    const p = path.join(dir, "pipeline.ts")
    if (fs.existsSync(p)) return p
    const up = path.dirname(dir)
    if (up === dir) return undefined
    dir = up
  }
}

const entry = process.env.PIPELINE_FILE ? path.resolve(process.env.PIPELINE_FILE) : findPipeline(process.cwd())
if (!entry || !fs.existsSync(entry)) {
  process.stderr.write("error: no pipeline.ts in this directory or any parent (set PIPELINE_FILE to use another file)\n")
  process.exit(2)
}
const engineCli = fileURLToPath(new URL("../engine/Cli.ts", import.meta.url))

const direct = async () => {
  const [def, cli] = await Promise.all([import(pathToFileURL(entry).href), import(pathToFileURL(engineCli).href)])
  return { definition: def.default, main: cli.main }
}

let mod
if (process.env.PIPELINE_NO_BUNDLE === "1") mod = await direct()
else {
  const { bundled } = await import("./bundle.js")
  let url
  try {
    url = await bundled(entry, engineCli)
  } catch {
    // the bundle is only a start-up cache: when it cannot be written (.pipeline is
    // not a directory, a read-only checkout), load the sources as they are
  }
  mod = url === undefined ? await direct() : await import(url)
}
if (!mod.definition || !Array.isArray(mod.definition.stages)) {
  process.stderr.write(`error: ${entry} must \`export default\` a pipeline: { root, stages }\n`)
  process.exit(2)
}
await mod.main(mod.definition)
