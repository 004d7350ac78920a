/**
 * Regressions of the defects an adversarial pass over the CLI found (issue 11),
 * black-box through the real CLI: data loss and escaping the workspace, errors
 * a user can read early, locks and full disks. Each test reproduces its defect
 * first; the numbers are the issue's.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Digest from "../cache/Digest.ts"
import { canonicalJson } from "../cache/Canonical.ts"
import { BIN, cli, makeDemoWorkspace, makeWorkspace, mountTmpfs, NODE, quickDemo, read, REPO, runs, waitFor } from "./helpers.ts"
import * as YAML from "yaml"
import { microModel, writeFiles } from "./microModel.ts"

/** One line of error (warnings about ignored derived state may come before it). */
const oneLine = (s: string) => expect(s.trim().split("\n").filter((l) => !l.startsWith("warning: ")), s).toHaveLength(1)
const noStack = (s: string) => expect(s).not.toMatch(/internal error|\n\s+at |Node\.js v\d/)

/** Every file under a directory with its bytes, for "nothing was touched" checks. */
const contents = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile()) out[path.relative(dir, p)] = fs.readFileSync(p).toString("base64")
    }
  }
  if (fs.existsSync(dir)) walk(dir)
  return out
}

const objectOf = (ws: string, rel: string): string => {
  const ino = fs.statSync(path.join(ws, rel)).ino
  const objects = path.join(ws, ".pipeline/cache/objects")
  for (const d of fs.readdirSync(objects)) for (const f of fs.readdirSync(path.join(objects, d))) if (fs.statSync(path.join(objects, d, f)).ino === ino) return path.join(objects, d, f)
  throw new Error(`no object for ${rel}`)
}

// ------------------------------------------------------------------ 1 and 3: the real upload stage

describe("1. publishing never deletes what it did not write; 3. what was published matches the outputs", () => {
  let ws: string
  beforeAll(() => {
    ws = makeDemoWorkspace(quickDemo, "publish-")
    const r = cli(ws, ["run"])
    expect(r.code, r.stderr).toBe(0)
  }, 120_000)

  it("refuses targets that are, hold or lie in the workspace's own files, before anything runs, and deletes nothing", () => {
    fs.mkdirSync(path.join(ws, "mydata"))
    fs.writeFileSync(path.join(ws, "mydata", "keep.csv"), "precious\n")
    fs.mkdirSync(path.join(ws, "outside-owned"))
    fs.writeFileSync(path.join(ws, "outside-owned", "notes.txt"), "mine\n")
    const before = contents(ws)
    for (const [target, says] of [
      ["dir://.", "would overwrite the workspace itself"],
      ["dir://..", "would overwrite a directory that holds the workspace"],
      [`dir://${path.dirname(ws)}`, "would overwrite a directory that holds the workspace"],
      ["dir://out", "would overwrite out/, where every stage's outputs live"],
      ["dir://out/train", "would overwrite out/train/, the outputs of stage train"],
      ["dir://out/upload/x", "would overwrite out/upload/, the outputs of stage upload"],
      ["dir://.pipeline", "would overwrite .pipeline/, the cache and state of the pipeline"],
      ["dir://.pipeline/cache/objects", "would overwrite .pipeline/, the cache and state of the pipeline"],
      ["dir://mydata", "holds 1 entry that no publish wrote (keep.csv)"],
      ["dir://outside-owned", "holds 1 entry that no publish wrote (notes.txt)"],
      ["dir://pipeline.yaml", "would overwrite a directory that holds pipeline.yaml"]
    ] as const) {
      const r = cli(ws, ["run", "upload", "--set", `upload.target=${target}`])
      expect(r.code, `${target}: ${r.stderr}`).toBe(2)
      oneLine(r.stderr)
      noStack(r.stderr)
      expect(r.stderr).toContain(says)
      expect(r.stdout).toBe("") // refused before the plan ran anything
    }
    expect(contents(ws)).toEqual(before)
  })

  it("republishes only over what a previous publish recorded, and keeps what anyone else put there", () => {
    let r = cli(ws, ["run", "upload", "--set", "upload.target=dir://pub"])
    expect(r.code, r.stderr).toBe(0)
    const manifest = JSON.parse(read(ws, "pub/.pipeline-publish.json")) as { files: Array<{ path: string }> }
    expect(manifest.files.map((f) => f.path)).toContain("eval/metrics.json")
    // a file the user adds: the next publish refuses instead of deleting it
    fs.writeFileSync(path.join(ws, "pub", "README.txt"), "my notes\n")
    r = cli(ws, ["run", "upload", "--set", "upload.target=dir://pub", "--set", "eval.maxSamples=1"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("dir://pub holds 1 entry that no publish wrote (README.txt)")
    expect(read(ws, "pub/README.txt")).toBe("my notes\n")
    fs.rmSync(path.join(ws, "pub", "README.txt"))
    r = cli(ws, ["run", "upload", "--set", "upload.target=dir://pub", "--set", "eval.maxSamples=1"])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(read(ws, "pub/eval/metrics.json")).samples).toBe(1)
    expect(fs.readdirSync(path.dirname(path.join(ws, "pub"))).filter((n) => n.includes(".publish-"))).toEqual([])
  })

  it("a restored upload republishes: the published copy always matches the outputs, and status checks it", () => {
    let r = cli(ws, ["run", "--set", "eval.maxSamples=1"])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(read(ws, "out/published/eval/metrics.json")).samples).toBe(1)
    r = cli(ws, ["run"]) // eval is restored from the run-cache; upload's old entry would be too
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(read(ws, "out/eval/metrics.json")).samples).toBeGreaterThan(1) // the params file's maxSamples again
    expect(read(ws, "out/published/eval/metrics.json")).toBe(read(ws, "out/eval/metrics.json"))
    expect(r.stdout).toMatch(/upload: running \(.*dir:\/\/out\/published holds another publish/)
    expect(cli(ws, ["status", "--ci"]).code).toBe(0)
    // an edit of the published copy is seen too
    const published = path.join(ws, "out/published/eval/metrics.json")
    fs.writeFileSync(published, "{}\n")
    const s = cli(ws, ["status", "upload"])
    expect(s.stdout).toMatch(/upload\s+stale \(published file modified: dir:\/\/out\/published\/eval\/metrics\.json\)/)
    expect(cli(ws, ["run"]).code).toBe(0)
    expect(read(ws, "out/published/eval/metrics.json")).toBe(read(ws, "out/eval/metrics.json"))
  })
})

