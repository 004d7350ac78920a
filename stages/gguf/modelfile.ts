/**
 * An Ollama Modelfile for a Qwen3 Instruct GGUF: `ollama create NAME -f model-Q4_K_M.Modelfile`.
 *
 * The TEMPLATE is Ollama's Go-template form of the same chat format the GGUF's
 * `tokenizer.chat_template` holds (ChatML turns; tools listed in the system turn inside
 * <tools></tools>; calls as <tool_call>{"name": …, "arguments": …}</tool_call>; tool results as a
 * user turn in <tool_response>), so a model fine-tuned on our rendered conversations sees the
 * same text under Ollama. Stop tokens: <|im_end|> and <|im_start|>. Sampling: the values Qwen
 * recommends for the 2507 Instruct models (temperature 0.7, top_p 0.8, top_k 20).
 */
const TEMPLATE = `{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ $content := .Content }}{{ if .Content }}{{ .Content }}
{{- end }}
{{- range $j, $call := .ToolCalls }}{{ if or $j $content }}
{{ end }}<tool_call>
{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}`

export const modelfile = (gguf: string, system?: string): string =>
  [
    `FROM ./${gguf}`,
    `TEMPLATE """${TEMPLATE}"""`,
    ...(system ? [`SYSTEM """${system}"""`] : []),
    `PARAMETER stop "<|im_end|>"`,
    `PARAMETER stop "<|im_start|>"`,
    `PARAMETER temperature 0.7`,
    `PARAMETER top_p 0.8`,
    `PARAMETER top_k 20`,
    ""
  ].join("\n")
