/**
 * The five data stages on a full-size dataset, and tokenize against a bare
 * native tokenizer.
 *
 * 1. Builds a 26,872-row CSV (the size of the full Bitext file) from the
 *    bundled sample: its rows repeated; each copy gets other placeholder
 *    values, since entities are drawn from (seed, line). Runs `pipeline run
 *    tokenize --json` on it in a temp workspace (tiny model) and reports each
 *    stage's measured seconds. Goal: all five in at most 20 s.
 * 2. Takes the rendered training conversations that run produced and times, in
 *    this process, the tokenize stage's work (pieces, one batch for distinct
 *    pieces, ids and masks assembled) against `@anush008/tokenizers`
 *    `encodeBatch` on the same texts (ids only). Goal: ours ≥ 0.8× its
 *    throughput.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const NODE = process.execPath
const BIN = fileURLToPath(new URL("../bin/pipeline.js", import.meta.url))
const PIPELINE = fileURLToPath(new URL("../pipeline.ts", import.meta.url))
const SAMPLE = fileURLToPath(new URL("../data/bitext-sample.csv", import.meta.url))
const ROWS = 26_872

const bigCsv = (file: string) => {
  const text = fs.readFileSync(SAMPLE, "utf8")
  const nl = text.indexOf("\n")
  const header = text.slice(0, nl + 1)
  // whole records: split on the newlines that start a new record (a flags field then a comma)
  const records = text.slice(nl + 1).split(/\n(?=[A-Z]*,)/).filter((r) => r.trim() !== "")
  const out: Array<string> = [header.trimEnd()]
  for (let i = 0; i < ROWS; i++) out.push(records[i % records.length]!.trimEnd())
  fs.writeFileSync(file, out.join("\n") + "\n")
}

export const dataTable = async (): Promise<string> => {
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), "bench-data-"))
  try {
    bigCsv(path.join(ws, "big.csv"))
    fs.writeFileSync(path.join(ws, "pipeline.ts"), `import def from ${JSON.stringify(PIPELINE)}\nexport default { ...def, root: import.meta.dirname }\n`)
    fs.writeFileSync(path.join(ws, "pipeline.yaml"), "dataset: { source: big.csv }\nmodel: { source: tiny }\ntokenize: { maxSeqLen: 2048 }\n")
    const r = spawnSync(NODE, [BIN, "run", "tokenize", "--json"], { cwd: ws, encoding: "utf8", env: { ...process.env, CI: "true" }, maxBuffer: 1 << 26 })
    if (r.status !== 0) return `data stages failed (exit ${r.status}): ${r.stderr.trim().split("\n").slice(-3).join(" ")}`
    const plan = JSON.parse(r.stdout) as { stages: Array<{ name: string; seconds: number | null }> }
    const rows = plan.stages.map((s) => [s.name, s.seconds ?? 0] as const)
    const dataStages = rows.filter(([n]) => n !== "download")
    const total = rows.reduce((a, [, s]) => a + s, 0)
    const lines = [
      `## The five data stages on ${ROWS.toLocaleString("en")} rows`,
      "",
      "`pipeline run tokenize` on the bundled sample repeated to the full dataset's size (tiny model, maxSeqLen 2048).",
      "",
      "| stage | seconds |",
      "|---|---:|",
      ...rows.map(([n, s]) => `| ${n} | ${s.toFixed(2)} |`),
      `| **total** | **${total.toFixed(2)}** |`,
      "",
      `Goal: at most 20 s. ${total <= 20 ? "Met" : "NOT met"} (${total.toFixed(1)} s; ${dataStages.map(([, s]) => s).reduce((a, b) => a + b, 0).toFixed(1)} s without download, which writes the tiny model).`,
      ""
    ]
    // tokenize against a bare encodeBatch on the same texts
    const texts = fs.readFileSync(path.join(ws, "out", "split", "train.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { text: string }).text)
    const { loadEncoder } = await import("../stages/tokenize.ts")
    const modelDir = path.join(ws, "out", "download", "model")
    const best = async (f: () => Promise<number>) => {
      let t = Infinity
      let n = 0
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now()
        n = await f()
        t = Math.min(t, performance.now() - t0)
      }
      return { ms: t, tokens: n }
    }
    const { Tokenizer } = (await import("@anush008/tokenizers")).default
    const bare = Tokenizer.fromFile(path.join(modelDir, "tokenizer.json"))
    const peer = await best(async () => (await bare.encodeBatch(texts, { addSpecialTokens: false })).reduce((a, e) => a + e.getIds().length, 0))
    const ours = await best(async () => {
      const { encoder } = await loadEncoder(modelDir) // a fresh encoder each time: no memo carried over
      return (await encoder.encodeAll(texts)).reduce((a, e) => a + e.ids.length, 0)
    })
    const rate = (x: { ms: number; tokens: number }) => x.tokens / (x.ms / 1000) / 1e6
    lines.push(
      `## Tokenize against a bare native encodeBatch (${texts.length.toLocaleString("en")} rendered conversations, ${ours.tokens.toLocaleString("en")} tokens)`,
      "",
      "Best of 3, in one process; ours includes loading the tokenizer and building ids and loss masks.",
      "",
      "| | ms | M tokens/s | ratio |",
      "|---|---:|---:|---:|",
      `| ours (pieces + memo + masks) | ${ours.ms.toFixed(0)} | ${rate(ours).toFixed(2)} | ${(rate(ours) / rate(peer)).toFixed(2)} |`,
      `| @anush008/tokenizers encodeBatch | ${peer.ms.toFixed(0)} | ${rate(peer).toFixed(2)} | 1.00 |`,
      "",
      `Same token count: ${ours.tokens === peer.tokens ? "yes" : `NO (${ours.tokens} vs ${peer.tokens})`}. Goal: ours ≥ 0.8×: ${rate(ours) / rate(peer) >= 0.8 ? "met" : "NOT met"}.`,
      ""
    )
    return lines.join("\n")
  } finally {
    fs.rmSync(ws, { recursive: true, force: true })
  }
}