// ------------------------------------------------------------------ 2: paths from state files

describe("2. paths read from the lock, the run-cache and tree objects stay inside out/<stage>/", () => {
  const victimDir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "victim-"))
    fs.writeFileSync(path.join(d, "victim.txt"), "do not touch\n")
    return d
  }

  it("the lock: an edited output path is refused, naming the file and field; nothing outside is touched", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    const v = victimDir()
    const escape = path.relative(path.join(ws, "out", "c"), path.join(v, "victim.txt"))
    const good = read(ws, "pipeline.lock")
    for (const bad of [`out/c/${escape}`, path.join(v, "victim.txt"), "out/b/b.txt", "out/c/./c.txt"]) {
      const lock = YAML.parse(good)
      lock.stages.c.outputs[0].path = bad
      fs.writeFileSync(path.join(ws, "pipeline.lock"), YAML.stringify(lock))
      fs.rmSync(path.join(ws, "out", "c"), { recursive: true, force: true })
      const r = cli(ws, ["run", "c"])
      expect(r.code, r.stderr).toBe(2)
      oneLine(r.stderr)
      expect(r.stderr).toContain("pipeline.lock: stages.c.outputs[0].path")
      expect(r.stderr).toContain("is not inside out/c/")
      expect(read(v, "victim.txt")).toBe("do not touch\n")
      expect(fs.readdirSync(v)).toEqual(["victim.txt"])
      expect(fs.readdirSync(ws).filter((n) => n.startsWith("victim"))).toEqual([])
    }
  })

  it("a run-cache entry with an escaping path is ignored with a warning and the stage reruns", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    expect(cli(ws, ["run", "c", "--set", "c.repeat=3"]).code).toBe(0)
    runs(ws)
    const v = victimDir()
    const dir = path.join(ws, ".pipeline/runs/c")
    // the entry of repeat=2 (the one a switch back would restore)
    const lockKey = /c:\n\s+key: blake3:([0-9a-f]+)/.exec(read(ws, "pipeline.lock"))![1]!
    const entryFile = fs.readdirSync(dir).map((f) => path.join(dir, f)).find((f) => !f.includes(lockKey))!
    const entry = JSON.parse(fs.readFileSync(entryFile, "utf8"))
    entry.entry.outputs[0].path = `out/c/${path.relative(path.join(ws, "out", "c"), path.join(v, "victim.txt"))}`
    fs.writeFileSync(entryFile, JSON.stringify(entry))
    const r = cli(ws, ["run", "c"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/warning: \.pipeline\/runs\/c\/[0-9a-f]+\.json: outputs\[0\]\.path .* is not inside out\/c\/ .*; ignoring this run-cache entry/)
    expect(runs(ws)).toEqual(["c"]) // recomputed, not restored through the bad entry
    expect(read(v, "victim.txt")).toBe("do not touch\n")
    expect(read(ws, "out/c/c.txt")).toBe("hello world\n-x".repeat(2))
  })

  it("a tree object whose entries escape is quarantined, never built from", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "big"]).code).toBe(0)
    runs(ws)
    const v = victimDir()
    // a well-formed object (its digest matches its bytes) whose entry climbs out of out/big/files
    const fileObj = objectOf(ws, "out/big/files/p1")
    const fileDigest = `blake3:${path.basename(path.dirname(fileObj))}${path.basename(fileObj)}`
    const evil = canonicalJson({ type: "tree", entries: [{ path: `../../../${path.relative(ws, v)}/victim.txt`, digest: fileDigest, size: 2, executable: false }] })
    const digest = Digest.ofBytes(evil)
    const hex = Digest.digestHex(digest)
    fs.mkdirSync(path.join(ws, ".pipeline/cache/objects", hex.slice(0, 2)), { recursive: true })
    fs.writeFileSync(path.join(ws, ".pipeline/cache/objects", hex.slice(0, 2), hex.slice(2)), evil)
    fs.writeFileSync(path.join(ws, "pipeline.lock"), read(ws, "pipeline.lock").replace(/(path: out\/big\/files\n\s+kind: dir\n\s+digest: )blake3:[0-9a-f]+/, `$1${digest}`))
    fs.rmSync(path.join(ws, "out", "big"), { recursive: true })
    const r = cli(ws, ["run", "big"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/warning: cache object blake3:[0-9a-f]+: entry path ".*victim\.txt" has a \.\. segment; it was moved to \.pipeline\/cache\/corrupt/)
    expect(runs(ws)).toEqual(["big"])
    expect(read(v, "victim.txt")).toBe("do not touch\n")
    expect(fs.readdirSync(path.join(ws, "out", "big", "files")).sort()).toEqual(["p1", "p2", "p3"])
  })

  it("a symbolic link below out/ is never followed: the engine replaces it instead of deleting through it", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "tmpproducer"]).code).toBe(0)
    const v = victimDir()
    // out/tmpproducer swapped for a link to a directory holding the same bytes
    fs.cpSync(path.join(ws, "out", "tmpproducer"), v, { recursive: true })
    fs.chmodSync(path.join(v, "big.txt"), 0o644)
    fs.rmSync(path.join(ws, "out", "tmpproducer"), { recursive: true })
    fs.symlinkSync(v, path.join(ws, "out", "tmpproducer"))
    // tmpconsumer runs and frees the temporary big.txt afterwards
    const r = cli(ws, ["run", "tmpconsumer"])
    expect(r.code, r.stderr).toBe(0)
    expect(fs.existsSync(path.join(v, "big.txt"))).toBe(true)
    expect(fs.lstatSync(path.join(ws, "out", "tmpproducer")).isSymbolicLink()).toBe(false)
  })
})

