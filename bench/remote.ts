/**
 * Restoring a fully pushed pipeline from the HTTP remote into an empty workspace
 * (`pipeline pull`), against plain curl fetching the same objects from the same
 * server (nginx with WebDAV, on loopback), one by one and four at a time (our
 * pull fetches four at a time). Ours also checks every object's BLAKE3 digest
 * and links the outputs into out/; curl only writes the bytes.
 *
 * The pipeline: four stages writing one 256 MiB file each and one writing 64
 * files of 4 MiB (1.25 GiB in all, random bytes).
 *
 * Goal: at least 70 % of curl's throughput.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { startNginx } from "../tests/nginx.ts"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const NODE = process.execPath
const BIN = fileURLToPath(new URL("../bin/pipeline.js", import.meta.url))
const ENGINE = fileURLToPath(new URL("../engine/index.ts", import.meta.url))
const EFFECT = fileURLToPath(import.meta.resolve("effect/Effect"))
const MiB = 1024 * 1024

const has = (tool: string): boolean => spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0

const pipelineTs = (): string => `import * as fs from "node:fs"
import * as path from "node:path"
import { randomBytes } from "node:crypto"
import * as Effect from ${JSON.stringify(EFFECT)}
import { Stage } from ${JSON.stringify(ENGINE)}

const blob = (file: string, bytes: number) => {
  const fd = fs.openSync(file, "w")
  for (let done = 0; done < bytes; done += ${MiB}) fs.writeSync(fd, randomBytes(Math.min(${MiB}, bytes - done)))
  fs.closeSync(fd)
}
const big = (name: string) => Stage.make({
  name, module: import.meta.url, params: {},
  outputs: { out: Stage.file("big.bin") },
  estimate: () => ({ bytes: { out: ${256 * MiB} }, seconds: 1 }),
  run: (ctx) => Effect.sync(() => blob(ctx.outputs.out, ${256 * MiB}))
})
const many = Stage.make({
  name: "many", module: import.meta.url, params: {},
  outputs: { files: Stage.dir("files") },
  estimate: () => ({ bytes: { files: ${256 * MiB} }, seconds: 1 }),
  run: (ctx) => Effect.sync(() => { for (let i = 0; i < 64; i++) blob(path.join(ctx.outputs.files, "part-" + i + ".bin"), ${4 * MiB}) })
})
export default { root: import.meta.dirname, stages: [big("b1"), big("b2"), big("b3"), big("b4"), many] }
`

const timed = (f: () => void): number => {
  const t0 = performance.now()
  f()
  return (performance.now() - t0) / 1000
}

export const remoteTable = async (): Promise<string> => {
  if (!has("nginx")) return "## Remote cache restore\n\nnginx not installed: skipped\n"
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "bench-remote-"))
  fs.chmodSync(root, 0o700)
  const n = await startNginx()
  const server = { url: `http://127.0.0.1:${n.port}/cache`, data: n.data }
  try {
    const make = (name: string) => {
      const ws = path.join(root, name)
      fs.mkdirSync(ws)
      fs.writeFileSync(path.join(ws, "pipeline.ts"), pipelineTs())
      fs.writeFileSync(path.join(ws, "pipeline.yaml"), `remotes: { team: { url: "${server.url}" } }\n`)
      return ws
    }
    const cli = (ws: string, args: Array<string>) => execFileSync(NODE, [BIN, ...args], { cwd: ws, encoding: "utf8", env: { ...process.env, CI: "true" } })
    const origin = make("origin")
    cli(origin, ["run"])
    cli(origin, ["push"])
    const objects = fs.readdirSync(path.join(server.data, "cache", "cas"))
    const bytes = objects.reduce((a, o) => a + fs.statSync(path.join(server.data, "cache", "cas", o)).size, 0)
    const rows: Array<[string, number]> = []
    // each measurement starts with the dirty pages of the last one written out (sync), and the
    // tools take turns, so neither pays for the other's writeback
    const settle = () => execFileSync("sync")
    for (let rep = 0; rep < 3; rep++) {
      const clone = make(`clone-${rep}`)
      fs.copyFileSync(path.join(origin, "pipeline.lock"), path.join(clone, "pipeline.lock"))
      cli(clone, ["dag"]) // the bundle is built outside the timing
      settle()
      rows.push([`pipeline pull (verify + link into out/) #${rep + 1}`, timed(() => cli(clone, ["pull"]))])
      if (process.env["BENCH_KEEP"] !== "1") fs.rmSync(clone, { recursive: true, force: true })
      {
        // node:http into files, no digest, no store, no CLI: what a plain Node client gets (our pull
        // reads the socket into one reused buffer instead, cache/HttpGet.ts)
        const dest = path.join(root, `node-${randomBytes(3).toString("hex")}`)
        fs.mkdirSync(dest)
        const script = `const http=require("node:http"),fs=require("node:fs");const objs=${JSON.stringify(objects)};let i=0;
const get=(o)=>new Promise((res,rej)=>http.get(${JSON.stringify(server.url)}+"/cas/"+o,(r)=>{const fd=fs.openSync(${JSON.stringify(dest)}+"/"+o,"w");r.on("data",(c)=>fs.writeSync(fd,c));r.on("end",()=>{fs.closeSync(fd);res()});r.on("error",rej)}).on("error",rej));
Promise.all([0,1,2,3].map(async()=>{while(i<objs.length)await get(objs[i++])}))`
        settle()
        rows.push([`node:http + writeSync, no digest or store #${rep + 1}`, timed(() => execFileSync(NODE, ["-e", script], { stdio: "ignore" }))])
        fs.rmSync(dest, { recursive: true, force: true })
      }
      if (has("curl"))
        for (const [label, extra] of [["curl, one at a time", []], ["curl --parallel --parallel-max 4", ["--parallel", "--parallel-max", "4"]]] as const) {
          const dest = path.join(root, `curl-${randomBytes(3).toString("hex")}`)
          fs.mkdirSync(dest)
          const args = ["-sS", "--fail", ...extra, ...objects.flatMap((o) => ["-o", path.join(dest, o), `${server.url}/cas/${o}`])]
          settle()
          rows.push([`${label} #${rep + 1}`, timed(() => execFileSync("curl", args, { stdio: "ignore", maxBuffer: 1 << 20 }))])
          fs.rmSync(dest, { recursive: true, force: true })
        }
    }
    if (!has("curl")) rows.push(["curl", NaN])
    const best = (prefix: string) => Math.min(...rows.filter(([l]) => l.startsWith(prefix)).map(([, s]) => s))
    const floor = best("node:http")
    const ours = best("pipeline pull")
    const curl = best("curl")
    const lines = [
      "## Remote cache restore (HTTP, nginx on loopback)",
      "",
      `${objects.length} objects, ${(bytes / MiB).toFixed(0)} MiB; goal: pull at least 70 % of curl's throughput`,
      "",
      "| tool | seconds | MiB/s |",
      "|---|---:|---:|",
      ...rows.map(([l, s]) => `| ${l} | ${Number.isNaN(s) ? "not installed" : s.toFixed(2)} | ${Number.isNaN(s) ? "" : (bytes / MiB / s).toFixed(0)} |`),
      "",
      `pull / best curl: **${((curl / ours) * 100).toFixed(0)} %** of curl's throughput (best of 3 each; plain node:http: ${((curl / floor) * 100).toFixed(0)} %)`,
      ""
    ]
    return lines.join("\n")
  } finally {
    await (process.env["BENCH_KEEP"] === "1" ? n.stop() : n.dispose())
    if (process.env["BENCH_KEEP"] !== "1") fs.rmSync(root, { recursive: true, force: true })
  }
}
