/** Unit tests of the engine's pure parts: keys, reasons, disk simulation, params, fingerprints, the store. */
import { assert, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { canonicalJson } from "../cache/Canonical.ts"
import * as Digest from "../cache/Digest.ts"
import { canonical, isWithin, outputPathProblem, relativePathProblem, symlinkOnPath } from "../cache/Paths.ts"
import { StatCache } from "../cache/StatCache.ts"
import { Store } from "../cache/Store.ts"
import { importsOf } from "../engine/CodeFingerprint.ts"
import * as Dag from "../engine/Dag.ts"
import * as Disk from "../engine/DiskBudget.ts"
import { ConfigError, GraphError } from "../engine/Errors.ts"
import * as Lockfile from "../engine/Lockfile.ts"
import * as Params from "../engine/Params.ts"
import { paramChanges } from "../engine/Fingerprint.ts"
import * as Stage from "../engine/Stage.ts"
import { parseBytes } from "../engine/Units.ts"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "pipeline-unit-"))

/** The failure an effect ends with (these effects fail, never die). */
const failure = <E>(e: Effect.Effect<unknown, E>): E => Effect.runSync(Effect.flip(e))

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
  it("keeps a long or multi-line value to one short line", () => {
    const prompt = "You are the assistant of {company}.\nWebsite: {website}\nPhone: {phone}"
    assert.deepStrictEqual(paramChanges({ p: "short" }, { p: prompt }), ['p short -> "You are the assistant of {company}. Webs…" (69 chars)'])
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
    assert.deepStrictEqual(Effect.runSync(Params.applySets({ train: { lr: 1 } }, ["train.lr=1e-4", "train.targets=[q, v]", "new.x=true"])), {
      train: { lr: 1e-4, targets: ["q", "v"] },
      new: { x: true }
    })
    assert.instanceOf(failure(Params.applySets({}, ["train.lr"])), ConfigError)
  })
  it("decodes strictly with one line naming the field", () => {
    const S = Schema.Struct({ lr: Schema.Finite, n: Schema.Int })
    assert.match(failure(Params.decode(S, { lr: "x", n: 1, extra: 2 }, "p.yaml", "train")).message, /p\.yaml: train\.extra: unknown key; train\.lr: Expected .*number/)
  })
  it("finds secrets anywhere in the params", () => {
    assert.match(failure(Params.assertNoSecrets({ upload: { target: "hf://u/r?t=tok_123456789" } }, "x", { HF_TOKEN: "tok_123456789" })).message, /upload\.target: holds the value of HF_TOKEN/)
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
    const e = failure(Dag.make([mk("x", { i: ref("y") }), mk("y", { i: ref("x") })]))
    assert.instanceOf(e, GraphError)
    assert.match(e.message, /cycle: (x -> y -> x|y -> x -> y)/)
  })
  it("computes closures in dependency order", () => {
    const a = mk("a", {})
    const b = mk("b", { i: a.out.o })
    const c = mk("c", { i: b.out.o })
    const d = mk("d", { i: a.out.o })
    const dag = Effect.runSync(Dag.make([d, c, b, a]))
    assert.deepStrictEqual(new Set(Effect.runSync(Dag.closure(dag, "c"))), new Set(["a", "b", "c"]))
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

describe("paths from state files", () => {
  it("accepts only plain relative paths inside out/<stage>/", () => {
    assert.strictEqual(outputPathProblem("c", "out/c/c.txt"), undefined)
    assert.strictEqual(outputPathProblem("c", "out/c/dir/x.bin"), undefined)
    assert.strictEqual(outputPathProblem("c", "out/c/../../x"), "is not inside out/c/ (has a .. segment)")
    assert.strictEqual(outputPathProblem("c", "out/c/./x"), "is not inside out/c/ (has a . segment)")
    assert.strictEqual(outputPathProblem("c", "out/c/a//x"), "is not inside out/c/ (has an empty segment)")
    assert.strictEqual(outputPathProblem("c", "/etc/passwd"), "is not inside out/c/")
    assert.strictEqual(outputPathProblem("c", "out/cc/x"), "is not inside out/c/")
    assert.strictEqual(outputPathProblem("c", "out/c/a\\..\\b"), "is not inside out/c/ (holds a backslash)")
    assert.strictEqual(outputPathProblem("c", 7), "not a string")
    assert.strictEqual(relativePathProblem("a\0b"), "holds a NUL byte")
  })
  it("finds a symbolic link on the way down, and compares paths after resolving links", () => {
    const dir = tmp()
    fs.mkdirSync(path.join(dir, "real", "sub"), { recursive: true })
    fs.symlinkSync(path.join(dir, "real"), path.join(dir, "link"))
    assert.strictEqual(symlinkOnPath(dir, path.join(dir, "link", "sub", "x")), path.join(dir, "link"))
    assert.strictEqual(symlinkOnPath(dir, path.join(dir, "real", "sub", "x")), undefined)
    assert.strictEqual(canonical(path.join(dir, "link", "sub", "new", "file")), path.join(fs.realpathSync(dir), "real", "sub", "new", "file"))
    assert.isTrue(isWithin(path.join(dir, "a", "b"), dir))
    assert.isFalse(isWithin(path.join(dir, "..", "x"), dir))
  })
})

describe("the disk check's words", () => {
  const l = (usedBytes: number, freeBytes: number, budgetBytes?: number) => ({ usedBytes, freeBytes, budgetBytes })
  it("says what is needed, what is free and how much is missing", () => {
    assert.strictEqual(Disk.describeLimits({ requiredBytes: 102.8e6 }, l(0, 58.3e6)), "needs 102.8 MB on disk, 58.3 MB free: 44.5 MB short")
    assert.strictEqual(
      Disk.describeLimits({ requiredBytes: 7e3 }, l(100, 1e12, 5e3)),
      "needs 7.0 kB; with the 100 B the cache holds that is 7.1 kB against a budget of 5.0 kB: 2.1 kB over"
    )
    assert.strictEqual(Disk.describeLimits({ requiredBytes: 1e3 }, l(9e3, 1e12, 5e3)), "needs 1.0 kB; the cache already holds 9.0 kB, over a budget of 5.0 kB: 5.0 kB over")
  })
  it("lets a plan that writes nothing through, even over the budget", () => {
    assert.isTrue(Disk.fitsIn({ requiredBytes: 0 }, l(9e3, 0, 5e3)))
    assert.deepStrictEqual(Disk.shortfall({ requiredBytes: 10 }, l(0, 4)), { limit: "disk", bytes: 6 })
  })
})

describe("derived state", () => {
  it("a stat cache or parse memo that is not an object is ignored once, with a warning, and rebuilt", () => {
    const dir = tmp()
    const said: Array<string> = []
    for (const junk of ["null", "[1]", "{{", '{"/a": [1, 2], "/b": null}']) {
      const file = path.join(dir, "stat-cache.json")
      fs.writeFileSync(file, junk)
      const stats = new StatCache(file, (m) => said.push(m))
      fs.writeFileSync(path.join(dir, "f"), "x")
      assert.strictEqual(stats.hashFile(path.join(dir, "f")).digest, Digest.ofBytes("x"))
      stats.save()
      assert.isTrue(JSON.parse(fs.readFileSync(file, "utf8"))[path.join(dir, "f")] !== undefined)
    }
    assert.deepStrictEqual(said, [
      ".pipeline/stat-cache.json does not hold a JSON object; ignoring it, it will be rebuilt",
      ".pipeline/stat-cache.json does not hold a JSON object; ignoring it, it will be rebuilt",
      ".pipeline/stat-cache.json is not valid JSON; ignoring it, it will be rebuilt",
      ".pipeline/stat-cache.json: ignored 2 damaged entries; those files will be hashed again"
    ])
  })
  it("forgets every path recorded with a digest that turned out damaged", () => {
    const dir = tmp()
    const stats = new StatCache(undefined)
    const a = path.join(dir, "a")
    fs.writeFileSync(a, "x")
    const d = stats.hashFile(a).digest
    // a link in out/ to a store object records the object's digest for its own stat; when the
    // object is damaged in place, that stat no longer says anything
    fs.writeFileSync(a, "y")
    stats.record(a, d)
    assert.strictEqual(stats.peek(a, fs.statSync(a)), d)
    stats.forgetDigest(d)
    assert.strictEqual(stats.hashFile(a).digest, Digest.ofBytes("y"))
  })
})

describe("pipeline.lock as written", () => {
  it("spells shared values out in full: no YAML anchors or aliases (stages share params objects)", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lock-anchors-"))
    const shared = { model: { name: "m", revision: "r" }, lora: { r: 16 } }
    const entry = (key: string) => ({ key, params: shared, inputs: [], outputs: [], code: {}, duration: 1 })
    Lockfile.write(path.join(dir, "pipeline.lock"), { train: entry("blake3:" + "1".repeat(64)), merge: entry("blake3:" + "2".repeat(64)) } as never, ["train", "merge"])
    const text = fs.readFileSync(path.join(dir, "pipeline.lock"), "utf8")
    assert.notMatch(text, /[&*]a\d/)
    assert.strictEqual(text.match(/revision: r/g)?.length, 2)
  })
})

describe("what a stage asks of a machine", () => {
  it("train takes a GPU exactly when it trains on one: Slurm asks for it, an executor's own gres wins", async () => {
    const Slurm = await import("../engine/Slurm.ts")
    const { train } = await import("../stages/train.ts")
    const slurm: import("../engine/Slurm.ts").SlurmSpec = { kind: "slurm", partition: "gpu", extra: [] }
    expect(Slurm.request(slurm, train, { train: { device: "cuda" } })).toEqual(["--partition=gpu", "--gres=gpu:1", "--mem=2000M"])
    expect(Slurm.request(slurm, train, { train: { device: "cpu" } })).toEqual(["--partition=gpu", "--mem=2000M"])
    expect(Slurm.request({ ...slurm, gres: "gpu:t4:1" }, train, { train: { device: "cuda" } })).toContain("--gres=gpu:t4:1")
    expect(train.resources({ train: { device: "cuda" } } as Parameters<typeof train.resources>[0])).toEqual({ memoryMB: 2000, gpu: 1 })
  })

  it("a stage's memory follows its model: Qwen3-4B's train asks for its estimate, the tiny model's for the declared 2000 MB", async () => {
    const Slurm = await import("../engine/Slurm.ts")
    const { train } = await import("../stages/train.ts")
    const { TrainParams, LoraParams } = await import("../stages/train/protocol.ts")
    const params = (device: "cpu" | "cuda") => ({
      train: Schema.decodeUnknownSync(TrainParams)({ device, precision: device === "cuda" ? "fp16" : "fp32" }),
      lora: Schema.decodeUnknownSync(LoraParams)({})
    })
    const qwen3_4b = 8_044_936_192 // bytes of its bf16 safetensors
    const gpu = train.estimate({ params: params("cuda"), inputSizes: { model: qwen3_4b, train: 5e6, val: 5e5 } }).memoryBytes!
    const cpu = train.estimate({ params: params("cpu"), inputSizes: { model: qwen3_4b, train: 5e6, val: 5e5 } }).memoryBytes!
    expect(gpu / 2 ** 30).toBeGreaterThan(6) // NF4 codes, the fp32 embedding, one fp32 tensor at a time
    expect(gpu / 2 ** 30).toBeLessThan(8)
    expect(cpu / 2 ** 30).toBeGreaterThan(15) // the base in fp32
    const slurm: import("../engine/Slurm.ts").SlurmSpec = { kind: "slurm", extra: [] }
    expect(Slurm.request(slurm, train, params("cuda"), gpu)).toEqual(["--gres=gpu:1", `--mem=${Math.ceil(gpu / 1e6)}M`])
    const tiny = train.estimate({ params: params("cpu"), inputSizes: { model: 80e6, train: 5e6, val: 5e5 } }).memoryBytes!
    expect(Slurm.request(slurm, train, params("cpu"), tiny)).toEqual(["--mem=2000M"])
  })
})
