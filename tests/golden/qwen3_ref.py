#!/usr/bin/python3
"""
An independent PyTorch implementation of a Qwen3 decoder with LoRA, the golden
reference for the native trainer (issue 4, in the way of llm.c's test_gpt2).

It reads a Hugging Face checkpoint directory (config.json + model.safetensors,
bf16/fp16/fp32), a PEFT adapter directory, and a batch of token ids with loss
masks; computes in fp32 the logits, the loss (mean cross-entropy over the
positions whose *next* token is trained on) and the gradients of the loss with
respect to every LoRA A and B; and writes them as raw little-endian fp32 files
plus a manifest. LoRA dropout is off (it is random); scaling is alpha / r.

Written from the architecture as documented (Qwen3: RMSNorm, per-head q/k
RMSNorm before RoPE, rotate-half RoPE, grouped-query attention, SwiGLU MLP,
tied embeddings), not from any other implementation. Uses only torch + numpy,
so it runs on Debian's python3-torch (1.13): call /usr/bin/python3.

usage: qwen3_ref.py MODEL_DIR ADAPTER_DIR BATCH.json OUT_DIR
  BATCH.json: {"ids": [[...], ...], "mask": [[0/1, ...], ...]}  (equal lengths)
       qwen3_ref.py bench MODEL_DIR SEQ_LEN STEPS
  times full training steps (forward, backward, AdamW on LoRA r=16 on all seven
  projections) on one sequence of SEQ_LEN random tokens: the benchmark's peer
"""
import json
import os
import struct
import sys

import numpy as np
import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        shape = info["shape"]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4").copy()
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            raise ValueError(f"{path}: {name}: dtype {dt} not supported")
        out[name] = torch.from_numpy(arr.reshape(shape))
    return out


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):
    # x: [B, H, T, D]; rotate-half convention: pairs (i, i + D/2)
    d = x.shape[-1]
    t = torch.arange(x.shape[2], dtype=torch.float64)
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = torch.outer(t, inv)  # [T, D/2]
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(torch.float32)
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(torch.float32)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    rot = torch.cat([-x2, x1], -1)
    return x * cos + rot * sin


def main(model_dir, adapter_dir, batch_file, out_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    W = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    acfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    A = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    scale = acfg["lora_alpha"] / acfg["r"]
    lora = {k: v.clone().requires_grad_(True) for k, v in A.items()}
    batch = json.load(open(batch_file))
    ids = torch.tensor(batch["ids"], dtype=torch.long)
    mask = torch.tensor(batch["mask"], dtype=torch.long)
    logits, loss = forward_loss(cfg, W, lora, scale, ids, mask)
    loss.backward()

    os.makedirs(out_dir, exist_ok=True)
    manifest = {"loss": loss.item(), "logits": {"file": "logits.f32", "shape": list(logits.shape)}, "grads": {}}
    logits.detach().numpy().astype("<f4").tofile(os.path.join(out_dir, "logits.f32"))
    for j, (name, t) in enumerate(sorted(lora.items())):
        f = f"grad{j}.f32"
        t.grad.numpy().astype("<f4").tofile(os.path.join(out_dir, f))
        manifest["grads"][name] = {"file": f, "shape": list(t.shape)}
    json.dump(manifest, open(os.path.join(out_dir, "manifest.json"), "w"))


def bench(model_dir, seq_len, steps):
    import time

    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    W = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    C, I = cfg["hidden_size"], cfg["intermediate_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or C // H
    io = {"q_proj": (C, H * D), "k_proj": (C, KV * D), "v_proj": (C, KV * D), "o_proj": (H * D, C), "gate_proj": (C, I), "up_proj": (C, I), "down_proj": (I, C)}
    r = 16
    lora = {}
    for i in range(cfg["num_hidden_layers"]):
        for name, (fin, fout) in io.items():
            mod = "mlp" if name in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            p = f"base_model.model.model.layers.{i}.{mod}.{name}"
            lora[p + ".lora_A.weight"] = (torch.rand(r, fin) * 2 - 1).div(fin ** 0.5).requires_grad_(True)
            lora[p + ".lora_B.weight"] = torch.zeros(fout, r).requires_grad_(True)
    opt = torch.optim.AdamW(list(lora.values()), lr=1e-4, weight_decay=0.0)
    T = int(seq_len)
    ids = torch.randint(0, 151000, (1, T))
    mask = torch.ones(1, T, dtype=torch.long)
    best = float("inf")
    for _ in range(int(steps)):
        t0 = time.perf_counter()
        opt.zero_grad()
        _, loss = forward_loss(cfg, W, lora, 1.0, ids, mask)
        loss.backward()
        opt.step()
        best = min(best, time.perf_counter() - t0)
    # this machine's sgemm rate through the same BLAS, for scale
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(3):
        torch.mm(a, b)
    sgemm = 3 * 2 * 2048 ** 3 / (time.perf_counter() - t0) / 1e9
    print(json.dumps({"tokensPerSecond": T / best, "threads": torch.get_num_threads(), "torch": torch.__version__, "sgemmGflops": sgemm}))


def forward_loss(cfg, W, lora, scale, ids, mask):
    Bsz, T = ids.shape

    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or cfg["hidden_size"] // H
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    embed = W["model.embed_tokens.weight"]

    def linear(x, name):
        y = x @ W[name + ".weight"].t()
        a = lora.get(f"base_model.model.{name}.lora_A.weight")
        b = lora.get(f"base_model.model.{name}.lora_B.weight")
        if a is not None and b is not None:
            y = y + scale * ((x @ a.t()) @ b.t())
        return y

    x = embed[ids]  # [B, T, C]
    causal = torch.full((T, T), float("-inf")).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        h = rms_norm(x, W[p + ".input_layernorm.weight"], eps)
        q = linear(h, p + ".self_attn.q_proj").view(Bsz, T, H, D)
        k = linear(h, p + ".self_attn.k_proj").view(Bsz, T, KV, D)
        v = linear(h, p + ".self_attn.v_proj").view(Bsz, T, KV, D)
        q = rms_norm(q, W[p + ".self_attn.q_norm.weight"], eps).transpose(1, 2)
        k = rms_norm(k, W[p + ".self_attn.k_norm.weight"], eps).transpose(1, 2)
        v = v.transpose(1, 2)
        q, k = rope(q, theta), rope(k, theta)
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        att = (q @ k.transpose(-1, -2)) / (D ** 0.5) + causal
        y = att.softmax(-1) @ v  # [B, H, T, D]
        y = y.transpose(1, 2).reshape(Bsz, T, H * D)
        x = x + linear(y, p + ".self_attn.o_proj")
        h = rms_norm(x, W[p + ".post_attention_layernorm.weight"], eps)
        g = linear(h, p + ".mlp.gate_proj")
        u = linear(h, p + ".mlp.up_proj")
        x = x + linear(torch.nn.functional.silu(g) * u, p + ".mlp.down_proj")
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = embed if cfg.get("tie_word_embeddings", False) else W["lm_head.weight"]
    logits = x @ head.t()  # [B, T, V]

    targets = ids[:, 1:].clone()
    targets[mask[:, 1:] == 0] = -100
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    return logits, loss


if __name__ == "__main__":
    torch.manual_seed(0)
    if sys.argv[1] == "bench":
        if len(sys.argv) > 5:
            torch.set_num_threads(int(sys.argv[5]))
        bench(*sys.argv[2:5])
    else:
        torch.set_num_threads(1)
        main(*sys.argv[1:5])
