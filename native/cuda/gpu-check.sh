#!/usr/bin/env bash
# The CUDA backend's whole check, for a machine with a GPU (no Node.js needed): builds
# native/cuda with this machine's nvcc and CMake, then runs, printing Markdown tables:
#   1. the memory plan of a Qwen3-4B step at 2 x 2048 tokens (ftcuda_memplan);
#   2. every kernel against its CPU reference on random inputs, on the GPU's own SASS
#      (ftcuda_tests: nf4, gemm, norm, rope, swiglu, attention, xent, adamw8bit, lossscale), with
#      fp16 operands and, where the GPU has bf16 tensor cores (sm_80+), bf16 operands; and
#      the whole training step (step.cu): the tiny model against the CPU backend's loss, logits
#      and LoRA gradients, and a Qwen3-4B-shaped model at 2 x 2048 tokens for peak memory and
#      tokens/s (fp16 and bf16), and what the trainer's host-side optimizer step costs beside it;
#   3. the same on the compute_75 PTX, JIT-compiled by the driver (CUDA_FORCE_PTX_JIT=1): the
#      code a T4 runs, exercised on whatever newer GPU we borrow (the bf16 rows report "skip"
#      there, and the Trainer must refuse bf16 on it);
#   4. where PyTorch, transformers and peft are installed: our PEFT adapter loaded by peft, its
#      logits and LoRA gradients against ours (peft/check.py), and the peer's LoRA step on
#      Qwen3-4B shapes with the GPU's measured fp16 matmul rate (peft/peer_bench.py).
# Exit status: 0 when every part that ran passed.
#
#   bash native/cuda/gpu-check.sh [build dir]        (from the repository root or anywhere)
#
# The source tree it needs: native/cuda, native/src, native/kernels.cmake (about 5 MB with the
# PEFT fixture).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-${TMPDIR:-/tmp}/ftcuda-build}"
status=0
section() { printf '\n## %s\n\n' "$1"; }
started=$(date +%s)

section "build"
nvcc --version | tail -1
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release > "$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" > "$build.build.log" 2>&1 || { tail -40 "$build.build.log"; exit 1; }
echo "built in $(( $(date +%s) - started )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || true

section "memory plan"
"$build/ftcuda_memplan" || status=1

section "kernels against the CPU references (native SASS)"
"$build/ftcuda_tests" | tee "$build.tests.md"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

section "the compute_75 PTX path, JIT-compiled for this GPU (what a T4 runs)"
CUDA_FORCE_PTX_JIT=1 "$build/ftcuda_tests" nf4 gemm norm rope swiglu attention xent adamw8bit lossscale "tiny model step = CPU backend" \
  "bf16 refused where the GPU has no bf16 tensor cores" || status=1

section "the ecosystem: peft loads our adapter; logits and LoRA gradients"
python3 "$here/peft/check.py"; rc=$?
[ $rc -eq 0 ] || [ $rc -eq 77 ] || status=1

section "the peer: transformers + peft LoRA step on Qwen3-4B shapes"
python3 "$here/peft/peer_bench.py" | tee "$build.peer.md"; rc=${PIPESTATUS[0]}
[ $rc -eq 0 ] || [ $rc -eq 77 ] || status=1

section "estimate for a T4 (fp16 tensor cores: 65 TFLOP/s peak)"
# our Qwen3-4B step's TFLOP/s here, scaled by the T4's peak over this GPU's measured fp16 matmul rate
ours=$(grep 'GFLOP/token' "$build.tests.md" | grep -v 'informative), bf16' | grep -o 'TFLOP/s [0-9.]*' | tail -1 | awk '{print $2}')
gpu=$(grep -o 'fp16 matmul rate ([^|]*| [0-9.]*' "$build.peer.md" | awk '{print $NF}')
perToken=$(grep 'GFLOP/token' "$build.tests.md" | grep -v 'informative), bf16' | grep -o '([0-9.]* GFLOP/token)' | tail -1 | tr -d '(' | awk '{print $1}')
if [ -n "$ours" ] && [ -n "$gpu" ] && [ -n "$perToken" ]; then
  awk -v o="$ours" -v g="$gpu" -v f="$perToken" 'BEGIN {
    t4 = o * 65 / g; tok = t4 * 1e3 / f
    printf "our step here: %.1f TFLOP/s, this GPU fp16 matmul %.1f TFLOP/s -> on a T4 about %.2f TFLOP/s = %.0f tokens/s = %.3f steps/s at 2 x 2048 tokens (the reference run: 0.32 steps/s)\n", o, g, t4, tok, tok / 4096 }'
else
  echo "not estimated: a figure is missing (ours: '$ours', matmul: '$gpu', GFLOP/token: '$perToken')"
fi

printf '\nall done in %s s, status %s\n' "$(( $(date +%s) - started ))" "$status"
exit $status
