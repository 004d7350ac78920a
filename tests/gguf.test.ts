/**
 * GGUF export against llama.cpp itself (node-llama-cpp 3.21.1's prebuilt CPU libraries):
 * - our quantizers give ggml_quantize_chunk's bytes, and our dequantizers its values;
 * - our Q8_0, Q4_K_M and Q5_K_M files equal llama.cpp's quantization of our F16 file
 *   (llama_model_quantize, what `llama-quantize` runs): the same type for every tensor, the same
 *   bytes, the same metadata;
 * - llama.cpp loads every file, tokenizes like our tokenizer, and its next-token log-probabilities
 *   agree with our own forward pass on the same dequantized weights;
 * - @huggingface/gguf reads our metadata back as written.
 */
import { gguf as readGguf } from "@huggingface/gguf"
import { getLlama, LlamaLogLevel } from "node-llama-cpp"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { addon, cuda as nativeCuda, ggufDequantize, ggufQuantize, GGUF_BLOCKS, qwen3ForwardBackward } from "../native/index.ts"
import type { Qwen3Weights, LoraTensors } from "../native/qwen3.ts"
import { writeTiny } from "../stages/download/tiny.ts"
import { GgmlType, layout, openGguf, str, u32 } from "../stages/gguf/format.ts"
import { chooseTypes, LLAMA_FTYPE, useMoreBits } from "../stages/gguf/mixture.ts"
import { modelfile } from "../stages/gguf/modelfile.ts"
import { factsFromConfig, factsOf, parameterCount, planQwen3Gguf, plannedBytes, writeQwen3Gguf } from "../stages/gguf/qwen3.ts"
import { readConfig } from "../stages/lib/checkpoint.ts"
import { chatTemplateOf } from "../stages/lib/qwen3.ts"
import * as Safetensors from "../stages/lib/safetensors.ts"
import { Rng } from "../stages/lib/rng.ts"
import { loadEncoder } from "../stages/tokenize.ts"
import { ggmlDequantize, ggmlQuantize, llamaQuantize } from "./ggml.ts"
import { cli, makeDemoWorkspace, REPO } from "./helpers.ts"

const bytesOf = (type: number, n: number) => (n / GGUF_BLOCKS[type]![0]) * GGUF_BLOCKS[type]![1]
const TYPES: ReadonlyArray<readonly [string, number]> = [["F16", 1], ["Q8_0", 8], ["Q4_K", 12], ["Q5_K", 13], ["Q6_K", 14]]

/** rows of 256 values that stress the fitting: zeros, constants, ties, outliers, signs, tiny and huge scales */
const adversarial = (): Float32Array => {
  const rng = new Rng(7)
  const kinds: Array<(i: number) => number> = [
    () => 0,
    () => 0.25,
    () => -3,
    (i) => (i % 3) - 1,
    (i) => (i % 17) * 0.5 - 4, // exact halves: rounding ties
    () => rng.normal() * 0.02,
    () => Math.abs(rng.normal()),
    () => -Math.abs(rng.normal()) * 5,
    () => (rng.next() < 0.03 ? rng.normal() * 60 : rng.normal() * 0.05), // outliers
    () => rng.normal() * 1e-6,
    () => rng.normal() * 1e-12, // below ggml's group epsilon
    () => rng.normal() * 3000,
    (i) => (i < 128 ? 0 : rng.normal()), // half zero
    (i) => (i % 32 === 0 ? 1 : 0), // sparse
    () => rng.next() * 2 - 1,
    (i) => Math.sin(i * 0.37) * (1 + (i % 7))
  ]
  const x = new Float32Array(kinds.length * 4 * 256)
  for (let r = 0; r < kinds.length * 4; r++) for (let i = 0; i < 256; i++) x[r * 256 + i] = kinds[r % kinds.length]!(i)
  // fp16-representable values, as a merged fp16 checkpoint holds
  return Safetensors.fromF16(Safetensors.toF16(x))
}

