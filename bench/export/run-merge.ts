/** One merge of DIR/model + DIR/adapter into DIR/merged (for /usr/bin/time). usage: run-merge.ts DIR */
import * as fs from "node:fs"
import * as path from "node:path"
import { mergeModel } from "../../stages/merge.ts"

const dir = process.argv[2]!
const out = path.join(dir, "merged")
fs.rmSync(out, { recursive: true, force: true })
fs.mkdirSync(out)
for (const _ of mergeModel(path.join(dir, "model"), path.join(dir, "adapter"), out, { dtype: "fp16", maxShardBytes: 5e9 })) void _
