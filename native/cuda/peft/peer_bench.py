#!/usr/bin/env python3
"""
The peer of the CUDA backend's performance goal, measured on the GPU machine (gpu-check.sh):
Hugging Face transformers + peft LoRA (r=16 on all seven projections, fp16 base, gradient
checkpointing, AdamW on the LoRA parameters) on a Qwen3-4B-shaped model with random weights, at
batch 2 x 2048 tokens: tokens/s and peak memory. Beside it, the GPU's measured fp16 matmul rate
(the denominator of model FLOP utilisation) and the step's model FLOPs.

Model FLOPs per token of a LoRA step with a frozen base: forward 2 P, backward 2 P (input
gradients only: no weight gradients of the base), recompute of the forward under checkpointing
2 P; plus attention (causal) 4 x 3 x T x H x D / 2 per layer and token, forward, recompute and
2 x backward. P = the base's matmul parameters (projections and head).

usage: peer_bench.py [steps]
"""
import sys
import time

try:
    import torch
    import transformers
    import peft
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)

if not torch.cuda.is_available():
    print("skipped: no CUDA device")
    sys.exit(77)

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 4
B, T = 2, 2048
dev = torch.device("cuda")

# the GPU's fp16 matmul rate, with fp32 accumulation (the rate our WMMA kernels use)
n = 8192
a = torch.randn(n, n, device=dev, dtype=torch.float16)
b = torch.randn(n, n, device=dev, dtype=torch.float16)
for _ in range(3):
    a @ b
torch.cuda.synchronize()
t0 = time.time()
reps = 20
for _ in range(reps):
    a @ b
torch.cuda.synchronize()
matmul_tflops = 2 * n**3 * reps / (time.time() - t0) / 1e12
del a, b

cfg = transformers.AutoConfig.for_model(
    "qwen3", hidden_size=2560, intermediate_size=9728, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
    num_hidden_layers=36, vocab_size=151936, tie_word_embeddings=True, rope_theta=5e6, rms_norm_eps=1e-6,
    max_position_embeddings=40960, torch_dtype="float16")
torch.manual_seed(0)
with torch.device(dev):
    model = transformers.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float16, attn_implementation="sdpa")
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()
model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
for p in model.parameters():
    if p.requires_grad:
        p.data = p.data.float()  # fp32 LoRA master weights, as in mixed-precision training
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
scaler = torch.amp.GradScaler("cuda")
ids = torch.randint(0, cfg.vocab_size, (B, T), device=dev)

def step():
    with torch.autocast("cuda", dtype=torch.float16):
        loss = model(input_ids=ids, labels=ids).loss
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)

step()  # warm-up
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
t0 = time.time()
for _ in range(steps):
    step()
torch.cuda.synchronize()
dt = (time.time() - t0) / steps
tokens = B * T / dt
P = sum(m.weight.numel() for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lora" not in name)
P += cfg.vocab_size * cfg.hidden_size  # the tied head
attn = 36 * 4 * T * 32 * 128 / 2  # per token, one pass
flops_token = 6 * P + 4 * attn
mfu = tokens * flops_token / (matmul_tflops * 1e12)
print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, {torch.cuda.get_device_name()}\n")
print("| measure | value |\n|---|---:|")
print(f"| fp16 matmul rate (8192^3, fp32 accumulate) | {matmul_tflops:.1f} TFLOP/s |")
print(f"| peer step (B={B} x T={T}, checkpointing) | {dt:.3f} s |")
print(f"| peer tokens/s | {tokens:.0f} |")
print(f"| peer peak memory | {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB |")
print(f"| model FLOPs per token | {flops_token / 1e9:.2f} GFLOP |")
print(f"| peer model FLOP utilisation | {100 * mfu:.1f} % |")