describe("the quantizers", () => {
  const rng = new Rng(11)
  const inputs: ReadonlyArray<readonly [string, Float32Array, number]> = [
    ["adversarial rows", adversarial(), 256],
    ["fp16 weights in Qwen3-4B's row widths (2560, 9728)", Safetensors.fromF16(Safetensors.toF16(Float32Array.from({ length: 2560 * 3 + 9728 * 2 }, () => rng.normal() * 0.03))), 0]
  ]
  for (const [name, type] of TYPES)
    it(`${name}: the bytes of ggml_quantize_chunk, and its values back`, () => {
      for (const [what, x, perRow] of inputs) {
        const chunks = perRow ? [[x, perRow] as const] : [[x.subarray(0, 2560 * 3), 2560] as const, [x.subarray(2560 * 3), 9728] as const]
        for (const [xs, row] of chunks) {
          const ours = ggufQuantize(type, xs)
          const theirs = ggmlQuantize(type, xs, row, bytesOf(type, xs.length))
          expect(Buffer.compare(Buffer.from(ours), Buffer.from(theirs)), `${name} on ${what}`).toBe(0)
          expect(ggufDequantize(type, ours, xs.length), `${name} on ${what}`).toEqual(ggmlDequantize(type, theirs, xs.length))
        }
      }
    })

  it("gives the same bytes on one thread and on every thread of the pool", () => {
    const x = inputs[1]![1]
    const pool = addon().qwen3SetThreads(0)
    for (const [, type] of TYPES) {
      addon().qwen3SetThreads(1)
      const one = ggufQuantize(type, x)
      addon().qwen3SetThreads(Math.max(2, pool))
      expect(Buffer.compare(Buffer.from(one), Buffer.from(ggufQuantize(type, x)))).toBe(0)
    }
    addon().qwen3SetThreads(pool)
  })

  it("F16: rounds to nearest even, keeps subnormals, overflows to infinity, as ggml does", () => {
    const edge = Float32Array.from([0, -0, 1, -1, 65504, 65519.99, 65520, 1e9, -1e9, 6.1e-5, 6.0e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1e-9, 1 + 2 ** -11, 1 + 3 * 2 ** -11, Infinity, -Infinity, 0.1, 0.2, 0.3])
    expect(Buffer.from(ggufQuantize(1, edge))).toEqual(Buffer.from(ggmlQuantize(1, edge, edge.length, edge.length * 2)))
  })

  it("refuses a length that is not whole blocks and a type it does not write", () => {
    expect(() => ggufQuantize(12, new Float32Array(100))).toThrow(/whole blocks/)
    expect(() => ggufQuantize(2, new Float32Array(64))).toThrow(/not one the core writes/)
  })
})

describe("the Q4_K_M and Q5_K_M mixtures", () => {
  it("give Q6_K to attn_v and ffn_down in the layers llama.cpp picks, and to the tied embedding", () => {
    // 36 layers (Qwen3-4B): the first 36/8 = 4, from 7·36/8 = 31 (integer division) on, and every third between
    const picked = Array.from({ length: 36 }, (_, i) => (useMoreBits(i, 36) ? 1 : 0)).join("")
    expect(picked).toBe("1111" + "001".repeat(9) + "11111")
    const tensors = [{ name: "token_embd.weight", dims: [2560, 151936] }, ...Array.from({ length: 36 }, (_, i) => [{ name: `blk.${i}.attn_v.weight`, dims: [2560, 1024] }, { name: `blk.${i}.ffn_down.weight`, dims: [9728, 2560] }, { name: `blk.${i}.attn_norm.weight`, dims: [2560] }]).flat()]
    const types = chooseTypes("Q4_K_M", tensors, 36)
    expect(types[0]).toBe(GgmlType.Q6_K)
    expect(types.filter((t) => t === GgmlType.Q6_K).length).toBe(1 + 2 * 18)
    expect(types.filter((t) => t === GgmlType.F32).length).toBe(36)
    expect(chooseTypes("Q8_0", tensors, 36)[0]).toBe(GgmlType.Q8_0)
    expect(() => chooseTypes("Q4_K_M", [{ name: "blk.0.attn_q.weight", dims: [100, 256] }], 1)).toThrow(/blk.0.attn_q.weight: rows of 100 values/)
  })
})

