/** Publishing into a directory (stages/lib/publish.ts): what it writes, what it refuses, how it tells a stale copy. */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Digest from "../cache/Digest.ts"
import { MANIFEST, publish, publishedProblem, targetProblem } from "../stages/lib/publish.ts"

const digest = (abs: string) => Digest.ofFile(abs).digest

const sources = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pub-src-"))
  fs.mkdirSync(path.join(dir, "adapter", "sub"), { recursive: true })
  fs.writeFileSync(path.join(dir, "adapter", "w.bin"), "weights")
  fs.writeFileSync(path.join(dir, "adapter", "sub", "c.json"), "{}")
  fs.writeFileSync(path.join(dir, "metrics.json"), '{"x":1}')
  fs.chmodSync(path.join(dir, "metrics.json"), 0o444) // store links are read-only
  return { adapter: path.join(dir, "adapter"), metrics: path.join(dir, "metrics.json") }
}

/** name → source as the layout places it: a directory under its name, a file inside a folder of its name */
const placed = (sources: Readonly<Record<string, string>>) =>
  Object.entries(sources).map(([name, src]) => ({ rel: fs.statSync(src).isDirectory() ? name : `${name}/${path.basename(src)}`, src }))

describe("publish", () => {
  it("writes the files and a manifest, and recognises its own copy by key and bytes", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "pub-"))
    const dest = path.join(root, "published")
    const m = publish(placed(sources()), dest, "dir://published", "k1", digest)
    assert.deepStrictEqual(m.files.map((f) => f.path), ["adapter/sub/c.json", "adapter/w.bin", "metrics/metrics.json"])
    assert.strictEqual(fs.readFileSync(path.join(dest, "metrics", "metrics.json"), "utf8"), '{"x":1}')
    assert.strictEqual(fs.statSync(path.join(dest, "metrics", "metrics.json")).mode & 0o777, 0o644)
    assert.strictEqual(publishedProblem(dest, "dir://published", "k1", digest), undefined)
    assert.strictEqual(publishedProblem(dest, "dir://published", "k2", digest), "dir://published holds another publish (other inputs or params)")
    fs.writeFileSync(path.join(dest, "adapter", "w.bin"), "WEIGHTS")
    assert.strictEqual(publishedProblem(dest, "dir://published", "k1", digest), "published file modified: dir://published/adapter/w.bin")
    fs.rmSync(path.join(dest, "adapter", "w.bin"))
    assert.strictEqual(publishedProblem(dest, "dir://published", "k1", digest), "published file missing: dir://published/adapter/w.bin")
    assert.strictEqual(publishedProblem(path.join(root, "nope"), "dir://nope", "k1", digest), "not published: dir://nope does not exist")
  })

  it("replaces only a previous publish, leaves no leftovers, and refuses a directory holding anything else", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "pub-"))
    const dest = path.join(root, "published")
    publish(placed(sources()), dest, "dir://p", "k1", digest)
    const again = publish(placed({ metrics: sources().metrics }), dest, "dir://p", "k2", digest)
    assert.deepStrictEqual(again.files.map((f) => f.path), ["metrics/metrics.json"])
    assert.deepStrictEqual(fs.readdirSync(dest).sort(), [MANIFEST, "metrics"])
    assert.deepStrictEqual(fs.readdirSync(root), ["published"])
    fs.mkdirSync(path.join(dest, "notes"))
    fs.writeFileSync(path.join(dest, "notes", "mine.txt"), "mine")
    assert.throws(() => publish(placed(sources()), dest, "dir://p", "k3", digest), "dir://p holds 2 entries that no publish wrote (notes/, notes/mine.txt)")
    assert.strictEqual(fs.readFileSync(path.join(dest, "notes", "mine.txt"), "utf8"), "mine")
    const other = path.join(root, "other")
    fs.mkdirSync(other)
    fs.writeFileSync(path.join(other, "x"), "")
    assert.match(targetProblem(other, "dir://other")!, /holds 1 entry that no publish wrote \(x\)/)
    fs.writeFileSync(path.join(root, "file"), "")
    assert.strictEqual(targetProblem(path.join(root, "file"), "dir://file"), "dir://file is a file, not a directory")
    fs.writeFileSync(path.join(dest, MANIFEST), "{")
    assert.match(targetProblem(dest, "dir://p")!, /\.pipeline-publish\.json is damaged/)
  })

  it("cleans up what a publish killed between its two renames left beside the target", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "pub-"))
    const dest = path.join(root, "published")
    fs.mkdirSync(path.join(root, ".published.publish-old-123-0badf00d"))
    fs.mkdirSync(path.join(root, ".published.publish-new-123-0badf00d"))
    fs.mkdirSync(path.join(root, ".published.keep"))
    publish(placed(sources()), dest, "dir://p", "k1", digest)
    assert.deepStrictEqual(fs.readdirSync(root).sort(), [".published.keep", "published"])
  })
})
