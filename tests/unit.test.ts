/** Unit tests of the engine's pure parts: keys, reasons, disk simulation, params, fingerprints, the store. */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { canonicalJson } from "../cache/Canonical.ts"
import * as Digest from "../cache/Digest.ts"
import { StatCache } from "../cache/StatCache.ts"
import { Store } from "../cache/Store.ts"
import { importsOf } from "../engine/CodeFingerprint.ts"
import * as Dag from "../engine/Dag.ts"
import * as Disk from "../engine/DiskBudget.ts"
import { ConfigError, GraphError } from "../engine/Errors.ts"
import * as Params from "../engine/Params.ts"
import { paramChanges } from "../engine/Planner.ts"
import * as Stage from "../engine/Stage.ts"
import { parseBytes } from "../engine/Units.ts"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "pipeline-unit-"))

describe("canonical JSON and keys", () => {
  it("sorts keys at every depth and drops undefined", () => {
    assert.strictEqual(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: undefined } }), '{"a":{"d":[1,{"y":2,"z":1}]},"b":1}')
    assert.strictEqual(Digest.ofBytes(canonicalJson({ x: 1, y: 2 })), Digest.ofBytes(canonicalJson({ y: 2, x: 1 })))
  })
  it("hashes with BLAKE3 (test vector of the empty input)", () => {
    assert.strictEqual(Digest.ofBytes(""), "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")
  })
})

describe("reasons", () => {
  it("names every changed leaf with before and after", () => {
    assert.deepStrictEqual(paramChanges({ eval: { maxSamples: 64, x: "a" } }, { eval: { maxSamples: 128, x: "a" } }), ["eval.maxSamples 64 -> 128"])
    assert.deepStrictEqual(paramChanges({ t: { a: [1, 2] } }, { t: { a: [1, 3], b: true } }), ["t.a [1,2] -> [1,3]", "t.b (none) -> true"])
  })
})

describe("disk simulation", () => {
  const out = (id: string, bytes: number, consumers: Array<string>, temporary = false) => ({ id, bytes, temporary, consumers, existing: false })
  it("frees a temporary output after its last reader and reports the peak", () => {
    const stages: Array<Disk.SimStage> = [
      { name: "a", newBytes: 100, scratchBytes: 0, outputs: [out("a.x", 100, ["b", "c"], true)] },
      { name: "b", newBytes: 10, scratchBytes: 50, outputs: [out("b.y", 10, [])] },
      { name: "c", newBytes: 20, scratchBytes: 0, outputs: [out("c.z", 20, [])] },
      { name: "d", newBytes: 30, scratchBytes: 0, outputs: [out("d.w", 30, [])] }
    ]
    const r = Disk.simulate(stages, 150)
    assert.strictEqual(r.requiredBytes, 160) // during b: 100 + 50 scratch + 10
    assert.strictEqual(r.peakAtStage, "b")
    assert.strictEqual(r.firstOverAt, "b")
    // after c the temporary is gone: d adds 30 to 10 + 20
    assert.strictEqual(Disk.simulate(stages.slice(0, 3).concat([{ ...stages[3]!, newBytes: 90 }])).requiredBytes, 160)
  })
  it("enumerates subsets smallest first", () => {
    assert.deepStrictEqual(Disk.subsets(["x", "y"]), [["x"], ["y"], ["x", "y"]])
  })
  it("checks free space and budget", () => {
    const r = { requiredBytes: 10, peakAtStage: "a", firstOverAt: null }
    assert.isTrue(Disk.fitsIn(r, { usedBytes: 5, freeBytes: 10, budgetBytes: 15 }))
    assert.isFalse(Disk.fitsIn(r, { usedBytes: 6, freeBytes: 100, budgetBytes: 15 }))
    assert.isFalse(Disk.fitsIn(r, { usedBytes: 0, freeBytes: 9, budgetBytes: undefined }))
  })
})

describe("params", () => {
  it("reads sizes", () => {
    assert.strictEqual(parseBytes("20GB"), 20e9)
    assert.strictEqual(parseBytes("1.5 GiB"), 1.5 * 1024 ** 3)
    assert.strictEqual(parseBytes("lots"), undefined)
  })
  it("applies --set with YAML values and refuses malformed ones", () => {
    assert.deepStrictEqual(Params.applySets({ train: { lr: 1 } }, ["train.lr=1e-4", "train.targets=[q, v]", "new.x=true"]), {
      train: { lr: 1e-4, targets: ["q", "v"] },
      new: { x: true }
    })
    assert.throws(() => Params.applySets({}, ["train.lr"]), ConfigError)
  })
  it("decodes strictly with one line naming the field", () => {
    const S = Schema.Struct({ lr: Schema.Finite, n: Schema.Int })
    assert.throws(() => Params.decodeOrThrow(S, { lr: "x", n: 1, extra: 2 }, "p.yaml", "train"), /p\.yaml: train\.extra: unknown key; train\.lr: Expected .*number/)
  })
  it("finds secrets anywhere in the params", () => {
    assert.throws(() => Params.assertNoSecrets({ upload: { target: "hf://u/r?t=tok_123456789" } }, "x", { HF_TOKEN: "tok_123456789" }), /upload\.target: holds the value of HF_TOKEN/)
    assert.strictEqual(Params.redact("key tok_123456789 here", ["tok_123456789"]), "key *** here")
  })
})