// ------------------------------------------------------------------ 4, 5, 6: errors a user can read, early

describe("4. a worker's own error reaches the user as one line", () => {
  it("the trainer's reason, not the tail of a Node stack trace", async () => {
    const { runWorker } = await import("../stages/lib/worker.ts")
    const { ChildProcesses } = await import("../engine/Services.ts")
    const { protocol, LoraParams, TrainConfig } = await import("../stages/train/protocol.ts")
    const Effect = await import("effect/Effect")
    const Schema = await import("effect/Schema")
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "worker-"))
    const job = {
      modelDir: path.join(dir, "no-model"), trainBin: "", valBin: "", adapterDir: "", metricsFile: "", scratch: dir,
      t: Schema.decodeUnknownSync(TrainConfig)({}), lora: Schema.decodeUnknownSync(LoraParams)({}), device: "cpu" as const, precision: "fp32" as const
    }
    const err = await Effect.runPromise(
      Effect.flip(runWorker({ file: path.join(REPO, "stages/train/worker.ts"), label: "trainer", protocol, job, jobFile: path.join(dir, "job.json"), onEvent: () => Effect.void })).pipe(
        Effect.provide(ChildProcesses.node)
      )
    )
    expect(err.message).toMatch(new RegExp(`^${path.join(dir, "no-model", "config.json")}: ENOENT`))
    oneLine(err.message)
    noStack(err.message)
    // a worker that dies without a word is named by how it died
    const crash = path.join(dir, "crash.ts")
    fs.writeFileSync(crash, `process.stderr.write("native: bad access\\n"); process.kill(process.pid, "SIGSEGV")\n`)
    const died = await Effect.runPromise(Effect.flip(runWorker({ file: crash, label: "trainer", protocol, job, jobFile: path.join(dir, "j2.json"), onEvent: () => Effect.void })).pipe(Effect.provide(ChildProcesses.node)))
    expect(died.message).toBe("the trainer was killed by SIGSEGV: native: bad access")
    // an event that does not decode with the protocol's schema is not passed on as one
    const liar = path.join(dir, "liar.ts")
    fs.writeFileSync(liar, `process.stdout.write(JSON.stringify({ type: "step", step: "seven" }) + "\\n")\n`)
    const odd = await Effect.runPromise(Effect.flip(runWorker({ file: liar, label: "trainer", protocol, job, jobFile: path.join(dir, "j3.json"), onEvent: () => Effect.void })).pipe(Effect.provide(ChildProcesses.node)))
    expect(odd.message).toBe('the trainer printed a line that is not one of its events: {"type":"step","step":"seven"}')
    // a worker that cannot start at all (the processes service points at a Node that is not there)
    const { spawn } = await import("node:child_process")
    const Layer = await import("effect/Layer")
    const noNode = Layer.succeed(ChildProcesses, { spawn: (_file: string, args: ReadonlyArray<string>) => spawn(path.join(dir, "no-node"), [...args], { stdio: ["ignore", "pipe", "pipe"] }), exec: () => Promise.reject(new Error("unused")) })
    const unborn = await Effect.runPromise(Effect.flip(runWorker({ file: liar, label: "trainer", protocol, job, jobFile: path.join(dir, "j4.json"), onEvent: () => Effect.void })).pipe(Effect.provide(noNode)))
    expect(unborn.message).toBe(`the trainer could not start: spawn ${path.join(dir, "no-node")} ENOENT`)
  })
})