describe("the planned sizes of Qwen3-4B-Instruct-2507 (the profile's config facts)", () => {
  it("count its 4,022,468,096 parameters and give each file within 1 % of the published GGUF sizes", () => {
    const facts = factsFromConfig({
      hidden_size: 2560, intermediate_size: 9728, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128, num_hidden_layers: 36,
      vocab_size: 151936, tie_word_embeddings: true, max_position_embeddings: 262144, rope_theta: 5000000, rms_norm_eps: 1e-6
    })
    expect(parameterCount(facts)).toBe(4_022_468_096)
    // the sizes of the GGUF files published for this model (DESIGN.md §4): 2.49, 2.88, 4.27 GB
    for (const [type, gb] of [["Q4_K_M", 2.49], ["Q5_K_M", 2.88], ["Q8_0", 4.27]] as const) expect(Math.abs(plannedBytes(facts, type, "x") / 1e9 - gb) / gb, type).toBeLessThan(0.01)
  })

  it("the reference profile's plan: as shipped it needs about 26 GB and fails its 20 GB budget; from the adapter, without the merged copy, it fits", () => {
    const ws = makeDemoWorkspace()
    const profile = path.join(REPO, "profiles", "qwen3-4b-t4.yaml")
    const shipped = cli(ws, ["run", "--dry-run", "--config", profile])
    expect(shipped.code, shipped.stderr).toBe(3)
    expect(shipped.stdout).toMatch(/^ {2}merge {4}/m)
    expect(shipped.stdout).toMatch(/^ {2}gguf .*\[~9\.7 GB/m) // 2.497 + 2.890 + 4.280 GB, and the Modelfiles
    const need = Number(/disk: writes up to ([\d.]+) GB/.exec(shipped.stdout)![1])
    expect(need).toBeGreaterThan(25)
    expect(need).toBeLessThan(27)
    // a build without the CUDA backend says so before anything runs, and shows the plan all the same
    const cuda = nativeCuda()
    if (typeof cuda === "string") expect(shipped.stdout).toContain(`pre-flight: stage train: train.device cuda: ${cuda}`)
    else expect(shipped.stdout).not.toContain("pre-flight:")
    expect(shipped.stderr).toMatch(/^error: the plan does not fit .*Ways to fit: /)

    const fits = cli(ws, ["run", "--dry-run", "--config", profile, "--set", "gguf.from=adapter", "--set", "upload.include=[adapter, gguf, eval]"])
    expect(fits.stdout).not.toMatch(/^ {2}merge /m) // on demand, and nothing reads it now
    expect(fits.stdout).toMatch(/^ {2}gguf .*\[~9\.7 GB/m)
    const fitting = Number(/disk: writes up to ([\d.]+) GB.*: ok$/m.exec(fits.stdout)![1])
    expect(fitting).toBeLessThan(20)
    // what is left is this build's: with the CUDA backend (nvcc was there) the plan stands (whether a GPU
    // is there is the worker's to say: the stage may run elsewhere, on Slurm); without it, one line says so
    if (typeof cuda === "string") {
      expect(fits.code).toBe(2)
      expect(fits.stderr.trim()).toBe(`error: stage train: train.device cuda: ${cuda}`)
    } else expect(fits.code, fits.stderr).toBe(0)
  })
})

describe("GGUF files of a tiny Qwen3", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gguf-"))
  const model = path.join(dir, "model")
  const files: Record<string, string> = {}
  const FILES = ["F16", "Q8_0", "Q4_K_M", "Q5_K_M"] as const

  beforeAll(() => {
    // 17 layers: every branch of the layer rule (first eighth, last eighth, every third between)
    writeTiny(model, 17, 3)
    // norms other than 1, so a norm written under the wrong name shows in the log-probabilities
    const st = path.join(model, "model.safetensors")
    const rng = new Rng(5)
    const t = Safetensors.indexFiles([st])
    const tensors = [...t.entries()].map(([name, loc]) => {
      const v = Safetensors.readTensor(loc)
      if (loc.info.shape.length === 1) for (let i = 0; i < v.length; i++) v[i] = 0.5 + rng.next()
      return { name, dtype: "F16" as const, shape: loc.info.shape, data: new Uint8Array(Safetensors.toF16(v).buffer) }
    })
    Safetensors.write(st, tensors, { format: "pt" })
    for (const f of FILES) files[f] = writeQwen3Gguf(model, f, path.join(dir, `model-${f}.gguf`), "tiny").file
  }, 240_000)
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  it("are exactly the size planned before writing, and hold the metadata we wrote", async () => {
    const c = readConfig(model)
    for (const f of FILES) {
      expect(fs.statSync(files[f]!).size).toBe(planQwen3Gguf(model, f, "tiny").bytes)
      // and from the config facts alone, before the model exists (the planner's figure)
      expect(plannedBytes(factsOf(model), f, "tiny"), f).toBe(fs.statSync(files[f]!).size)
      const g = await readGguf(files[f]!, { allowLocalFile: true })
      const m = g.metadata as unknown as Record<string, unknown>
      expect(m["general.architecture"]).toBe("qwen3")
      expect(Number(m["general.file_type"])).toBe(LLAMA_FTYPE[f])
      expect(Number(m["qwen3.block_count"])).toBe(17)
      expect(Number(m["qwen3.embedding_length"])).toBe(c.hidden)
      expect(Number(m["qwen3.attention.key_length"])).toBe(c.headDim)
      expect(Number(m["qwen3.attention.head_count_kv"])).toBe(c.kvHeads)
      expect(m["tokenizer.ggml.pre"]).toBe("qwen2")
      expect(m["tokenizer.chat_template"]).toBe(chatTemplateOf(model))
      const tokens = m["tokenizer.ggml.tokens"] as Array<string>
      const types = m["tokenizer.ggml.token_type"] as Array<number>
      expect(tokens.length).toBe(c.vocab)
      expect([tokens[151645], types[151645], tokens[151657], types[151657], tokens[151700], types[151700]]).toEqual(["<|im_end|>", 3, "<tool_call>", 4, "[PAD151700]", 5])
      expect(Number(m["tokenizer.ggml.eos_token_id"])).toBe(151645)
      expect(g.tensorInfos.length).toBe(2 + 17 * 11)
    }
  })

  for (const f of ["Q8_0", "Q4_K_M", "Q5_K_M"] as const)
    it(`${f}: equals llama.cpp's own quantization of our F16 file, tensor by tensor`, async () => {
      const ref = path.join(dir, `ref-${f}.gguf`)
      expect(llamaQuantize(files["F16"]!, ref, LLAMA_FTYPE[f])).toBe(0)
      const [a, b] = await Promise.all([readGguf(ref, { allowLocalFile: true }), readGguf(files[f]!, { allowLocalFile: true })])
      const fa = fs.readFileSync(ref)
      const fb = fs.readFileSync(files[f]!)
      const theirs = new Map(a.tensorInfos.map((t) => [t.name, t]))
      expect(theirs.size).toBe(b.tensorInfos.length)
      for (const t of b.tensorInfos) {
        const r = theirs.get(t.name)!
        expect(t.dtype, t.name).toBe(r.dtype)
        expect(t.shape.map(Number), t.name).toEqual(r.shape.map(Number))
        const n = t.shape.reduce((x, y) => x * Number(y), 1)
        const size = t.dtype === 0 ? 4 * n : bytesOf(t.dtype, n)
        const mine = fb.subarray(Number(b.tensorDataOffset) + Number(t.offset), Number(b.tensorDataOffset) + Number(t.offset) + size)
        const ggml = fa.subarray(Number(a.tensorDataOffset) + Number(r.offset), Number(a.tensorDataOffset) + Number(r.offset) + size)
        expect(Buffer.compare(mine, ggml), t.name).toBe(0)
      }
      const ma = a.metadata as unknown as Record<string, unknown>
      const mb = b.metadata as unknown as Record<string, unknown>
      expect(Object.keys(mb).sort()).toEqual(Object.keys(ma).sort())
      for (const k of Object.keys(ma)) expect(String(mb[k]), k).toBe(String(ma[k]))
    }, 120_000)

  it("load in llama.cpp, which tokenizes like our tokenizer and agrees with our forward pass", async () => {
    const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
    const { encoder } = await loadEncoder(model)
    const texts = [
      "<|im_start|>user\nI want to cancel order #12345, it's a gift 🎁 for my niña.<|im_end|>\n<|im_start|>assistant\n",
      "<tool_call>\n{\"name\": \"track_order\", \"arguments\": {\"order_number\": \"ORD-2026-00417\"}}\n</tool_call>",
      "  leading spaces, tabs\tand\r\nnewlines; numbers 3.14159 and 1,000,000; CJK 你好 and emoji 👍🏽"
    ]
    const ours = await encoder.encodeAll(texts)
    const c = readConfig(model)
    const prompt = Array.from(ours[0]!.ids)
    // our forward pass on the weights each file holds, dequantized
    const TOLERANCE: Record<string, number> = { F16: 0.05, Q8_0: 0.05 }
    for (const f of FILES) {
      const m = await llama.loadModel({ modelPath: files[f]! })
      try {
        texts.forEach((t, i) => expect(Array.from(m.tokenize(t, true)), `${f}: ${t}`).toEqual(Array.from(ours[i]!.ids)))
        const weights = await weightsOf(files[f]!, c.layers)
        const T = prompt.length
        const logits = new Float32Array(T * c.vocab)
        const lora: LoraTensors = { rank: 1, scale: 0, proj: Array.from({ length: c.layers * 7 }, () => null) }
        qwen3ForwardBackward(c, weights, lora, Int32Array.from(prompt), new Uint8Array(T), 1, T, false, logits)
        const ctx = await m.createContext({ contextSize: 128 })
        const seq = ctx.getSequence()
        let worst = 0
        let compared = 0
        // each position costs llama.cpp a fresh evaluation of the prefix (about 2 s here): every 4th
        // position for the files held to the tolerance, every 8th for the K-quant mixtures
        const every = TOLERANCE[f] !== undefined ? 4 : 8
        for (let k = every; k <= T; k += every) {
          // llama.cpp yields nothing after an end-of-generation token (<|im_end|>): those positions are skipped
          if (prompt[k - 1] === 151645) continue
          await seq.clearHistory()
          let probs: Map<number, number> | undefined
          let token = -1
          for await (const r of seq.evaluateWithMetadata(prompt.slice(0, k) as unknown as Parameters<typeof seq.evaluateWithMetadata>[0], { probabilities: true })) {
            probs = r.probabilities
            token = r.token
            break
          }
          const row = logits.subarray((k - 1) * c.vocab, k * c.vocab)
          const lse = logSumExp(row)
          const order = topTwo(row)
          const target = k < T ? prompt[k]! : order[0]
          worst = Math.max(worst, Math.abs(row[target]! - lse - Math.log(probs!.get(target)!)))
          // the same greedy choice wherever ours is not a near tie
          if (row[order[0]]! - row[order[1]]! > 0.1) expect(token, `${f} at ${k}`).toBe(order[0])
          compared++
        }
        expect(compared).toBeGreaterThanOrEqual(TOLERANCE[f] !== undefined ? 7 : 3)
        if (TOLERANCE[f] !== undefined) expect(worst, f).toBeLessThanOrEqual(TOLERANCE[f]!)
        else expect(worst, f).toBeLessThanOrEqual(0.25)
        await ctx.dispose()
      } finally {
        await m.dispose()
      }
    }
  }, 400_000)

  it("a failed write leaves no file and no temporary file", () => {
    const target = path.join(dir, "broken.gguf")
    const w = openGguf(target, [["general.architecture", str("qwen3")], ["general.alignment", u32(32)]], [{ name: "a.weight", dims: [32, 2], type: GgmlType.Q8_0 }])
    w.put(new Uint8Array(10)) // a piece of the tensor: fine
    expect(() => w.put(new Uint8Array(100))).toThrow(/110 bytes produced, 68 expected/)
    expect(fs.readdirSync(dir).filter((f) => f.startsWith("broken"))).toEqual([])
    const w2 = openGguf(target, [["general.architecture", str("qwen3")]], [{ name: "a.weight", dims: [32, 2], type: GgmlType.Q8_0 }])
    w2.put(new Uint8Array(40))
    expect(() => w2.finish()).toThrow(/0 of 1 tensors written/)
    expect(fs.readdirSync(dir).filter((f) => f.startsWith("broken"))).toEqual([])
    expect(() => layout([["k", u32(1)], ["k", u32(2)]], [])).toThrow(/twice/)
  })

  it("comes with an Ollama Modelfile naming the file, Qwen3's stop tokens and the tool-call format", () => {
    const m = modelfile("model-Q4_K_M.gguf")
    expect(m).toMatch(/^FROM \.\/model-Q4_K_M\.gguf\n/)
    expect(m).toContain('PARAMETER stop "<|im_end|>"')
    expect(m).toContain("<tool_call>\n{\"name\": \"{{ .Function.Name }}\", \"arguments\": {{ .Function.Arguments }}}\n</tool_call>")
    expect(m).toContain("<tool_response>\n{{ .Content }}\n</tool_response>")
  })
})

const logSumExp = (row: Float32Array): number => {
  let m = -Infinity
  for (const v of row) m = Math.max(m, v)
  let s = 0
  for (const v of row) s += Math.exp(v - m)
  return m + Math.log(s)
}

const topTwo = (row: Float32Array): [number, number] => {
  let a = 0
  let b = 1
  if (row[b]! > row[a]!) [a, b] = [b, a]
  for (let i = 2; i < row.length; i++) {
    if (row[i]! > row[a]!) [a, b] = [i, a]
    else if (row[i]! > row[b]!) b = i
  }
  return [a, b]
}

/** The weights a GGUF file holds, dequantized, in the layout of our forward pass. */
const weightsOf = async (file: string, layers: number): Promise<Qwen3Weights> => {
  const g = await readGguf(file, { allowLocalFile: true })
  const buf = fs.readFileSync(file)
  const get = (name: string): Float32Array => {
    const t = g.tensorInfos.find((x) => x.name === name)
    if (!t) throw new Error(`${file}: no tensor ${name}`)
    const n = t.shape.reduce((a, b) => a * Number(b), 1)
    const start = Number(g.tensorDataOffset) + Number(t.offset)
    if (t.dtype === 0) return new Float32Array(buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + start + 4 * n))
    return ggufDequantize(t.dtype, new Uint8Array(buf.buffer, buf.byteOffset + start, bytesOf(t.dtype, n)), n)
  }
  const P = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
  return {
    embed: get("token_embd.weight"),
    finalNorm: get("output_norm.weight"),
    layers: Array.from({ length: layers }, (_, i) => ({
      inputNorm: get(`blk.${i}.attn_norm.weight`),
      postNorm: get(`blk.${i}.ffn_norm.weight`),
      qNorm: get(`blk.${i}.attn_q_norm.weight`),
      kNorm: get(`blk.${i}.attn_k_norm.weight`),
      w: P.map((p) => get(`blk.${i}.${p}.weight`))
    }))
  }
}
