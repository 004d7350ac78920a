/**
 * The fine-tuning pipeline, declared like a Makefile: ten stages, each reading
 * the outputs of the ones before it. `pipeline run [stage]` brings a stage
 * (default: all) up to date; see README.md.
 */
import { download } from "./stages/download.ts"
import { entities } from "./stages/entities.ts"
import { toolcalls } from "./stages/toolcalls.ts"
import { split } from "./stages/split.ts"
import { tokenize } from "./stages/tokenize.ts"
import { train } from "./stages/train.ts"
import { evaluate } from "./stages/evaluate.ts"
import { merge } from "./stages/merge.ts"
import { gguf } from "./stages/gguf.ts"
import { upload } from "./stages/upload.ts"

export default {
  root: import.meta.dirname,
  stages: [download, entities, toolcalls, split, tokenize, train, evaluate, merge, gguf, upload]
}
