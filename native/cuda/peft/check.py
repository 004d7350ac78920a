#!/usr/bin/env python3
"""
The ecosystem check of our adapter and gradients (run by gpu-check.sh where PyTorch,
transformers and peft are installed; CUDA when there is a GPU, else the CPU).

fixture/ (make-fixture.ts writes it): a micro Qwen3 checkpoint, a LoRA adapter written by our
own writer, a batch, and what our CPU backend computed: logits, loss, every LoRA gradient.
Here transformers loads the checkpoint (Qwen3ForCausalLM), peft loads our adapter
(PeftModel.from_pretrained: our names, shapes and adapter_config.json must be what peft
expects), and in fp32 we compare:
  - logits: relative L2 difference with ours <= 1e-4 (the proof that the adapter is PEFT's);
  - loss (mean cross-entropy over positions whose next token has mask 1) <= 1e-4;
  - every LoRA A and B gradient from autograd: relative L2 <= 1e-3.
Prints one Markdown table; exit 0 when all hold, 1 when one does not, 77 when the libraries
are missing.

usage: check.py [FIXTURE_DIR]
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
fixture = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "fixture")
try:
    import numpy as np
    import torch
    import transformers
    import peft
except ImportError as e:  # a machine without the ecosystem: nothing to compare with
    print(f"skipped: {e}")
    sys.exit(77)


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    manifest = json.load(open(os.path.join(fixture, "ours", "manifest.json")))
    batch = json.load(open(os.path.join(fixture, "batch.json")))
    ours_logits = np.fromfile(os.path.join(fixture, "ours", manifest["logits"]), dtype="<f4").reshape(manifest["shape"])

    model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(fixture, "model"), torch_dtype=torch.float32, attn_implementation="eager")
    model = peft.PeftModel.from_pretrained(model, os.path.join(fixture, "adapter"), is_trainable=True)
    model.to(device).train()  # train(): LoRA dropout is 0 in our adapter, so this is deterministic
    ids = torch.tensor(batch["ids"], device=device)
    mask = torch.tensor(batch["mask"], device=device, dtype=torch.float32)
    logits = model(input_ids=ids).logits
    # the loss of our trainer: positions t whose next token (t + 1) has mask 1
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
    weights = mask[:, 1:].reshape(-1)
    loss = (ce * weights).sum() / weights.sum()
    loss.backward()

    rows = []
    rows.append(("logits (peft + transformers vs ours)", rel_l2(logits.detach().cpu().numpy(), ours_logits), 1e-4))
    rows.append(("loss", abs(loss.item() - manifest["loss"]) / abs(manifest["loss"]), 1e-4))
    params = dict(model.named_parameters())
    worst = ("", 0.0)
    found = 0
    for name, file in manifest["grads"].items():
        # ours: base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight; peft adds the adapter name
        peft_name = name.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
        p = params.get(peft_name)
        if p is None or p.grad is None:
            rows.append((f"gradient {name}: not in the peft model", float("inf"), 1e-3))
            continue
        found += 1
        ours = np.fromfile(os.path.join(fixture, "ours", file), dtype="<f4")
        e = rel_l2(p.grad.detach().cpu().numpy(), ours)
        if e > worst[1]:
            worst = (name, e)
    rows.append((f"LoRA gradients, worst of {found} ({worst[0].replace('base_model.model.model.', '')})", worst[1], 1e-3))

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, on {device}\n")
    print("| compared | error | bound | ok |\n|---|---:|---:|---|")
    failed = 0
    for what, err, bound in rows:
        ok = err <= bound
        failed += not ok
        print(f"| {what} | {err:.3g} | {bound:.0e} | {'ok' if ok else 'FAIL'} |")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
