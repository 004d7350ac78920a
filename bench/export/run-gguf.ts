/** One GGUF file of DIR/merged (for /usr/bin/time). usage: run-gguf.ts DIR TYPE */
import * as path from "node:path"
import type { FileType } from "../../stages/gguf/mixture.ts"
import { writeQwen3Gguf } from "../../stages/gguf/qwen3.ts"

const dir = process.argv[2]!
const type = process.argv[3] as FileType
writeQwen3Gguf(path.join(dir, "merged"), type, path.join(dir, `model-${type}.gguf`), "bench")