describe("code fingerprints", () => {
  it("finds relative static and dynamic imports, not type-only ones", () => {
    const src = `import { a } from "./a.ts"\nimport type { T } from "../t.ts"\nexport * from "./e.ts"\nimport "./side.ts"\nconst m = await import("./lazy.ts")\nimport x from "effect"`
    assert.deepStrictEqual(importsOf(src), ["./a.ts", "./e.ts", "./side.ts", "./lazy.ts"])
  })
})

describe("the DAG", () => {
  const mk = (name: string, inputs: Record<string, Stage.OutputRef>) =>
    Stage.make({ name, module: "/x.ts", params: {}, inputs, outputs: { o: Stage.file("o") }, estimate: () => ({ bytes: { o: 0 }, seconds: 0 }), run: () => Effect.void })
  it("names a cycle", () => {
    const ref = (s: string): Stage.OutputRef => ({ _tag: "OutputRef", stage: s, output: "o" })
    assert.throws(() => Dag.make([mk("x", { i: ref("y") }), mk("y", { i: ref("x") })]), GraphError)
    try {
      Dag.make([mk("x", { i: ref("y") }), mk("y", { i: ref("x") })])
    } catch (e) {
      assert.match((e as GraphError).message, /cycle: (x -> y -> x|y -> x -> y)/)
    }
  })
  it("computes closures in dependency order", () => {
    const a = mk("a", {})
    const b = mk("b", { i: a.out.o })
    const c = mk("c", { i: b.out.o })
    const d = mk("d", { i: a.out.o })
    const dag = Dag.make([d, c, b, a])
    assert.deepStrictEqual(new Set(Dag.closure(dag, "c")), new Set(["a", "b", "c"]))
    assert.isTrue(dag.order.indexOf("a") < dag.order.indexOf("b") && dag.order.indexOf("b") < dag.order.indexOf("c"))
    assert.deepStrictEqual([...Dag.downstream(dag, "a")].sort(), ["b", "c", "d"])
  })
})

describe("the store and the stat cache", () => {
  it("never re-reads an unchanged file, and re-hashes a changed one", () => {
    const dir = tmp()
    const f = path.join(dir, "f.bin")
    fs.writeFileSync(f, Buffer.alloc(1 << 20, 7))
    const stats = new StatCache(path.join(dir, "stats.json"))
    assert.strictEqual(stats.hashFile(f).bytesRead, 1 << 20)
    assert.strictEqual(stats.hashFile(f).bytesRead, 0)
    stats.save()
    const again = new StatCache(path.join(dir, "stats.json"))
    assert.strictEqual(again.hashFile(f).bytesRead, 0)
    fs.writeFileSync(f, Buffer.alloc(1 << 20, 8))
    assert.strictEqual(again.hashFile(f).bytesRead, 1 << 20)
  })
  it("keeps the executable bit of files in a tree, even when equal bytes share an object", () => {
    const dir = tmp()
    const store = new Store(path.join(dir, "cache"), new StatCache(undefined))
    const staged = path.join(dir, "staged")
    fs.mkdirSync(staged)
    fs.writeFileSync(path.join(staged, "run.sh"), "#!/bin/sh\n", { mode: 0o755 })
    fs.writeFileSync(path.join(staged, "copy.txt"), "#!/bin/sh\n", { mode: 0o644 })
    const rec = store.ingest(staged, "out/x/d", "dir")
    store.materialize(rec, path.join(dir, "out"))
    assert.isTrue((fs.statSync(path.join(dir, "out", "run.sh")).mode & 0o111) !== 0)
    assert.strictEqual(fs.statSync(path.join(dir, "out", "copy.txt")).mode & 0o111, 0)
  })

  it("ingests a tree, restores it byte for byte, and quarantines a damaged object", () => {
    const dir = tmp()
    const stats = new StatCache(undefined)
    const store = new Store(path.join(dir, "cache"), stats)
    const staged = path.join(dir, "staged")
    fs.mkdirSync(path.join(staged, "sub"), { recursive: true })
    fs.writeFileSync(path.join(staged, "a.txt"), "alpha")
    fs.writeFileSync(path.join(staged, "sub", "b.txt"), "beta")
    const rec = store.ingest(staged, "out/x/model", "dir")
    assert.strictEqual(rec.size, 9)
    assert.isTrue(store.canRestore(rec))
    store.materialize(rec, path.join(dir, "restored"))
    assert.strictEqual(fs.readFileSync(path.join(dir, "restored", "sub", "b.txt"), "utf8"), "beta")
    const obj = store.objectPath(Digest.ofBytes("beta"))
    fs.rmSync(path.join(dir, "restored"), { recursive: true, force: true })
    fs.chmodSync(obj, 0o644)
    fs.writeFileSync(obj, "BETA!")
    assert.isFalse(store.verifyObject(Digest.ofBytes("beta")))
    assert.isFalse(store.canRestore(rec))
    assert.isTrue(fs.existsSync(path.join(dir, "cache", "corrupt")))
  })
})
