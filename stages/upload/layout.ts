/**
 * What a publish holds, the same on every target (a directory, a bucket, a
 * Hub repo):
 *
 *   README.md            the model card
 *   adapter/…            the PEFT adapter (adapter_config.json, adapter_model.safetensors)
 *   merged/…             the merged 16-bit model in the Hugging Face layout
 *   gguf/…               the GGUF files and their Ollama Modelfiles
 *   eval/metrics.json    the eval stage's metrics
 *   eval/report.md       its per-intent report
 *   .pipeline-publish.json   the manifest (stages/lib/publish.ts)
 */
import * as fs from "node:fs"
import * as path from "node:path"

export interface LocalFile {
  /** the path on the target, with `/` */
  readonly path: string
  readonly abs: string
  readonly size: number
  /** the engine's digest of the file (through its stat cache) */
  readonly digest: string
}

/** Where each input goes: a directory input becomes a folder, a file input the path given. */
export interface Placement {
  readonly rel: string
  readonly src: string
}

/** The placements of the inputs `upload.include` chose (the others are absent). */
export const placements = (inputs: Partial<Record<"adapter" | "merged" | "gguf" | "metrics" | "report", string>>, card: string): Array<Placement> =>
  [
    { rel: "README.md", src: card },
    { rel: "adapter", src: inputs.adapter },
    { rel: "merged", src: inputs.merged },
    { rel: "gguf", src: inputs.gguf },
    { rel: "eval/metrics.json", src: inputs.metrics },
    { rel: "eval/report.md", src: inputs.report }
  ].filter((p): p is Placement => p.src !== undefined && p.src !== "")

/** Every file the placements name, sorted by target path; symlinks are followed (store links). */
export const localFiles = (placed: ReadonlyArray<Placement>, digestFile: (abs: string) => string): Array<LocalFile> => {
  const out: Array<LocalFile> = []
  const add = (rel: string, abs: string) => {
    const st = fs.statSync(abs)
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(abs).sort()) add(`${rel}/${name}`, path.join(abs, name))
    } else out.push({ path: rel, abs, size: st.size, digest: digestFile(abs) })
  }
  for (const p of placed) add(p.rel, p.src)
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}
