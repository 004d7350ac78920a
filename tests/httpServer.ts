/**
 * A Hub-like test server on loopback: two `node:http` servers, `hub` and `cdn`
 * (two origins), serving files from memory.
 *
 *  - `/<owner>/<repo>/resolve/<rev>/<file>` and `/datasets/<owner>/<repo>/resolve/<rev>/<file>`:
 *    `rev` is a branch or the commit; the answer carries `X-Repo-Commit`. Weights
 *    (`*.safetensors`) answer 302 to the cdn, as the Hub does for LFS files.
 *    A private repo wants `Authorization: Bearer <token>` (else 401).
 *  - `/files/<name>`: plain files, no commit.
 *  - Every body honours `Range: bytes=N-` (206) and `If-Range`, with a strong ETag.
 *  - `fault(kind, pathPart)` makes the next matching request (once, or `times`)
 *    drop the connection half-way through the body, answer 503, or answer 404.
 *
 * Every request is recorded (path, range, authorization) with the body bytes sent.
 *
 * It also takes writes, as the Hub does for `@huggingface/hub`'s `createRepo`,
 * `pathsInfo` and `commit` (this stands in for the real Hub; it speaks the
 * few endpoints those calls use, with the "basic" LFS transfer):
 *  - `POST /api/repos/create` (409 when the repo exists);
 *  - `POST /api/models/<repo>/paths-info/<rev>`: size, git blob id, and for LFS
 *    files (`*.safetensors`, `*.gguf`, `*.bin`, or 10 MB and more) the sha256;
 *  - `POST /api/models/<repo>/preupload/<rev>`: which files go through LFS;
 *  - `POST /<repo>.git/info/lfs/objects/batch`: an upload URL on the cdn for
 *    each blob it does not hold yet (the cdn checks the sha256 of what is PUT);
 *  - `POST /api/models/<repo>/commit/<rev>`: NDJSON `header`, `file`,
 *    `lfsFile`, `deletedFile`; the files become the repo's new commit.
 * Writes want `Authorization: Bearer <token>` (else 401).
 */
import { createHash, randomBytes } from "node:crypto"
import * as http from "node:http"
import type { AddressInfo } from "node:net"

export interface Hit {
  readonly server: "hub" | "cdn"
  readonly method: string
  readonly path: string
  readonly range: string | undefined
  readonly authorization: string | undefined
  status: number
  bodyBytes: number
}

export interface RepoSpec {
  readonly kind: "dataset" | "model"
  /** owner/name */
  readonly id: string
  readonly commit: string
  /** branch and tag names besides `main` that resolve to the commit */
  readonly revisions?: ReadonlyArray<string>
  readonly files: Readonly<Record<string, Buffer | string>>
  readonly private?: boolean
}

type FaultKind = "drop" | "503" | "404"

interface Fault {
  readonly kind: FaultKind
  readonly pathPart: string
  remaining: number
}

const randomHex = (n: number) => randomBytes(n / 2).toString("hex")

const etagOf = (b: Buffer) => `"${createHash("sha256").update(b).digest("hex").slice(0, 32)}"`

export class TestHub {
  readonly token = "hf_testtoken_5ecret_do_not_log"
  readonly hits: Array<Hit> = []
  private readonly repos: Array<RepoSpec> = []
  private readonly plain = new Map<string, Buffer>()
  private readonly blobs = new Map<string, Buffer>()
  private readonly faults: Array<Fault> = []
  private hub!: http.Server
  private cdn!: http.Server
  hubUrl = ""
  cdnUrl = ""

  static async start(): Promise<TestHub> {
    const t = new TestHub()
    t.hub = http.createServer((req, res) => t.handle("hub", req, res))
    t.cdn = http.createServer((req, res) => t.handle("cdn", req, res))
    t.hubUrl = await listen(t.hub)
    t.cdnUrl = await listen(t.cdn)
    return t
  }

  async close(): Promise<void> {
    for (const s of [this.hub, this.cdn]) {
      s.closeAllConnections()
      await new Promise<void>((r) => s.close(() => r()))
    }
  }

  repo(spec: RepoSpec): this {
    this.repos.push(spec)
    for (const body of Object.values(spec.files)) {
      const b = Buffer.from(body)
      this.blobs.set(createHash("sha256").update(b).digest("hex"), b)
    }
    return this
  }

  file(name: string, body: Buffer | string): string {
    this.plain.set(name, Buffer.from(body))
    return `${this.hubUrl}/files/${name}`
  }

  fault(kind: FaultKind, pathPart: string, times = 1): this {
    this.faults.push({ kind, pathPart, remaining: times })
    return this
  }

