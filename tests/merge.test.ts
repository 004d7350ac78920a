/**
 * merge: the merged model computes what base + adapter computes (logits within fp16 storage
 * tolerance), in a complete Hugging Face directory, sharded when asked, tensor by tensor.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { qwen3ForwardBackward } from "../native/index.ts"
import { loraSlots, PROJECTIONS, type LoraTensors } from "../native/qwen3.ts"
import { writeTiny } from "../stages/download/tiny.ts"
import { loadAdapter, loadQwen3, locateTensors, readConfig, writeAdapter } from "../stages/lib/checkpoint.ts"
import * as Safetensors from "../stages/lib/safetensors.ts"
import { Rng } from "../stages/lib/rng.ts"
import { mergeModel } from "../stages/merge.ts"
import { mergedReader } from "../stages/gguf/merged.ts"
import { writeGguf } from "../stages/gguf/format.ts"
import { planQwen3Gguf } from "../stages/gguf/qwen3.ts"

const sameBits = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0

const drain = <T, R>(g: Generator<T, R>): { steps: Array<T>; result: R } => {
  const steps: Array<T> = []
  for (;;) {
    const r = g.next()
    if (r.done) return { steps, result: r.value }
    steps.push(r.value)
  }
}

describe("merge", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "merge-"))
  const base = path.join(dir, "base")
  const adapter = path.join(dir, "adapter")
  beforeAll(() => {
    writeTiny(base, 2, 9)
    const c = readConfig(base)
    const rng = new Rng(4)
    const r = 8
    const proj = loraSlots(c, ["q_proj", "v_proj", "down_proj"], (_l, _j, s) => ({
      A: Float32Array.from({ length: r * s.in }, () => rng.normal() * 0.05),
      B: Float32Array.from({ length: s.out * r }, () => rng.normal() * 0.05),
      dA: new Float32Array(0),
      dB: new Float32Array(0)
    }))
    writeAdapter(adapter, c, { r, alpha: 16, dropout: 0, targets: ["q_proj", "v_proj", "down_proj"] }, { rank: r, scale: 2, proj }, base)
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  const run = (name: string, maxShardBytes: number, dtype: "fp16" | "bf16" = "fp16") => {
    const out = path.join(dir, name)
    fs.mkdirSync(out)
    return { out, ...drain(mergeModel(base, adapter, out, { dtype, maxShardBytes })) }
  }

  it("computes what base + adapter computes, within fp16 storage of the merged weights", () => {
    const { out, result } = run("one", 5_000_000_000)
    expect(result.merged).toBe(2 * 3)
    expect(result.scale).toBe(2)
    const b = loadQwen3(base)
    const m = loadQwen3(out)
    const lora = loadAdapter(adapter, b.config)
    const none: LoraTensors = { rank: 1, scale: 0, proj: PROJECTIONS.flatMap(() => [null, null]).slice(0, b.config.layers * 7) }
    const ids = Int32Array.from({ length: 48 }, (_, i) => (i * 7919) % 150000)
    const T = ids.length
    const want = new Float32Array(T * b.config.vocab)
    const got = new Float32Array(T * b.config.vocab)
    qwen3ForwardBackward(b.config, b.weights, lora, ids, new Uint8Array(T), 1, T, false, want)
    qwen3ForwardBackward(m.config, m.weights, none, ids, new Uint8Array(T), 1, T, false, got)
    let worst = 0
    let norm = 0
    let diff = 0
    for (let i = 0; i < want.length; i++) {
      worst = Math.max(worst, Math.abs(want[i]! - got[i]!))
      norm += want[i]! ** 2
      diff += (want[i]! - got[i]!) ** 2
    }
    expect(Math.sqrt(diff / norm)).toBeLessThan(2e-3)
    expect(worst).toBeLessThan(0.02)
    // and the adapter changed something: the merge is not a copy of the base
    const baseOnly = new Float32Array(T * b.config.vocab)
    qwen3ForwardBackward(b.config, b.weights, none, ids, new Uint8Array(T), 1, T, false, baseOnly)
    let moved = 0
    for (let i = 0; i < want.length; i++) moved = Math.max(moved, Math.abs(want[i]! - baseOnly[i]!))
    expect(moved).toBeGreaterThan(20 * worst)
  })

  it("keeps every tensor the adapter does not touch bit for bit (base and output bf16), and writes a complete model directory", () => {
    const { out } = run("bf16", 5_000_000_000, "bf16")
    const a = locateTensors(base)
    const m = locateTensors(out)
    expect([...m.keys()].sort()).toEqual([...a.keys()].sort())
    for (const name of ["model.embed_tokens.weight", "model.norm.weight", "model.layers.1.self_attn.k_proj.weight", "model.layers.0.mlp.up_proj.weight"])
      expect(sameBits(Safetensors.readTensor(m.get(name)!), Safetensors.readTensor(a.get(name)!)), name).toBe(true)
    for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]) expect(fs.existsSync(path.join(out, f)), f).toBe(true)
    expect(JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8")).torch_dtype).toBe("bfloat16")
    expect(JSON.parse(fs.readFileSync(path.join(dir, "one", "config.json"), "utf8")).torch_dtype).toBe("float16")
    expect(fs.readdirSync(out).filter((f) => f.includes(".tmp-"))).toEqual([])
  })

  it("shards like save_pretrained when the model is larger than maxShardBytes, with an index that loads", () => {
    const { out, steps } = run("sharded", 1_000_000)
    const files = fs.readdirSync(out).filter((f) => f.endsWith(".safetensors")).sort()
    expect(files.length).toBeGreaterThan(2)
    expect(files[0]).toMatch(new RegExp(`^model-00001-of-0000${files.length}\\.safetensors$`))
    const index = JSON.parse(fs.readFileSync(path.join(out, "model.safetensors.index.json"), "utf8")) as { metadata: { total_size: number }; weight_map: Record<string, string> }
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(files))
    const bytes = files.reduce((s, f) => s + fs.statSync(path.join(out, f)).size, 0)
    expect(index.metadata.total_size).toBeLessThan(bytes) // the data, without the headers
    expect(index.metadata.total_size).toBeGreaterThan(bytes - 100_000 * files.length)
    // every shard but one holding a single oversized tensor stays within the limit
    for (const f of files) {
      const size = fs.statSync(path.join(out, f)).size
      const n = Object.values(index.weight_map).filter((x) => x === f).length
      if (n > 1) expect(size, f).toBeLessThan(1_000_000 + 100_000)
    }
    expect(steps.map((s) => s.done)).toEqual(Array.from({ length: steps.length }, (_, i) => i + 1))
    // the sharded model equals the single-file one, tensor by tensor
    const one = locateTensors(path.join(dir, "one"))
    for (const [name, t] of locateTensors(out)) expect(sameBits(Safetensors.readTensor(t), Safetensors.readTensor(one.get(name)!)), name).toBe(true)
  })

  it("refuses an adapter that does not fit the base, naming the tensor, and leaves no temporary file", () => {
    const bad = path.join(dir, "bad-adapter")
    fs.mkdirSync(bad)
    fs.copyFileSync(path.join(adapter, "adapter_config.json"), path.join(bad, "adapter_config.json"))
    Safetensors.write(path.join(bad, "adapter_model.safetensors"), [
      { name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", dtype: "F32", shape: [8, 100], data: new Uint8Array(8 * 100 * 4) },
      { name: "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", dtype: "F32", shape: [256, 8], data: new Uint8Array(256 * 8 * 4) }
    ])
    const out = path.join(dir, "bad")
    fs.mkdirSync(out)
    expect(() => drain(mergeModel(base, bad, out, { dtype: "fp16", maxShardBytes: 5e9 }))).toThrow(/q_proj: A \[8,100\] and B \[256,8\] do not fit the base's \[256,256\]/)
    expect(fs.readdirSync(out)).toEqual([])
  })

  it("gguf.from: adapter writes the bytes of the GGUF made from the merged model, without the merged copy", () => {
    for (const dtype of ["fp16", "bf16"] as const) {
      const { out } = run(`for-gguf-${dtype}`, 5_000_000_000, dtype)
      for (const type of dtype === "fp16" ? (["Q4_K_M", "Q8_0", "F16"] as const) : (["Q5_K_M"] as const)) {
        const fromMerged = path.join(dir, `merged-${dtype}-${type}.gguf`)
        const fromAdapter = path.join(dir, `adapter-${dtype}-${type}.gguf`)
        const m = planQwen3Gguf(out, type, "t")
        writeGguf(fromMerged, m.metadata, m.tensors)
        const a = planQwen3Gguf(base, type, "t", mergedReader(base, adapter, dtype))
        expect(a.bytes).toBe(m.bytes)
        writeGguf(fromAdapter, a.metadata, a.tensors)
        expect(fs.readFileSync(fromAdapter).equals(fs.readFileSync(fromMerged)), `${dtype} ${type}`).toBe(true)
      }
    }
    // an adapter whose tensors land on no base weight is refused, naming it
    const other = path.join(dir, "bad-adapter")
    fs.cpSync(adapter, other, { recursive: true })
    const t = Safetensors.indexFiles([path.join(other, "adapter_model.safetensors")])
    const tensors = [...t.entries()].map(([name, loc]) => ({ name: name.replace("layers.0.", "layers.7."), dtype: "F32" as const, shape: loc.info.shape, data: ((f: Float32Array) => new Uint8Array(f.buffer, f.byteOffset, f.byteLength))(Safetensors.readTensor(loc)) }))
    Safetensors.write(path.join(other, "adapter_model.safetensors"), tensors)
    expect(() => mergedReader(base, other, "fp16")).toThrow(/adapter tensors match no base weight \(base_model\.model\.model\.layers\.7\./)
  })
})