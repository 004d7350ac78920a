/**
 * The remote cache, one suite run against every backend, each a real server on
 * loopback started here: a directory (`file://`), nginx with WebDAV PUT (Debian's
 * package; `.ci/run` installs it) for HTTP, and `s3rver` (npm) for S3. Through
 * the real CLI on the fixture pipeline (a → b → c, and `liar`, which writes as
 * many megabytes as it is told).
 */
import { S3Client, PutObjectCommand, CreateBucketCommand } from "@aws-sdk/client-s3"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import { randomBytes } from "node:crypto"
import * as os from "node:os"
import * as path from "node:path"
import S3rver from "s3rver"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Digest from "../cache/Digest.ts"
import { getToFile } from "../cache/HttpGet.ts"
import * as RemoteBackends from "../cache/Remote.ts"
import { cliAsync, makeWorkspace, read, runs, waitFor } from "./helpers.ts"
import { freePort, startNginx } from "./nginx.ts"

/** A backend under test: the remotes section for pipeline.yaml, and a way to reach its stored objects. */
interface Server {
  readonly name: string
  readonly remotes: string
  readonly env: Record<string, string>
  /** the stored object names under cas/ */
  readonly objects: () => Promise<Array<string>>
  /** replaces a stored object's bytes */
  readonly corrupt: (rel: string, bytes: Buffer) => Promise<void>
  readonly stop: () => Promise<void>
  readonly start: () => Promise<void>
}

const dirServer = async (): Promise<Server> => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "remote-dir-"))
  return {
    name: "file",
    remotes: `remotes: { team: { url: "file://${root}" } }\n`,
    env: {},
    objects: async () => (fs.existsSync(path.join(root, "cas")) ? fs.readdirSync(path.join(root, "cas")).filter((n) => !n.startsWith(".")) : []),
    corrupt: async (rel, bytes) => fs.writeFileSync(path.join(root, rel), bytes),
    stop: async () => {},
    start: async () => {}
  }
}

const nginxServer = async (): Promise<Server> => {
  const n = await startNginx()
  return {
    name: "http (nginx WebDAV)",
    remotes: `remotes: { team: { url: "http://127.0.0.1:${n.port}/cache" } }\n`,
    env: {},
    objects: async () => (fs.existsSync(path.join(n.data, "cache", "cas")) ? fs.readdirSync(path.join(n.data, "cache", "cas")) : []),
    corrupt: async (rel, bytes) => fs.writeFileSync(path.join(n.data, "cache", rel), bytes),
    stop: n.stop,
    start: n.start
  }
}

const KEY_ID = "S3RVER" // the one access key id s3rver knows (it does not check signatures)
const s3Server = async (): Promise<Server> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "s3rver-"))
  const port = await freePort()
  let server: S3rver | undefined
  const start = async () => {
    server = new S3rver({ port, address: "127.0.0.1", silent: true, directory: dir })
    await server.run()
  }
  await start()
  const client = new S3Client({ endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, region: "us-east-1", credentials: { accessKeyId: KEY_ID, secretAccessKey: "x" } })
  await client.send(new CreateBucketCommand({ Bucket: "cache" }))
  return {
    name: "s3 (s3rver)",
    remotes: `remotes: { team: { url: "s3://cache/team", endpoint: "http://127.0.0.1:${port}" } }\n`,
    env: { AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: "s3-secret-not-in-logs", AWS_REGION: "us-east-1" },
    objects: async () => {
      const root = path.join(dir, "cache", "team", "cas")
      return fs.existsSync(root) ? fs.readdirSync(root).filter((n) => !n.startsWith(".") && !n.includes("._S3rver")) : []
    },
    corrupt: async (rel, bytes) => {
      await client.send(new PutObjectCommand({ Bucket: "cache", Key: `team/${rel}`, Body: bytes }))
    },
    stop: async () => {
      await server!.close()
    },
    start
  }
}