describe("5. params that cannot make sense are refused when decoded, exit 2", () => {
  const ws = makeDemoWorkspace((y) => y, "params-")
  it.each([
    ["train.batchSize=0", "train.batchSize: Expected a value greater than or equal to 1, got 0"],
    ["train.lr=-5e-3", "train.lr: Expected a value greater than 0, got -0.005"],
    ["train.maxSteps=0", "train.maxSteps: Expected a value greater than or equal to 1, got 0"],
    ["train.gradAccum=-1", "train.gradAccum: Expected a value greater than or equal to 1, got -1"],
    ["train.epochs=0", "train.epochs: Expected a value greater than 0, got 0"],
    ["train.evalEvery=0", "train.evalEvery: Expected a value greater than or equal to 1, got 0"],
    ["lora.alpha=0", "lora.alpha: Expected a value greater than 0, got 0"],
    ["lora.targets=[]", "lora.targets: Expected a value with a length of at least 1, got []"],
    ["lora.targets=[qproj]", "lora.targets.0: Expected \"q_proj\" | "],
    ["tokenize.maxSeqLen=20", "tokenize.maxSeqLen: Expected a value between 32 and 262144, got 20"],
    ["split.valFraction=0", "split.valFraction: Expected a value greater than 0, got 0"],
    ["eval.gates={accuracy: 0.9}", "stage eval: eval.gates.accuracy: no such metric (metrics: samples, intents, valLoss, valPerplexity, baseValLoss, baseValPerplexity, turns, decisionAccuracy, toolNameAccuracy"],
    ["train.device=cuda", "stage train: train.precision fp32: the CUDA backend trains in mixed precision (16-bit operands, fp32 accumulation and master weights); set train.precision: fp16 (any GPU from a T4) or bf16 (sm_80+: A100, L4, H100)"],
    ["train.precision=fp16", "stage train: train.precision fp16: the CPU backend computes in fp32 (fp16 and bf16 are the CUDA backend's: train.device: cuda)"],
    ["train.precision=bf16", "stage train: train.precision bf16: the CPU backend computes in fp32 (fp16 and bf16 are the CUDA backend's: train.device: cuda)"],
    ["train.precision=fp8", "train.precision: Expected \"fp32\" | \"fp16\" | \"bf16\", got \"fp8\""],
    ["upload.include=[]", "upload.include: Expected a value with a length of at least 1, got []"]
  ])("--set %s", (set, says) => {
    const r = cli(ws, ["run", "--dry-run", "--set", set])
    expect(r.code, r.stderr).toBe(2)
    oneLine(r.stderr)
    expect(r.stderr).toContain(says)
  })

  it("a stage that needs more memory than the machine gives is named in the plan, before anything runs", () => {
    // resources.memory: what this machine gives stages; train and eval declare 2000 MB (the tiny model's base in fp32, twice, is less)
    const r = cli(ws, ["run", "--dry-run", "--set", "resources.memory=1GB", "--set", "train.maxSteps=3"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^ {2}train .*\n {15}needs about 2\.0 GB of memory, more than the 1\.0 GB here: it may be killed; run it on a bigger machine \(--executor train=slurm\)$/m)
    expect(r.stdout).toMatch(/^ {2}eval .*\n {15}needs about 2\.0 GB of memory/m)
    expect(cli(ws, ["run", "--dry-run", "--set", "train.maxSteps=3"]).stdout).not.toContain("needs about")
  })

  it("a maxSeqLen shorter than every conversation fails tokenize, naming the shortest, before training", () => {
    const quick = makeDemoWorkspace(quickDemo, "seqlen-")
    const r = cli(quick, ["run", "train", "--set", "tokenize.maxSeqLen=200"])
    expect(r.code).toBe(1)
    oneLine(r.stderr)
    expect(r.stderr).toMatch(/^error: stage tokenize failed: tokenize\.maxSeqLen 200 leaves none of the \d+ train conversations \(the shortest has \d+ tokens\); raise maxSeqLen/)
    expect(r.stdout).not.toContain("train: running")
  })

  it("a local model directory is checked when download reads it, naming the file and tensor", () => {
    const model = writeFiles(fs.mkdtempSync(path.join(os.tmpdir(), "model-")), microModel())
    const st = path.join(model, "model.safetensors")
    const b = fs.readFileSync(st)
    fs.writeFileSync(st, b.subarray(0, b.length - 4096)) // offsets now run past the end
    const r = cli(ws, ["run", "download", "--set", `model.source=${model}`])
    expect(r.code).toBe(1)
    oneLine(r.stderr)
    expect(r.stderr).toMatch(/^error: stage download failed: model\.source: .*\/model\.safetensors: [\w.]+: data runs past the end of the file/)
  })
})

describe("6. a local model directory is keyed by its content", () => {
  it("an edit inside it reruns download; an untouched one costs no reading", () => {
    const ws = makeDemoWorkspace((y) => y, "localmodel-")
    const model = writeFiles(path.join(ws, "base-model"), microModel())
    expect(cli(ws, ["run", "download", "--set", "model.source=base-model"]).code).toBe(0)
    expect(cli(ws, ["status", "download", "--ci", "--set", "model.source=base-model"]).code).toBe(0)
    const cfg = path.join(model, "config.json")
    fs.writeFileSync(cfg, read(ws, "base-model/config.json").replace('"rope_theta": 5000000', '"rope_theta": 1000000'))
    const s = cli(ws, ["status", "download", "--set", "model.source=base-model"])
    expect(s.stdout).toMatch(/download\s+stale \(input changed: base-model\)/)
    const r = cli(ws, ["run", "download", "--set", "model.source=base-model"])
    expect(r.code, r.stderr).toBe(0)
    expect(read(ws, "out/download/model/config.json")).toContain('"rope_theta": 1000000')
    // its size drives the estimate (it was 0 B)
    const plan = JSON.parse(cli(ws, ["run", "download", "-f", "--dry-run", "--json", "--set", "model.source=base-model"]).stdout)
    expect(plan.stages[0].estimate.diskBytes).toBeGreaterThan(fs.statSync(path.join(model, "model.safetensors")).size)
  })
})

// ------------------------------------------------------------------ 7: crashes that must be one line or a silent recovery

describe("7. no stack traces: one-line errors, and derived state rebuilt when it cannot be read", () => {
  it("a YAML alias bomb and --config naming a directory are one-line errors", () => {
    const ws = makeWorkspace()
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for (let i = 1; i < 8; i++) bomb.push(`${"abcdefgh"[i]}: &${"abcdefgh"[i]} [${Array(9).fill(`*${"abcdefgh"[i - 1]}`).join(", ")}]`)
    fs.writeFileSync(path.join(ws, "bomb.yaml"), bomb.join("\n") + "\n")
    let r = cli(ws, ["run", "--config", "bomb.yaml"])
    expect(r.code).toBe(2)
    oneLine(r.stderr)
    expect(r.stderr).toContain("bomb.yaml: too many YAML alias expansions")
    r = cli(ws, ["run", "--config", "stages"])
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toBe("error: stages: is a directory, not a params file")
    r = cli(ws, ["run", "--config", "nope.yaml"])
    expect(r.stderr.trim()).toBe("error: nope.yaml: cannot read the params file (no such file)")
  })

  it("stat-cache.json, parse-memo.json and run-cache entries holding null are ignored once and rebuilt", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    expect(cli(ws, ["run", "c", "--set", "c.repeat=3"]).code).toBe(0)
    runs(ws)
    fs.writeFileSync(path.join(ws, ".pipeline/stat-cache.json"), "null")
    fs.writeFileSync(path.join(ws, ".pipeline/parse-memo.json"), "null")
    const entry = path.join(ws, ".pipeline/runs/c", `${"0".repeat(64)}.json`)
    fs.writeFileSync(entry, "null")
    for (const args of [["verify"], ["gc", "--dry-run"], ["status"], ["run", "c", "--set", "c.repeat=3"]]) {
      const r = cli(ws, args)
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0)
      noStack(r.stderr)
    }
    const r = cli(ws, ["run", "c"])
    expect(r.code).toBe(0)
    // rebuilt by the runs above: the next command says nothing
    expect(JSON.parse(read(ws, ".pipeline/stat-cache.json"))).not.toBeNull()
    const quiet = cli(ws, ["verify"])
    expect(quiet.code).toBe(0)
    expect(quiet.stderr).not.toMatch(/stat-cache|parse-memo/)
    expect(quiet.stdout).toContain(`damaged run-cache entry: .pipeline/runs/c/${"0".repeat(64)}.json (not a JSON object)`)
    expect(cli(ws, ["gc"]).stdout).toContain(`removed damaged run-cache entry .pipeline/runs/c/${"0".repeat(64)}.json`)
    expect(fs.existsSync(entry)).toBe(false)
  })

  it("a garbage tree object is quarantined and the stage reruns", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "big"]).code).toBe(0)
    runs(ws)
    const digest = /path: out\/big\/files\n\s+kind: dir\n\s+digest: blake3:([0-9a-f]+)/.exec(read(ws, "pipeline.lock"))![1]!
    const obj = path.join(ws, ".pipeline/cache/objects", digest.slice(0, 2), digest.slice(2))
    fs.chmodSync(obj, 0o644)
    fs.writeFileSync(obj, "garbage{")
    const r = cli(ws, ["run", "big"]) // out/big is in place: checking it reads the tree object
    expect(r.code, r.stderr).toBe(0)
    noStack(r.stderr)
    expect(runs(ws)).toEqual(["big"])
  })

  describe("the dataset", () => {
    const ws = makeDemoWorkspace((y) => y.replace(/source: \S+bitext-sample\.csv\n\s+sha256: \S+\n/, "source: bad.csv\n"), "csv-")
    const header = "flags,instruction,category,intent,response\n"
    it.each([
      ["only a header", header, "out/download/dataset.csv: only a header, no rows"],
      ["a NUL byte", `${header}B,hello,ORDER,cancel_order,ok\nB,he\u0000llo,ORDER,cancel_order,ok\n`, "out/download/dataset.csv line 3: holds a NUL byte"],
      ["invalid UTF-8", Buffer.concat([Buffer.from(`${header}B,hello,ORDER,cancel_order,ok\nB,h`), Buffer.from([0xc3, 0x28]), Buffer.from("llo,ORDER,cancel_order,ok\n")]), "out/download/dataset.csv line 3: not valid UTF-8"],
      ["a 20 MB line", `${header}B,"${"x".repeat(20 * 1024 * 1024)}",ORDER,cancel_order,ok\n`, "out/download/dataset.csv line 2: a record longer than 16 MiB characters"]
    ])("%s fails entities with the file and line", (_, body, says) => {
      const file = path.join(ws, "bad.csv")
      fs.writeFileSync(file, body)
      const r = cli(ws, ["run", "entities"])
      expect(r.code, r.stderr).toBe(1)
      oneLine(r.stderr)
      expect(r.stderr).toContain(says)
    })
  })
})

