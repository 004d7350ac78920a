/**
 * The model card published as README.md: the Hub's YAML front matter (base
 * model, dataset, licence, tags), what each file is and how to load it, the
 * training data and its CDLA-Sharing-1.0 licence, the params that made it,
 * and the eval table (fine-tuned beside the base model when eval measured it).
 */
import { Units } from "../../engine/index.ts"
import type { LocalFile } from "./layout.ts"

export interface CardInput {
  /** what the card calls the model: the Hub repo, else the target */
  readonly title: string
  /** `owner/name` when the target is a Hub repo (for the loading snippets) */
  readonly repo: string | undefined
  readonly dataset: { readonly source: string }
  readonly model: { readonly source: string; readonly layers: number }
  readonly lora: Readonly<Record<string, unknown>>
  readonly train: Readonly<Record<string, unknown>>
  readonly metrics: Readonly<Record<string, number>>
  readonly files: ReadonlyArray<Pick<LocalFile, "path" | "size">>
}

/** Licences of the base models we know; the card says "other" for the rest. */
const BASE_LICENCES: Readonly<Record<string, string>> = { "Qwen/Qwen3-4B-Instruct-2507": "apache-2.0" }

const hubId = (source: string, kind: "model" | "dataset"): string | undefined => {
  const m = (kind === "dataset" ? /^hf:\/\/datasets\/([^/@]+\/[^/@]+)/ : /^hf:\/\/([^/@]+\/[^/@]+)/).exec(source)
  return m?.[1]
}

const yamlString = (s: string) => JSON.stringify(s)

/** A file's name from a path or URL, without a query or fragment (a presigned URL's signature stays out of the card). */
const lastSegment = (source: string): string => source.replace(/[?#].*$/, "").split(/[\\/]/).filter(Boolean).at(-1) ?? source

const cell = (v: unknown): string => (Array.isArray(v) ? v.join(", ") : typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(4))) : String(v)).replace(/\|/g, "\\|")

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(4))

const what = (p: string): string => {
  if (p === "README.md") return "this model card"
  if (p.startsWith("adapter/")) return "LoRA adapter (PEFT)"
  if (p.startsWith("merged/")) return p.endsWith(".safetensors") ? "merged 16-bit weights" : "merged model (Hugging Face layout)"
  if (p.endsWith(".gguf")) return `GGUF, ${/-([A-Z0-9_]+)\.gguf$/.exec(p)?.[1] ?? "?"} (llama.cpp)`
  if (p.endsWith(".Modelfile")) return "Ollama Modelfile"
  if (p === "eval/metrics.json") return "eval metrics"
  if (p === "eval/report.md") return "eval report, per intent"
  return ""
}

export const modelCard = (c: CardInput): string => {
  const base = hubId(c.model.source, "model")
  const dataset = hubId(c.dataset.source, "dataset")
  const baseText = base ?? (c.model.source === "tiny" ? `a tiny random Qwen3 (${c.model.layers} layers, the pipeline's offline demo)` : `a local model (\`${lastSegment(c.model.source)}\`)`)
  const front = [
    "---",
    `license: ${base !== undefined ? BASE_LICENCES[base] ?? "other" : "other"}`,
    ...(base !== undefined ? [`base_model: ${yamlString(base)}`] : []),
    ...(dataset !== undefined ? ["datasets:", `  - ${yamlString(dataset)}`] : []),
    "library_name: peft",
    "pipeline_tag: text-generation",
    "tags:",
    ...["qlora", "lora", "tool-calling", "customer-support", "gguf", "finetune-pipeline"].map((t) => `  - ${t}`),
    "---"
  ]
  const ggufs = c.files.filter((f) => f.path.endsWith(".gguf")).map((f) => f.path)
  const modelfiles = c.files.filter((f) => f.path.endsWith(".Modelfile")).map((f) => f.path)
  const hasMerged = c.files.some((f) => f.path.startsWith("merged/"))
  const hasAdapter = c.files.some((f) => f.path.startsWith("adapter/"))
  const repoArg = c.repo !== undefined ? yamlString(c.repo) : '"<this directory>"'
  const metricNames = Object.keys(c.metrics).filter((k) => !/^base[A-Z]/.test(k))
  const hasBase = metricNames.some((k) => c.metrics[`base${k[0]!.toUpperCase()}${k.slice(1)}`] !== undefined)
  const lines = [
    ...front,
    "",
    `# ${c.title}`,
    "",
    `A customer-support assistant that calls tools, fine-tuned with QLoRA (a 4-bit NF4 frozen base and LoRA adapters) from ${base !== undefined ? `[${base}](https://huggingface.co/${base})` : baseText} by finetune-pipeline.`,
    "",
    "## Files",
    "",
    "| path | size | what |",
    "|---|---:|---|",
    ...c.files.map((f) => `| \`${f.path}\` | ${f.path === "README.md" ? "" : Units.formatBytes(f.size)} | ${what(f.path)} |`),
    "",
    "## Use",
    "",
    ...(hasMerged || (hasAdapter && base !== undefined)
      ? [
          "```python",
          "from transformers import AutoModelForCausalLM, AutoTokenizer",
          ...(hasMerged
            ? [
                `model = AutoModelForCausalLM.from_pretrained(${repoArg}, subfolder="merged")`,
                `tokenizer = AutoTokenizer.from_pretrained(${repoArg}, subfolder="merged")`
              ]
            : []),
          ...(hasAdapter && base !== undefined
            ? [
                ...(hasMerged ? ["# or the adapter on its base:"] : []),
                "from peft import PeftModel",
                `model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(${yamlString(base)}), ${repoArg}, subfolder="adapter")`
              ]
            : []),
          "```",
          ""
        ]
      : []),
    ...(ggufs.length > 0
      ? [
          "```sh",
          `llama-cli -m ${ggufs[0]} -cnv`,
          ...(modelfiles.length > 0 ? [`ollama create support-bot -f ${modelfiles[0]}`] : []),
          "```",
          ""
        ]
      : []),
    "## Training data",
    "",
    `Conversations with tool calls built from ${dataset !== undefined ? `[${dataset}](https://huggingface.co/datasets/${dataset})` : `the Bitext customer-support dataset (\`${lastSegment(c.dataset.source)}\`)`}: placeholders replaced by consistent entities, tool calls and results written from the catalogue, answers that state what the tool returned. The dataset is licensed under [CDLA-Sharing-1.0](https://cdla.dev/sharing-1-0/); data derived from it is shared under the same terms.`,
    "",
    "## Training",
    "",
    "| param | value |",
    "|---|---|",
    ...Object.entries(c.lora).map(([k, v]) => `| lora.${k} | ${cell(v)} |`),
    ...Object.entries(c.train).map(([k, v]) => `| train.${k} | ${cell(v)} |`),
    "",
    "## Evaluation",
    "",
    ...(metricNames.length === 0
      ? ["No metrics were recorded."]
      : [
          hasBase ? "| metric | fine-tuned | base model |" : "| metric | value |",
          hasBase ? "|---|---:|---:|" : "|---|---:|",
          ...metricNames.map((k) => {
            const b = c.metrics[`base${k[0]!.toUpperCase()}${k.slice(1)}`]
            return hasBase ? `| ${k} | ${fmt(c.metrics[k]!)} | ${b === undefined ? "" : fmt(b)} |` : `| ${k} | ${fmt(c.metrics[k]!)} |`
          }),
          "",
          "Per intent, with examples: `eval/report.md`."
        ]),
    ""
  ]
  return lines.join("\n")
}