describe.each([
  ["file", dirServer],
  ["http", nginxServer],
  ["s3", s3Server]
] as const)("the remote cache over %s", (_kind, make) => {
  let server: Server
  let origin: string
  const workspace = (lock = true) => {
    const ws = makeWorkspace()
    fs.appendFileSync(path.join(ws, "pipeline.yaml"), server.remotes)
    if (lock) fs.copyFileSync(path.join(origin, "pipeline.lock"), path.join(ws, "pipeline.lock"))
    return ws
  }
  const run = async (ws: string, args: ReadonlyArray<string>) => await cliAsync(ws, args, server.env).done

  beforeAll(async () => {
    server = await make()
    origin = workspace(false)
    const r = await run(origin, ["run", "c", "--remote", "none"]) // the configured remote is the default: not this time
    expect(r.code, r.stderr).toBe(0)
    runs(origin)
  }, 60_000)
  afterAll(async () => {
    await server.stop()
  })

  it("push sends what the remote lacks; a fresh clone pulls it, runs nothing, and status agrees", async () => {
    const p = await run(origin, ["push", "c"])
    expect(p.code, p.stderr).toBe(0)
    expect(p.stdout).toMatch(/team \(.+\): pushed 4 objects \(\d+ B\) and 3 entries; 0 already there/)
    const again = await run(origin, ["push", "c"])
    expect(again.stdout).toMatch(/pushed 0 objects \(0 B\) and 0 entries; 4 already there/)

    const clone = workspace()
    const pulled = await run(clone, ["pull", "c"])
    expect(pulled.code, pulled.stderr).toBe(0)
    for (const f of ["out/a/a.txt", "out/b/b.txt", "out/c/c.txt", "out/c/metrics.json"]) expect(read(clone, f)).toBe(read(origin, f))
    expect(runs(clone)).toEqual([])
    expect((await run(clone, ["status", "c", "--ci"])).code).toBe(0)
  }, 60_000)

  it("pull --only fetches the target's outputs, not its ancestors'", async () => {
    const clone = workspace()
    const r = await run(clone, ["pull", "c", "--only"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/fetched 2 objects .* and 1 entry/)
    expect(read(clone, "out/c/c.txt")).toBe(read(origin, "out/c/c.txt"))
    expect(fs.existsSync(path.join(clone, "out", "a"))).toBe(false)
    const objects = fs.readdirSync(path.join(clone, ".pipeline", "cache", "objects")).flatMap((d) => fs.readdirSync(path.join(clone, ".pipeline", "cache", "objects", d)))
    expect(objects).toHaveLength(2)
  }, 60_000)

  it("run --remote restores what the remote has, runs the rest, and pushes what it ran", async () => {
    const clone = workspace()
    const r = await run(clone, ["run", "c", "--remote", "team", "--set", "c.repeat=3"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^ {2}a +cached \(on team\)/m) // c runs and reads only b
    expect(r.stdout).toMatch(/b: restored from team cache/)
    expect(runs(clone)).toEqual(["c"])
    expect(r.stdout).toMatch(/remote team: pushed 1 object .* and 1 entry; 1 already there/) // c.txt is new, metrics.json is not
    const next = workspace()
    const r2 = await run(next, ["run", "c", "--remote", "team", "--set", "c.repeat=3"])
    expect(r2.code, r2.stderr).toBe(0)
    expect(runs(next)).toEqual([])
    expect(read(next, "out/c/c.txt")).toBe(read(clone, "out/c/c.txt"))
    // dry run and status say what the remote could restore, and fetch nothing
    const fresh = workspace()
    const dry = await run(fresh, ["run", "c", "--dry-run", "--remote", "team", "--set", "c.repeat=3"])
    expect(dry.stdout).toMatch(/remote team can restore: a, b \(/) // c's params changed: its key is known once b is
    const st = await run(fresh, ["status", "c", "--remote", "team"])
    expect(st.stdout).toMatch(/remote team can restore: a, b, c/)
    expect(fs.existsSync(path.join(fresh, ".pipeline", "cache", "objects"))).toBe(false)
    // CI: plain lines, and a JSON summary of where each stage came from
    const ci = workspace()
    const j = await run(ci, ["run", "c", "--remote", "team", "--set", "c.repeat=3", "--ci", "--json"])
    expect(j.code, j.stderr).toBe(0)
    const summary = JSON.parse(j.stdout) as { stages: Array<{ name: string; action: string; source: string; seconds: number }>; remote: { fetched: { objects: number }; restored: Array<string> } }
    // c restores, so nothing reads a or b here: they stay on the remote
    expect(summary.stages.map((s) => [s.name, s.action, s.source])).toEqual([["a", "cached", "team"], ["b", "cached", "team"], ["c", "restored", "team"]])
    expect(summary.remote.fetched.objects).toBe(2) // c.txt, metrics.json
    expect(summary.remote.restored).toEqual(["c"])
    expect(j.stderr).not.toMatch(/\r|\x1b\[/)
  }, 60_000)

  it("run --remote fetches only the target and what the stages that run read; the rest stays on the remote, recorded", async () => {
    const pushed = await run(origin, ["push", "c"])
    expect(pushed.code, pushed.stderr).toBe(0)
    const clone = workspace()
    const r = await run(clone, ["run", "c", "--remote", "team"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^ {2}a +cached \(on team\) +outputs on remote team \(not fetched/m)
    expect(r.stdout).toMatch(/^ {2}c +restore \(team\)/m)
    expect(r.stdout).toMatch(/remote team: fetched 2 objects .* for c$/m)
    expect(r.stdout).toMatch(/b: cached on remote team \(not fetched: nothing that runs reads it; `pipeline pull b --only` fetches it\)/)
    expect(runs(clone)).toEqual([])
    expect(read(clone, "out/c/c.txt")).toBe(read(origin, "out/c/c.txt"))
    for (const s of ["a", "b"]) expect(fs.existsSync(path.join(clone, "out", s))).toBe(false)
    // recorded: without the remote, nothing is stale and nothing runs
    const st = await run(clone, ["status", "c", "--ci", "--remote", "none"])
    expect(st.code, st.stdout).toBe(0)
    expect(st.stdout).toMatch(/a +up to date \(outputs on remote team: pipeline pull a --only\)/)
    const again = await run(clone, ["run", "c", "--remote", "none"])
    expect(again.stdout).toMatch(/nothing to do: 3 stages up to date/)
    const verified = await run(clone, ["verify"])
    expect(verified.code, verified.stderr).toBe(0)
    expect(verified.stdout).not.toMatch(/incomplete: lock/) // left on the remote is not missing
    expect(runs(clone)).toEqual([])
    // c's params change: c runs, so b's outputs come (a's still do not)
    const changed = await run(clone, ["run", "c", "--remote", "team", "--set", "c.repeat=5"])
    expect(changed.code, changed.stderr).toBe(0)
    expect(changed.stdout).toMatch(/^ {2}b +restore \(team\) +output missing: out\/b\/b.txt \(on remote team, needed by c\)/m)
    expect(runs(clone)).toEqual(["c"])
    expect(read(clone, "out/b/b.txt")).toBe(read(origin, "out/b/b.txt"))
    expect(fs.existsSync(path.join(clone, "out", "a"))).toBe(false)
    // without the remote, a stage that must read a result left there cannot: it runs what produces it
    const other = workspace()
    expect((await run(other, ["run", "c", "--remote", "team"])).code).toBe(0)
    runs(other)
    const offline = await run(other, ["run", "c", "--remote", "none", "--set", "c.repeat=6"])
    expect(offline.code, offline.stderr).toBe(0)
    expect(runs(other)).toEqual(["a", "b", "c"])
  }, 60_000)

  it("an object whose bytes do not match its digest is discarded and reported, never materialised", async () => {
    const c = Digest.digestHex(Digest.ofBytes(read(origin, "out/c/c.txt")))
    await server.corrupt(`cas/${c}`, Buffer.from("not what was pushed"))
    const clone = workspace()
    const r = await run(clone, ["pull", "c", "--only"])
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toContain(`cas/${c}: its bytes do not match its digest (corrupt or partial); discarded`)
    expect(fs.existsSync(path.join(clone, "out", "c", "c.txt"))).toBe(false)
    // a run goes on without the remote, once it has said so, and computes what it could not restore
    const run2 = await run(clone, ["run", "c", "--remote", "team"])
    expect(run2.code, run2.stderr).toBe(0)
    expect(run2.stdout.match(/warning: remote team/g)).toHaveLength(1)
    expect(runs(clone)).toContain("c")
    expect(read(clone, "out/c/c.txt")).toBe(read(origin, "out/c/c.txt"))
    // the next push repairs the remote? no: an object is only sent when the remote lacks it
    await server.corrupt(`cas/${c}`, Buffer.from(read(origin, "out/c/c.txt")))
  }, 60_000)
})

describe("a remote that goes away", () => {
  it("kill the server half-way through a push or a pull: it fails with one line, and the next one completes it", async () => {
    const server = await nginxServer()
    try {
      const ws = makeWorkspace()
      fs.appendFileSync(path.join(ws, "pipeline.yaml"), server.remotes)
      const r0 = await cliAsync(ws, ["run", "c", "--remote", "none"]).done
      expect(r0.code, r0.stderr).toBe(0)
      const r1 = await cliAsync(ws, ["run", "liar", "--set", "liar.mb=300", "--remote", "none"]).done
      expect(r1.code, r1.stderr).toBe(0)
      const push = cliAsync(ws, ["push"])
      const t0 = Date.now()
      while ((await server.objects()).length < 1) {
        if (Date.now() - t0 > 30_000) throw new Error("nothing arrived")
        await new Promise((r) => setTimeout(r, 2))
      }
      await server.stop()
      const failed = await push.done
      expect(failed.code).toBe(1)
      expect(failed.stderr.trim().split("\n")).toHaveLength(1)
      expect(failed.stderr).toMatch(/^error: push to team: PUT http:\/\/127\.0\.0\.1:\d+\/cache\/cas\/[0-9a-f]+: .*\(what was sent stays; push again to go on\)/)
      const before = (await server.objects()).length
      expect(before).toBeLessThan(5)
      await server.start()
      const again = await cliAsync(ws, ["push"]).done
      expect(again.code, again.stderr).toBe(0)
      expect(again.stdout).toMatch(new RegExp(`pushed ${5 - before} objects .*; ${before} already there`))
      // and what is there is whole: a fresh clone pulls liar's 300 MB and it matches
      const clone = makeWorkspace()
      fs.appendFileSync(path.join(clone, "pipeline.yaml"), server.remotes)
      fs.copyFileSync(path.join(ws, "pipeline.lock"), path.join(clone, "pipeline.lock"))
      // a pull killed half-way (the server goes) keeps what arrived whole; the next pull completes it
      const first = cliAsync(clone, ["pull"])
      const store = path.join(clone, ".pipeline", "cache", "objects")
      await waitFor(() => fs.existsSync(store) && fs.readdirSync(store).length > 0, 30_000)
      await server.stop()
      const broken = await first.done
      expect(broken.code).toBe(1)
      expect(broken.stderr).toMatch(/^error: pull from team: GET http:.*\(what arrived intact stays; pull again to go on\)\n$/)
      expect(fs.existsSync(path.join(clone, "out", "liar", "big.bin"))).toBe(false)
      await server.start()
      const pulled = await cliAsync(clone, ["pull"]).done
      expect(pulled.code, pulled.stderr).toBe(0)
      expect(pulled.stdout).toMatch(/fetched \d+ objects? .*; [1-9]\d* already there/)
      expect(fs.statSync(path.join(clone, "out", "liar", "big.bin")).size).toBe(300 * 1024 * 1024)
      expect(read(clone, "out/c/c.txt")).toBe(read(ws, "out/c/c.txt"))
    } finally {
      await server.stop()
    }
  }, 120_000)

  it("a remote that cannot be reached is switched off with one warning, and the run completes", async () => {
    const port = await freePort()
    const ws = makeWorkspace()
    fs.appendFileSync(path.join(ws, "pipeline.yaml"), `remotes: { team: { url: "http://127.0.0.1:${port}/cache" } }\n`)
    const r = await cliAsync(ws, ["run", "c", "--remote", "team"]).done
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.match(/warning: remote team/g)).toHaveLength(1)
    expect(r.stdout).toMatch(/warning: remote team \(http:\/\/127\.0\.0\.1:\d+\/cache\): .*ECONNREFUSED.*; going on without it/)
    expect(runs(ws)).toEqual(["a", "b", "c"])
    // push and pull, whose whole job it is, fail with one line
    const p = await cliAsync(ws, ["push", "c"]).done
    expect(p.code).toBe(1)
    expect(p.stderr.trim().split("\n")).toHaveLength(1)
    expect(p.stderr).toMatch(/^error: push to team: HEAD http:.*ECONNREFUSED/)
  }, 60_000)
})

describe("the HTTP remote's object GET (cache/HttpGet.ts), against misbehaving servers on loopback", () => {
  /** A TCP server answering every connection with `respond`. */
  const serve = async (respond: (socket: net.Socket) => void) => {
    const server = net.createServer((s) => {
      s.on("error", () => {})
      s.once("data", () => respond(s))
    })
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as net.AddressInfo).port
    return { url: (p: string) => new URL(`http://127.0.0.1:${port}/${p}`), close: () => new Promise<void>((r) => server.close(() => r())) }
  }
  const body = Buffer.from(randomBytes(300_000))
  const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), "httpget-"))
  const get = (url: URL, dest: string, idleMs = 5000) => {
    const seen: Array<number> = []
    return getToFile(url, dest, { onChunk: (c) => void seen.push(c.byteLength), signal: new AbortController().signal, idleMs }).then((r) => ({ r, seen }))
  }

  it("takes a plain response, its head split across reads; 404 is false; other statuses are errors", async () => {
    const s = await serve((sock) => {
      const head = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nContent-Type: application/octet-stream\r\n\r\n`
      sock.write(head.slice(0, 20))
      setTimeout(() => sock.end(Buffer.concat([Buffer.from(head.slice(20)), body])), 20)
    })
    const d = dir()
    const { r, seen } = await get(s.url("cas/x"), path.join(d, "x"))
    expect(r).toBe("streamed")
    expect(fs.readFileSync(path.join(d, "x")).equals(body)).toBe(true)
    expect(seen.reduce((a, b) => a + b, 0)).toBe(body.length)
    expect(fs.readdirSync(d)).toEqual(["x"])
    await s.close()
    const missing = await serve((sock) => sock.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    expect((await get(missing.url("cas/y"), path.join(d, "y"))).r).toBe(false)
    await missing.close()
    const broken = await serve((sock) => sock.end("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
    await expect(get(broken.url("cas/z"), path.join(d, "z"))).rejects.toMatchObject({ cause: { message: "HTTP 503 Service Unavailable" } })
    await broken.close()
    expect(fs.readdirSync(d)).toEqual(["x"])
  })

  it("leaves chunked or compressed responses to node:http, which the backend then uses", async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" }) // no length: chunked
      res.end(body)
    })
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as net.AddressInfo).port
    const d = dir()
    expect((await get(new URL(`http://127.0.0.1:${port}/cas/x`), path.join(d, "x"))).r).toBe("fallback")
    expect(fs.readdirSync(d)).toEqual([])
    const backend = RemoteBackends.open("team", { url: `http://127.0.0.1:${port}` })
    const hash = Digest.incremental()
    const got = await Effect.runPromise(backend.getFile("cas/x", path.join(d, "x"), (c) => hash.update(c)))
    expect(got).toBe("streamed")
    expect(hash.digest()).toBe(Digest.ofBytes(body))
    backend.close()
    await new Promise<void>((r) => server.close(() => r()))
  })

  it("a body cut short, a body longer than its length, and a silent server are errors that leave no file", async () => {
    const d = dir()
    const short = await serve((sock) => sock.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body.subarray(0, 1000)])))
    await expect(get(short.url("a"), path.join(d, "a"))).rejects.toThrow(`the connection closed mid-body (1000 of ${body.length} bytes)`)
    await short.close()
    const long = await serve((sock) => sock.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n`), body.subarray(0, 20)])))
    await expect(get(long.url("b"), path.join(d, "b"))).rejects.toThrow("the server sent more than its Content-Length (10 bytes)")
    await long.close()
    const silent = await serve((sock) => sock.write(`HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n`))
    await expect(get(silent.url("c"), path.join(d, "c"), 200)).rejects.toThrow("no data for 0 s")
    await silent.close()
    const garbage = await serve((sock) => sock.end("SSH-2.0-OpenSSH\r\n\r\n"))
    await expect(get(garbage.url("e"), path.join(d, "e"))).rejects.toThrow(/not an HTTP response/)
    await garbage.close()
    expect(fs.readdirSync(d)).toEqual([])
  })
})