// ------------------------------------------------------------------ 8: locks

describe("8. the workspace lock is dropped by the kernel when its holder dies", () => {
  it("a run right after a kill -9 gets the workspace, even while the dead run is an unreaped zombie", async () => {
    const ws = makeWorkspace()
    cli(ws, ["run", "--dry-run"])
    // perl forks the run and sleeps without reaping it: after the kill it stays a zombie
    const parent = spawn("perl", ["-e", `$| = 1; my $p = fork(); if ($p == 0) { open(STDOUT, ">", "/dev/null"); exec(@ARGV) } print "$p\\n"; sleep 30;`, NODE, BIN, "run", "slow"], { cwd: ws, env: { ...process.env, CI: "true" } })
    let pid = 0
    parent.stdout.on("data", (d) => (pid ||= Number(String(d).trim())))
    await waitFor(() => fs.existsSync(path.join(ws, "runs.log")) && read(ws, "runs.log").includes("slow-started"))
    process.kill(pid, "SIGKILL")
    await waitFor(() => {
      try {
        return fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.startsWith("Z")
      } catch {
        return false
      }
    })
    const r = cli(ws, ["run", "a"])
    parent.kill("SIGKILL")
    expect(r.code, r.stderr).toBe(0)
  })

  it("an empty or garbage lock file does not lock the workspace", () => {
    const ws = makeWorkspace()
    fs.mkdirSync(path.join(ws, ".pipeline"), { recursive: true })
    for (const junk of ["", "garbage{", "null", '{"pid": "x"}']) {
      fs.writeFileSync(path.join(ws, ".pipeline/lock"), junk)
      const r = cli(ws, ["run", "a"])
      expect(r.code, `${JSON.stringify(junk)}: ${r.stderr}`).toBe(0)
      expect(fs.existsSync(path.join(ws, ".pipeline/lock"))).toBe(false)
    }
  })

  it("the file lock (PIPELINE_FILE_LOCK=1, for workspaces on NFS) takes over garbage too", () => {
    // a live holder refusing a second run: tests/e2e.test.ts, "stops a second run"
    const ws = makeWorkspace()
    fs.mkdirSync(path.join(ws, ".pipeline"), { recursive: true })
    fs.writeFileSync(path.join(ws, ".pipeline/lock"), "garbage{")
    expect(cli(ws, ["run", "a"], { PIPELINE_FILE_LOCK: "1" }).code).toBe(0)
  })
})