  /** Requests whose path contains `part`. */
  hitsFor(part: string): Array<Hit> {
    return this.hits.filter((h) => h.path.includes(part))
  }

  bytesSentFor(part: string): number {
    return this.hitsFor(part).reduce((a, h) => a + h.bodyBytes, 0)
  }

  private takeFault(path: string, kinds: ReadonlyArray<FaultKind>): FaultKind | undefined {
    const f = this.faults.find((x) => x.remaining > 0 && kinds.includes(x.kind) && path.includes(x.pathPart))
    if (f === undefined) return undefined
    f.remaining--
    return f.kind
  }

  /** A model repo's files now (after commits), or undefined. */
  files(id: string): Readonly<Record<string, Buffer | string>> | undefined {
    return this.repos.find((r) => r.kind === "model" && r.id === id)?.files
  }

  /** Bytes PUT to the cdn (LFS uploads) and sent inline in commits, per repo path. */
  readonly received = new Map<string, number>()

  commits = 0

  private handle(server: "hub" | "cdn", req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.method === "POST" || req.method === "PUT") {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => this.write(server, req, res, Buffer.concat(chunks)))
      return
    }
    const path = decodeURI((req.url ?? "/").split("?")[0]!)
    const hit: Hit = {
      server,
      method: req.method ?? "GET",
      path,
      range: req.headers.range,
      authorization: req.headers.authorization,
      status: 0,
      bodyBytes: 0
    }
    this.hits.push(hit)
    const answer = (status: number, headers: Record<string, string> = {}, body = "") => {
      hit.status = status
      res.writeHead(status, { "content-type": "text/plain", "content-length": String(Buffer.byteLength(body)), ...headers })
      res.end(body)
    }
    const early = this.takeFault(path, ["503", "404"])
    if (early === "503") return answer(503, {}, "Service Unavailable")
    if (early === "404") return answer(404, {}, "Entry not found")
    if (server === "cdn") {
      const blob = this.blobs.get(path.replace(/^\/blobs\//, ""))
      return blob === undefined ? answer(404) : this.body(req, res, hit, blob, {})
    }
    if (path.startsWith("/files/")) {
      const b = this.plain.get(path.slice("/files/".length))
      return b === undefined ? answer(404, {}, "Not found") : this.body(req, res, hit, b, {})
    }
    const m = /^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path)
    if (!m) return answer(404, {}, "Not found")
    const kind = m[1] !== undefined ? "dataset" : "model"
    const repo = this.repos.find((r) => r.kind === kind && r.id === m[2])
    if (repo?.private && req.headers.authorization !== `Bearer ${this.token}`) return answer(401, {}, "Invalid credentials")
    if (repo === undefined) return answer(404, {}, "Repository not found")
    const rev = decodeURIComponent(m[3]!)
    if (rev !== repo.commit && rev !== "main" && !(repo.revisions ?? []).includes(rev)) return answer(404, {}, "Revision not found")
    const content = repo.files[m[4]!]
    if (content === undefined) return answer(404, { "x-repo-commit": repo.commit }, "Entry not found")
    const b = Buffer.from(content)
    if (m[4]!.endsWith(".safetensors"))
      return answer(302, { "x-repo-commit": repo.commit, location: `${this.cdnUrl}/blobs/${createHash("sha256").update(b).digest("hex")}` })
    return this.body(req, res, hit, b, { "x-repo-commit": repo.commit })
  }

  private isLfs(path: string, size: number): boolean {
    return /\.(safetensors|gguf|bin)$/.test(path) || size >= 10_000_000
  }

  private write(server: "hub" | "cdn", req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    const path = decodeURI((req.url ?? "/").split("?")[0]!)
    const hit: Hit = { server, method: req.method ?? "POST", path, range: undefined, authorization: req.headers.authorization, status: 0, bodyBytes: body.length }
    this.hits.push(hit)
    const json = (status: number, value: unknown) => {
      const text = JSON.stringify(value)
      hit.status = status
      res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) })
      res.end(text)
    }
    const early = this.takeFault(path, ["503", "404"])
    if (early === "503") return json(503, { error: "Service Unavailable" })
    if (server === "cdn") {
      const m = /^\/upload\/([0-9a-f]{64})$/.exec(path)
      if (m === null || req.method !== "PUT") return json(404, { error: "Not found" })
      if (createHash("sha256").update(body).digest("hex") !== m[1]) return json(400, { error: "sha256 mismatch" })
      this.blobs.set(m[1]!, body)
      hit.status = 200
      res.writeHead(200, { etag: `"${m[1]!.slice(0, 32)}"`, "content-length": "0" })
      return void res.end()
    }
    if (req.headers.authorization !== `Bearer ${this.token}`) return json(401, { error: "Invalid credentials in Authorization header" })
    const parse = () => JSON.parse(body.toString("utf8")) as Record<string, any>
    if (path === "/api/repos/create") {
      const b = parse()
      const id = `${b["organization"]}/${b["name"]}`
      if (this.repos.some((r) => r.kind === "model" && r.id === id)) return json(409, { error: "You already created this model repo" })
      this.repos.push({ kind: "model", id, commit: randomHex(40), files: {}, private: b["visibility"] === "private" || b["private"] === true })
      return json(200, { url: `${this.hubUrl}/${id}` })
    }
    const lfs = /^\/([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/.exec(path)
    if (lfs) {
      const b = parse()
      const objects = (b["objects"] as Array<{ oid: string; size: number }>).map((o) =>
        this.blobs.has(o.oid) ? { oid: o.oid, size: o.size } : { oid: o.oid, size: o.size, actions: { upload: { href: `${this.cdnUrl}/upload/${o.oid}` } } }
      )
      return json(200, { transfer: "basic", objects })
    }
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/(paths-info|preupload|commit)\/(.+)$/.exec(path)
    if (api === null) return json(404, { error: "Not found" })
    const idx = this.repos.findIndex((r) => r.kind === "model" && r.id === api[1])
    if (idx < 0) return json(404, { error: "Repository not found" })
    const repo = this.repos[idx]!
    if (api[2] === "paths-info") {
      const paths = parse()["paths"] as Array<string>
      return json(
        200,
        paths.flatMap((p) => {
          const c = repo.files[p]
          if (c === undefined) return []
          const b = Buffer.from(c)
          const oid = createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex")
          return [{ type: "file", path: p, size: b.length, oid, ...(this.isLfs(p, b.length) ? { lfs: { oid: createHash("sha256").update(b).digest("hex"), size: b.length, pointerSize: 134 } } : {}) }]
        })
      )
    }
    if (api[2] === "preupload") {
      const files = parse()["files"] as Array<{ path: string; size: number }>
      return json(200, { files: files.map((f) => ({ path: f.path, uploadMode: this.isLfs(f.path, f.size) ? "lfs" : "regular", shouldIgnore: false })) })
    }
    // commit
    const next: Record<string, Buffer | string> = { ...repo.files }
    for (const line of body.toString("utf8").split("\n").filter((l) => l.trim() !== "")) {
      const { key, value } = JSON.parse(line) as { key: string; value: Record<string, any> }
      if (key === "file") {
        const content = Buffer.from(value["content"], value["encoding"] === "base64" ? "base64" : "utf8")
        next[value["path"]] = content
        this.received.set(value["path"], (this.received.get(value["path"]) ?? 0) + content.length)
      } else if (key === "lfsFile") {
        const blob = this.blobs.get(value["oid"])
        if (blob === undefined) return json(422, { error: `LFS object ${value["oid"]} was never uploaded` })
        next[value["path"]] = blob
      } else if (key === "deletedFile") delete next[value["path"]]
    }
    const commit = randomHex(40)
    this.repos[idx] = { ...repo, commit, files: next }
    this.commits++
    return json(200, { commitOid: commit, commitUrl: `${this.hubUrl}/${repo.id}/commit/${commit}` })
  }

  /** 200 or 206 for `Range: bytes=N-`, honouring If-Range; maybe dropped half-way. */
  private body(req: http.IncomingMessage, res: http.ServerResponse, hit: Hit, b: Buffer, headers: Record<string, string>): void {
    const etag = etagOf(b)
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "")
    const ifRange = req.headers["if-range"]
    const ranged = m !== null && (ifRange === undefined || ifRange === etag)
    const start = ranged ? Number(m![1]) : 0
    if (ranged && start >= b.length) {
      hit.status = 416
      res.writeHead(416, { "content-range": `bytes */${b.length}`, "content-length": "0", ...headers })
      return void res.end()
    }
    const slice = b.subarray(start)
    hit.status = ranged ? 206 : 200
    res.writeHead(hit.status, {
      "content-length": String(slice.length),
      "accept-ranges": "bytes",
      etag,
      ...(ranged ? { "content-range": `bytes ${start}-${b.length - 1}/${b.length}` } : {}),
      ...headers
    })
    if (this.takeFault(hit.path, ["drop"]) === "drop") {
      const half = slice.subarray(0, Math.floor(slice.length / 2))
      hit.bodyBytes = half.length
      res.write(half, () => setTimeout(() => res.destroy(), 20))
      return
    }
    hit.bodyBytes = slice.length
    res.end(slice)
  }
}

const listen = (s: http.Server) =>
  new Promise<string>((resolve) => s.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)))
