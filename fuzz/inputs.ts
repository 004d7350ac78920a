/**
 * Bad inputs through the real CLI (`npm run fuzz -- inputs`): about a hundred
 * wrong params, broken files, damaged state and hostile paths. Each must end
 * with the expected exit code and, when it fails, one line on stderr naming
 * the file, line or field: never a stack trace, never exit 70. Derived state
 * that cannot be read is ignored and rebuilt (exit 0). Prints the table.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { cli, makeDemoWorkspace, makeWorkspace, REPO } from "../tests/helpers.ts"
import { microModel, safetensorsHeader, withSafetensorsHeader, writeFiles } from "../tests/microModel.ts"

const demo = (): string => {
  // the dataset lives in the workspace, without a pinned sha256, so cases can swap it
  const ws = makeDemoWorkspace((y) => y.replace(/source: \S+bitext-sample\.csv\n\s+sha256: \S+\n/, "source: data.csv\n"), "bad-demo-")
  fs.copyFileSync(path.join(REPO, "data", "bitext-sample.csv"), path.join(ws, "data.csv"))
  return ws
}

type Kind = "fixture" | "fixture-ran" | "demo"

interface Case {
  readonly what: string
  readonly kind: Kind
  readonly args: ReadonlyArray<string>
  readonly expect: number
  readonly setup?: (ws: string) => void
  readonly env?: Record<string, string>
}

const set = (what: string, value: string, expect = 2, extra: ReadonlyArray<string> = []): Case => ({
  what: `--set ${what}=${value}`,
  kind: "demo",
  args: ["run", "--dry-run", "--set", `${what}=${value}`, ...extra],
  expect
})

const write = (rel: string, body: string | Buffer) => (ws: string) => {
  fs.mkdirSync(path.dirname(path.join(ws, rel)), { recursive: true })
  fs.writeFileSync(path.join(ws, rel), body)
}
const params = (yaml: string) => write("bad.yaml", yaml)

const lockEdit = (f: (lock: string) => string) => (ws: string) => fs.writeFileSync(path.join(ws, "pipeline.lock"), f(fs.readFileSync(path.join(ws, "pipeline.lock"), "utf8")))
const firstRunEntry = (ws: string) => {
  const d = path.join(ws, ".pipeline/runs/c")
  return path.join(d, fs.readdirSync(d)[0]!)
}
const dataset = (body: string | Buffer): Case["setup"] => write("data.csv", body)
const HEADER = "flags,instruction,category,intent,response\n"
const ROW = "B,cancel my order,ORDER,cancel_order,I can help with that.\n"

const model = (edit: (files: Record<string, Buffer>) => void) => (ws: string) => {
  const files = microModel({ layers: 2 })
  edit(files)
  writeFiles(path.join(ws, "m"), files)
}
const runModel = (what: string, edit: (files: Record<string, Buffer>) => void, expect = 1): Case => ({
  what: `model: ${what}`,
  kind: "demo",
  args: ["run", "download", "--set", "model.source=m"],
  expect,
  setup: model(edit)
})

const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]", ...Array.from({ length: 7 }, (_, i) => `${"bcdefgh"[i]}: &${"bcdefgh"[i]} [${Array(9).fill(`*${"abcdefgh"[i]}`).join(", ")}]`)].join("\n")

export const CASES: ReadonlyArray<Case> = [
  // ---- params, one field at a time (dry-run: refused before anything runs)
  set("train.batchSize", "0"), set("train.batchSize", "-1"), set("train.batchSize", "1.5"), set("train.batchSize", "two"),
  set("train.lr", "-5e-3"), set("train.lr", "0"), set("train.lr", "2"), set("train.lr", ".nan"), set("train.lr", "fast"),
  set("train.epochs", "0"), set("train.maxSteps", "0"), set("train.maxSteps", "2.5"), set("train.gradAccum", "0"),
  set("train.warmupSteps", "-1"), set("train.weightDecay", "-0.1"), set("train.weightDecay", "2"), set("train.maxGradNorm", "0"),
  set("train.evalEvery", "0"), set("train.checkpointEvery", "0"), set("train.keepCheckpoints", "0"), set("train.evalSamples", "0"),
  set("train.device", "tpu"), set("train.device", "cuda"), set("train.precision", "bf16"), set("train.scheduler", "wavy"), set("train.lrr", "1"),
  set("lora.r", "0"), set("lora.r", "2000"), set("lora.alpha", "0"), set("lora.dropout", "1"), set("lora.dropout", "-0.1"),
  set("lora.targets", "[]"), set("lora.targets", "[qproj]"), set("lora.targets", "[q_proj, q_proj]"),
  set("tokenize.maxSeqLen", "20"), set("tokenize.maxSeqLen", "0"),
  { what: "--set tokenize.maxSeqLen=200 (below every conversation)", kind: "demo", args: ["run", "tokenize", "--set", "tokenize.maxSeqLen=200"], expect: 1 }, set("tokenize.maxSeqLen", "1e9"), set("tokenize.overflow", "cut"),
  set("split.valFraction", "0"), set("split.valFraction", "0.95"), set("entities.maxBadFraction", "2"), set("entities.unknownKinds", "guess"),
  set("toolcalls.distractors", "-1"), set("toolcalls.distractors", "50"), set("eval.maxSamples", "0"), set("eval.gates", "{accuracy: 0.9}"),
  set("eval.gates", "{valLoss: x}"), set("gguf.types", "[Q3_K]"), set("merge.dtype", "fp8"),
  set("upload.target", "s3://bucket/x"), set("upload.target", "dir://."), set("upload.target", "dir://out"), set("upload.target", "dir://.pipeline"),
  set("upload.target", "dir://.."), set("upload.target", "dir://out/train"), set("upload.target", "dir://pipeline.yaml"),
  set("budget.disk", "lots"), set("budget.disk", "-5GB"), set("resources.memory", "x"), set("resources.gpus", "-1"),
  set("temporary", "[nope.x]"), set("foo.bar", "1"), set("model.layers", "9"), set("dataset.sha256", "abc"),
  // ---- --set syntax
  { what: "--set without =", kind: "fixture", args: ["run", "--dry-run", "--set", "c.repeat"], expect: 2 },
  { what: "--set with an empty key", kind: "fixture", args: ["run", "--dry-run", "--set", "=1"], expect: 2 },
  { what: "--set a..b", kind: "fixture", args: ["run", "--dry-run", "--set", "c..repeat=1"], expect: 2 },
  { what: "--set __proto__.x=1", kind: "fixture", args: ["run", "--dry-run", "--set", "__proto__.x=1"], expect: 2 },
  { what: "--set constructor", kind: "fixture", args: ["run", "--dry-run", "--set", "c.constructor.x=1"], expect: 2 },
  { what: "--set unterminated YAML", kind: "fixture", args: ["run", "--dry-run", "--set", "c.repeat=[1,"], expect: 2 },
  { what: "--set a section to a scalar", kind: "fixture", args: ["run", "--dry-run", "--set", "c=5"], expect: 2 },
  { what: "--set a secret's value", kind: "fixture", args: ["run", "--dry-run", "--set", "cmd.word=hf_secretvalue123"], expect: 2, env: { HF_TOKEN: "hf_secretvalue123" } },
  // ---- params files
  { what: "YAML syntax error", kind: "fixture", args: ["run", "--config", "bad.yaml"], expect: 2, setup: params("a: [1,\n") },
  { what: "YAML tab indentation", kind: "fixture", args: ["run", "--config", "bad.yaml"], expect: 2, setup: params("c:\n\trepeat: 2\n") },
  { what: "YAML duplicate key", kind: "fixture", args: ["run", "--config", "bad.yaml"], expect: 2, setup: params("c: {repeat: 2}\nc: {repeat: 3}\n") },
  { what: "YAML alias bomb", kind: "fixture", args: ["run", "--config", "bad.yaml"], expect: 2, setup: params(bomb) },
  { what: "a list at the top level", kind: "fixture", args: ["run", "--config", "bad.yaml"], expect: 2, setup: params("- a\n- b\n") },
  { what: "binary garbage as params", kind: "fixture", args: ["run", "--config", "bad.yaml"], expect: 2, setup: params(Buffer.from([0, 1, 2, 255, 254, 0, 10]).toString("latin1")) },
  { what: "a 20 MB params file", kind: "fixture", args: ["run", "--config", "bad.yaml"], expect: 2, setup: params("x".repeat(20 * 1024 * 1024)) },
  { what: "--config naming a directory", kind: "fixture", args: ["run", "--config", "stages"], expect: 2 },
  { what: "--config naming nothing", kind: "fixture", args: ["run", "--config", "nope.yaml"], expect: 2 },
  { what: "an empty params file", kind: "fixture", args: ["run", "c", "--config", "bad.yaml"], expect: 2, setup: params("") },
  // ---- the command line
  { what: "an unknown stage", kind: "fixture", args: ["run", "nope"], expect: 2 },
  { what: "an unknown flag", kind: "fixture", args: ["run", "--frobnicate"], expect: 2 },
  { what: "gc --older-than yesterday", kind: "fixture", args: ["gc", "--older-than", "yesterday"], expect: 2 },
  { what: "gc --max-size huge", kind: "fixture", args: ["gc", "--max-size", "huge"], expect: 2 },
  { what: "dag --format svg", kind: "fixture", args: ["dag", "--format", "svg"], expect: 2 },
  // ---- state: the lock (committed) is refused when wrong; derived state is rebuilt
  { what: "pipeline.lock not YAML", kind: "fixture-ran", args: ["run", "c"], expect: 2, setup: write("pipeline.lock", "a: [1,\n") },
  { what: "pipeline.lock version 2", kind: "fixture-ran", args: ["run", "c"], expect: 2, setup: lockEdit((l) => l.replace("version: 1", "version: 2")) },
  { what: "pipeline.lock path out/c/../../../x", kind: "fixture-ran", args: ["run", "c"], expect: 2, setup: lockEdit((l) => l.replace("path: out/c/c.txt", "path: out/c/../../../x")) },
  { what: "pipeline.lock absolute path", kind: "fixture-ran", args: ["run", "c"], expect: 2, setup: lockEdit((l) => l.replace("path: out/c/c.txt", "path: /etc/passwd")) },
  { what: "pipeline.lock another stage's path", kind: "fixture-ran", args: ["run", "c"], expect: 2, setup: lockEdit((l) => l.replace("path: out/c/c.txt", "path: out/a/a.txt")) },
  { what: "pipeline.lock bad digest", kind: "fixture-ran", args: ["run", "c"], expect: 2, setup: lockEdit((l) => l.replace(/digest: blake3:[0-9a-f]+/, "digest: md5:1234")) },
  { what: "pipeline.lock stage name ../x", kind: "fixture-ran", args: ["run", "c"], expect: 2, setup: lockEdit((l) => l.replace("\n  c:\n", "\n  ../x:\n")) },
  { what: "stat-cache.json null", kind: "fixture-ran", args: ["run", "c"], expect: 0, setup: write(".pipeline/stat-cache.json", "null") },
  { what: "stat-cache.json garbage", kind: "fixture-ran", args: ["run", "c"], expect: 0, setup: write(".pipeline/stat-cache.json", "{{{") },
  { what: "stat-cache.json bad entries", kind: "fixture-ran", args: ["run", "c"], expect: 0, setup: write(".pipeline/stat-cache.json", '{"/x": [1], "/y": null}') },
  { what: "parse-memo.json null (verify)", kind: "fixture-ran", args: ["verify"], expect: 0, setup: write(".pipeline/parse-memo.json", "null") },
  { what: "parse-memo.json an array", kind: "fixture-ran", args: ["status"], expect: 0, setup: write(".pipeline/parse-memo.json", "[1,2]") },
  { what: "run-cache entry null (verify)", kind: "fixture-ran", args: ["verify"], expect: 0, setup: (ws) => fs.writeFileSync(firstRunEntry(ws), "null") },
  { what: "run-cache entry null (gc)", kind: "fixture-ran", args: ["gc"], expect: 0, setup: (ws) => fs.writeFileSync(firstRunEntry(ws), "null") },
  { what: "run-cache entry garbage (run)", kind: "fixture-ran", args: ["run", "c"], expect: 0, setup: (ws) => fs.writeFileSync(firstRunEntry(ws), "garbage") },
  {
    what: "run-cache entry escaping path",
    kind: "fixture-ran",
    args: ["run", "c", "--set", "c.repeat=2"],
    expect: 0,
    setup: (ws) => {
      const f = firstRunEntry(ws)
      fs.writeFileSync(f, fs.readFileSync(f, "utf8").replace("out/c/c.txt", "out/c/../../x"))
      fs.rmSync(path.join(ws, "out/c"), { recursive: true })
    }
  },
  {
    what: "a garbage tree object",
    kind: "fixture-ran",
    args: ["run", "big"],
    expect: 0,
    setup: (ws) => {
      const d = /path: out\/big\/files\n\s+kind: dir\n\s+digest: blake3:([0-9a-f]+)/.exec(fs.readFileSync(path.join(ws, "pipeline.lock"), "utf8"))![1]!
      const obj = path.join(ws, ".pipeline/cache/objects", d.slice(0, 2), d.slice(2))
      fs.chmodSync(obj, 0o644)
      fs.writeFileSync(obj, "garbage{")
    }
  },
  { what: "the loader's bundle manifest null", kind: "fixture-ran", args: ["run", "c"], expect: 0, setup: write(".pipeline/bundle/manifest.json", "null") },
  { what: ".pipeline/lock empty", kind: "fixture", args: ["run", "a"], expect: 0, setup: write(".pipeline/lock", "") },
  { what: ".pipeline/lock garbage", kind: "fixture", args: ["run", "a"], expect: 0, setup: write(".pipeline/lock", "\u0000\u0001garbage") },
  { what: ".pipeline/lock of a dead pid", kind: "fixture", args: ["run", "a"], expect: 0, setup: write(".pipeline/lock", JSON.stringify({ pid: 4194000, host: os.hostname(), startedAt: "then", command: "run" })) },
  { what: ".pipeline/lock of another host", kind: "fixture", args: ["run", "a"], expect: 3, setup: write(".pipeline/lock", JSON.stringify({ pid: 1, host: "elsewhere", startedAt: "then", command: "run" })) },
  { what: "out/ is a file", kind: "fixture", args: ["run", "a"], expect: 2, setup: write("out", "not a directory") },
  { what: ".pipeline is a file", kind: "fixture", args: ["run", "a"], expect: 2, setup: write(".pipeline", "not a directory") },
  { what: "out/c is a symlink to /tmp", kind: "fixture-ran", args: ["run", "c"], expect: 0, setup: (ws) => (fs.rmSync(path.join(ws, "out/c"), { recursive: true }), fs.symlinkSync(os.tmpdir(), path.join(ws, "out/c"))) },
  { what: "an input file is a directory", kind: "fixture", args: ["run", "a"], expect: 1, setup: (ws) => (fs.rmSync(path.join(ws, "input.txt")), fs.mkdirSync(path.join(ws, "input.txt"))) },
  { what: "an input file is missing", kind: "fixture", args: ["run", "a"], expect: 2, setup: (ws) => fs.rmSync(path.join(ws, "input.txt")) },
  // ---- the dataset
  { what: "dataset: only a header", kind: "demo", args: ["run", "entities"], expect: 1, setup: dataset(HEADER) },
  { what: "dataset: empty file", kind: "demo", args: ["run", "entities"], expect: 1, setup: dataset("") },
  { what: "dataset: wrong columns", kind: "demo", args: ["run", "entities"], expect: 1, setup: dataset("a,b\n1,2\n") },
  { what: "dataset: unterminated quote", kind: "demo", args: ["run", "entities"], expect: 1, setup: dataset(`${HEADER}${ROW}B,"never closed,ORDER,x,y\n`) },
  { what: "dataset: a NUL byte", kind: "demo", args: ["run", "entities"], expect: 1, setup: dataset(`${HEADER}${ROW}B,he\u0000llo,ORDER,cancel_order,ok\n`) },
  { what: "dataset: invalid UTF-8", kind: "demo", args: ["run", "entities"], expect: 1, setup: dataset(Buffer.concat([Buffer.from(HEADER + ROW + "B,h"), Buffer.from([0xff, 0xfe]), Buffer.from("llo,ORDER,cancel_order,ok\n")])) },
  { what: "dataset: UTF-16 with a BOM", kind: "demo", args: ["run", "entities"], expect: 1, setup: dataset(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(HEADER + ROW, "utf16le")])) },
  { what: "dataset: one 600 MB line", kind: "demo", args: ["run", "entities"], expect: 1, setup: (ws) => {
    const fd = fs.openSync(path.join(ws, "data.csv"), "w")
    fs.writeSync(fd, `${HEADER}B,"`)
    const mb = Buffer.alloc(1024 * 1024, "x")
    for (let i = 0; i < 600; i++) fs.writeSync(fd, mb)
    fs.writeSync(fd, `",ORDER,cancel_order,ok\n`)
    fs.closeSync(fd)
  } },
  { what: "dataset: every row bad", kind: "demo", args: ["run", "entities"], expect: 1, setup: dataset(`${HEADER}B,,ORDER,cancel_order,\nB,,ORDER,cancel_order,\n`) },
  { what: "dataset.source missing", kind: "demo", args: ["run", "download"], expect: 2, setup: (ws) => fs.rmSync(path.join(ws, "data.csv")) },
  { what: "dataset.source a directory", kind: "demo", args: ["run", "download", "--set", "dataset.source=."], expect: 1 },
  { what: "dataset.sha256 mismatch", kind: "demo", args: ["run", "download", "--set", `dataset.sha256=${"ab".repeat(32)}`], expect: 1 },
  { what: "dataset.source outside the workspace", kind: "demo", args: ["run", "entities", "--set", "dataset.source=/etc/hostname"], expect: 1 },
  { what: "dataset.source hf:// while offline", kind: "demo", args: ["run", "download", "--set", "dataset.source=hf://datasets/a/b/c.csv"], expect: 1, env: { HF_HUB_OFFLINE: "1" } },
  { what: "dataset.source hf:// malformed", kind: "demo", args: ["run", "download", "--set", "dataset.source=hf://datasets/a"], expect: 1 },
  // ---- a local model directory, checked by download
  { what: "model.source missing", kind: "demo", args: ["run", "download", "--set", "model.source=nope"], expect: 2 },
  { what: "model.source a file", kind: "demo", args: ["run", "download", "--set", "model.source=pipeline.yaml"], expect: 1 },
  { what: "model.source http://", kind: "demo", args: ["run", "download", "--set", "model.source=http://example.com/m"], expect: 1 },
  runModel("no config.json", (f) => void delete f["config.json"]),
  runModel("config.json not JSON", (f) => void (f["config.json"] = Buffer.from("{"))),
  runModel("config.json of a llama", (f) => void (f["config.json"] = Buffer.from(f["config.json"]!.toString().replace(/"model_type": "qwen3"/, '"model_type": "llama"').replace("Qwen3ForCausalLM", "LlamaForCausalLM")))),
  runModel("hidden_size -1", (f) => void (f["config.json"] = Buffer.from(f["config.json"]!.toString().replace('"hidden_size": 64', '"hidden_size": -1')))),
  runModel("untied embeddings", (f) => void (f["config.json"] = Buffer.from(f["config.json"]!.toString().replace('"tie_word_embeddings": true', '"tie_word_embeddings": false')))),
  runModel("no tokenizer.json", (f) => void delete f["tokenizer.json"]),
  runModel("no chat template", (f) => void (f["tokenizer_config.json"] = Buffer.from("{}"))),
  runModel("offsets past the end", (f) => {
    const h = safetensorsHeader(f["model.safetensors"]!)
    h["model.norm.weight"]!.data_offsets[1] += 4096
    f["model.safetensors"] = withSafetensorsHeader(f["model.safetensors"]!, h)
  }),
  runModel("truncated weights", (f) => void (f["model.safetensors"] = f["model.safetensors"]!.subarray(0, 5000))),
  runModel("header length garbage", (f) => void f["model.safetensors"]!.writeBigUInt64LE(2n ** 60n, 0)),
  runModel("header not JSON", (f) => void f["model.safetensors"]!.write("}", 8)),
  runModel("a missing tensor", (f) => {
    const h = safetensorsHeader(f["model.safetensors"]!)
    delete h["model.layers.1.mlp.up_proj.weight"]
    f["model.safetensors"] = withSafetensorsHeader(f["model.safetensors"]!, h)
  }),
  runModel("an int8 tensor", (f) => {
    const h = safetensorsHeader(f["model.safetensors"]!)
    const t = h["model.norm.weight"]!
    t.dtype = "I8"
    t.data_offsets[1] = t.data_offsets[0] + 64
    f["model.safetensors"] = withSafetensorsHeader(f["model.safetensors"]!, h)
  }),
  runModel("an index naming ../x", (f) => void (f["model.safetensors.index.json"] = Buffer.from('{"weight_map": {"a": "../x.safetensors"}}'))),
  // ---- secrets and the environment
  { what: "a secret in params", kind: "demo", args: ["run", "--dry-run", "--set", "upload.target=dir://hf_secretvalue123"], expect: 2, env: { HF_TOKEN: "hf_secretvalue123" } }
]

export const inputFuzz = async (): Promise<number> => {
  const rows: Array<string> = []
  let bad = 0
  let ran: string | undefined
  const fixtureRan = () => {
    // a fixture workspace where c and big have run, copied per case
    if (ran === undefined) {
      ran = makeWorkspace()
      for (const t of ["c", "big"]) if (cli(ran, ["run", t]).code !== 0) throw new Error(`fixture run ${t} failed`)
      cli(ran, ["run", "c", "--set", "c.repeat=3"])
      cli(ran, ["run", "c"])
    }
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "bad-ran-"))
    fs.cpSync(ran, d, { recursive: true })
    fs.writeFileSync(path.join(d, "pipeline.lock"), fs.readFileSync(path.join(ran, "pipeline.lock"), "utf8"))
    return d
  }
  for (const [i, c] of CASES.entries()) {
    const ws = c.kind === "demo" ? demo() : c.kind === "fixture" ? makeWorkspace() : fixtureRan()
    try {
      c.setup?.(ws)
      const r = cli(ws, c.args, c.env)
      const err = r.stderr.trim()
      const lines = err === "" ? [] : err.split("\n").filter((l) => !l.startsWith("warning: "))
      const problems: Array<string> = []
      if (r.code !== c.expect) problems.push(`exit ${r.code}, expected ${c.expect}`)
      if (/internal error|\n\s+at |Node\.js v\d/.test(err)) problems.push("stack trace")
      if (r.code !== 0 && lines.length !== 1 && !c.args.includes("--frobnicate") && !c.args.includes("--format")) problems.push(`${lines.length} lines on stderr`)
      if (c.env?.["HF_TOKEN"] && (r.stdout + r.stderr).includes(c.env["HF_TOKEN"])) problems.push("printed the secret")
      if (problems.length > 0) bad++
      const said = (lines[0] ?? (err.split("\n").find((l) => l.startsWith("warning: ")) ?? "")).replace(/\|/g, "\\|").replace(ws, "<ws>").slice(0, 170)
      rows.push(`| ${i + 1} | ${c.what.replace(/\|/g, "\\|")} | \`${c.args.join(" ").slice(0, 60)}\` | ${r.code} | ${said}${problems.length ? ` **${problems.join("; ")}**` : ""} |`)
      process.stderr.write(`${i + 1}/${CASES.length} ${c.what}: exit ${r.code}${problems.length ? ` PROBLEM: ${problems.join("; ")}` : ""}\n`)
    } finally {
      fs.rmSync(ws, { recursive: true, force: true })
    }
  }
  if (ran) fs.rmSync(ran, { recursive: true, force: true })
  console.log(
    [
      `## ${CASES.length} bad inputs through the CLI`,
      "",
      "Each must end with its expected exit code (2 config or usage, 1 a stage failed, 3 pre-flight, 0 when derived state is ignored and rebuilt), one line on stderr besides warnings, and no stack trace.",
      "",
      "| # | input | command | exit | what the user reads (stderr, first line) |",
      "|---:|---|---|---:|---|",
      ...rows,
      "",
      `${CASES.length - bad} of ${CASES.length} as expected.`,
      ""
    ].join("\n")
  )
  return bad === 0 ? 0 : 1
}