// ------------------------------------------------------------------ 9: full disks

describe("9. full disks: the pre-flight says how much is missing, and ENOSPC is named", () => {
  it("a cache already over the budget does not refuse a plan that only restores", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    fs.rmSync(path.join(ws, "out"), { recursive: true })
    fs.appendFileSync(path.join(ws, "pipeline.yaml"), "budget: { disk: 10B }\n")
    const r = cli(ws, ["run", "c"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/c: restored from local cache/)
  })

  // a 60 MB disk per test (one that fills it must not starve the next); skipped where mounting is not allowed
  const probe = mountTmpfs(1)
  probe?.unmount()
  const mounts: Array<{ unmount: () => void }> = []
  afterAll(() => mounts.forEach((m) => m.unmount()))
  const disk = () => {
    const m = mountTmpfs(60)!
    mounts.push(m)
    return m.dir
  }
  const onTmpfs = () => {
    const dest = fs.mkdtempSync(path.join(disk(), "ws-"))
    fs.cpSync(makeWorkspace(), dest, { recursive: true })
    return dest
  }
  const tmpfs = probe

  it.skipIf(tmpfs === undefined)("on a 60 MB disk: 'needs X on disk, Y free: Z short', and no negative sizes", () => {
    const ws = onTmpfs()
    const r = cli(ws, ["run", "big", "--set", "big.partBytes.p1=102800000"])
    expect(r.code).toBe(3)
    const m = /needs ([\d.]+) MB on disk, ([\d.]+) MB free: ([\d.]+) MB short/.exec(r.stderr)
    expect(m, r.stderr).not.toBeNull()
    const [need, free, short] = m!.slice(1).map(Number) as [number, number, number]
    expect(need).toBeCloseTo(102.8, 0)
    expect(short).toBeCloseTo(need - free, 0)
    const dry = cli(ws, ["run", "a", "--dry-run", "--set", "big.partBytes.p1=102800000"])
    expect(dry.stdout).toMatch(/warning: downstream: big would need [\d.]+ MB more than is free on disk/)
    expect(dry.stdout + r.stderr).not.toMatch(/-\d/)
  })

  it.skipIf(tmpfs === undefined)("a stage that fills the disk fails with disk full (ENOSPC), its name and the bytes", () => {
    const ws = onTmpfs()
    const r = cli(ws, ["run", "liar", "--set", "liar.mb=200"])
    expect(r.code).toBe(1)
    oneLine(r.stderr)
    expect(r.stderr).toMatch(/^error: stage liar failed: disk full \(ENOSPC\): the workspace's disk ran out of space \([\d.]+ MB written by the stage, [\d.]+ (kB|B) free now\); it declares only 10 B, so its estimate is too low/)
    // nothing half-written is left behind, and the workspace still works
    expect(fs.readdirSync(path.join(ws, ".pipeline", "tmp"))).toEqual([])
    expect(cli(ws, ["run", "a"]).code).toBe(0)
  })

  it.skipIf(tmpfs === undefined)("a copy that fills the disk (EIO from fs.cpSync on tmpfs) is named a full disk too", () => {
    const ws = onTmpfs()
    const src = fs.mkdtempSync(path.join(os.tmpdir(), "src-"))
    const r = cli(ws, ["run", "liar", "--set", "liar.mb=100", "--set", `liar.copy=${src}`])
    expect(r.code).toBe(1)
    oneLine(r.stderr)
    expect(r.stderr).toMatch(/^error: stage liar failed: disk full \(EIO with 0 bytes free\): the workspace's disk ran out of space \([\d.]+ MB written by the stage, 0 B free now\)/m)
    // the caches that could not be saved are said as warnings, not a crash; the next command works
    noStack(r.stderr)
    expect(cli(ws, ["status", "a"]).code).toBe(0)
  })

  it.skipIf(tmpfs === undefined)("a local model directory too big for the disk fails the pre-flight, before anything runs", () => {
    const ws = fs.mkdtempSync(path.join(disk(), "demo-"))
    const demo = makeDemoWorkspace()
    fs.cpSync(demo, ws, { recursive: true })
    const model = writeFiles(fs.mkdtempSync(path.join(os.tmpdir(), "model-")), microModel({ vocab: 600_000 }))
    const r = cli(ws, ["run", "download", "--set", `model.source=${model}`])
    expect(r.code, r.stderr).toBe(3)
    expect(r.stderr).toMatch(/stage download needs [\d.]+ MB on disk, [\d.]+ MB free: [\d.]+ MB short/)
    expect(fs.existsSync(path.join(ws, "out"))).toBe(false)
  })
})

// ------------------------------------------------------------------ also

describe("also", () => {
  it("the plan says when an input lies outside the workspace", () => {
    const ws = makeDemoWorkspace((y) => y, "outside-")
    const r = cli(ws, ["run", "download", "--dry-run"])
    expect(r.stdout).toContain(`warning: download: input ${path.join(REPO, "data", "bitext-sample.csv")} lies outside the workspace`)
  })

  it("--set refuses keys that reach the prototype", () => {
    const ws = makeWorkspace()
    for (const set of ["__proto__.x=1", "a.constructor=1", "c.__proto__.repeat=5"]) {
      const r = cli(ws, ["run", "--dry-run", "--set", set])
      expect(r.code, set).toBe(2)
      expect(r.stderr).toMatch(/is not a params key/)
    }
  })

  it("a byte flipped in the middle of a cached object, mtime kept: verify reports it and the next run puts good bytes in out/", () => {
    const ws = makeWorkspace()
    expect(cli(ws, ["run", "c"]).code).toBe(0)
    runs(ws)
    const obj = objectOf(ws, "out/c/c.txt")
    const st = fs.statSync(obj)
    fs.chmodSync(obj, 0o644)
    const bytes = fs.readFileSync(obj)
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x20
    fs.writeFileSync(obj, bytes)
    fs.utimesSync(obj, st.atime, st.mtime)
    fs.chmodSync(obj, 0o444)
    expect(read(ws, "out/c/c.txt")).not.toBe("hello world\n-x".repeat(2)) // out/ links the same inode
    const v = cli(ws, ["verify"])
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(/corrupt: blake3:[0-9a-f]{64}/)
    const r = cli(ws, ["run", "c"])
    expect(r.code, r.stderr).toBe(0)
    expect(read(ws, "out/c/c.txt")).toBe("hello world\n-x".repeat(2))
    expect(runs(ws)).toEqual(["c"])
    expect(cli(ws, ["verify"]).code).toBe(0)
  })
})
