#!/usr/bin/env bash
# run.sh [BUILD_DIR] [TEST...]: builds the CUDA kernels' tests (../tests) for the CPU simulator
# (sim.h, mma.h, runtime.cpp; README.md "CPU simulator") into BUILD_DIR (a new temp dir when
# empty or absent) and runs the named tests (a test's name or group, as ftcuda_tests takes them)
# with FTCUDA_SMALL=1 (the tests' small shapes). The environment:
#   SIM_ORDER   fwd (default) | rev | shuffle | greedy | greedyrev: the order fibers run in
#   SIM_SM      the compute capability reported (default 80; 75 plays a T4: bf16 is refused)
#   SIM_CXXFLAGS  extra compiler flags, e.g. "-fsanitize=address -fno-omit-frame-pointer"
#                 (then ASAN_OPTIONS=detect_stack_use_after_return=0), or -DSIM_UCONTEXT
#   SIM_OPT     the optimisation level (default -O1)
#   CUDA_INCLUDE  where cuda_runtime.h and cuda_fp16.h are (default: beside nvcc, /usr/local/cuda)
# Objects are rebuilt when a source or a header is newer; a different SIM_CXXFLAGS or SIM_OPT needs
# its own BUILD_DIR. Do not pass a group like "gemm", "attention" or "step": they include the
# Qwen3-4B cases, too slow here. With no TEST, builds only.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cuda=$(dirname "$here")
src=$(cd "$cuda/../src" && pwd)
out=${1:-}
[ $# -gt 0 ] && shift
[ -n "$out" ] || out=$(mktemp -d "${TMPDIR:-/tmp}/ftcuda-sim.XXXXXX")
mkdir -p "$out/obj"
out=$(cd "$out" && pwd)
case "$out/" in "$cuda/"*) echo "run.sh: build dir $out is inside the source tree" >&2; exit 2 ;; esac

inc=${CUDA_INCLUDE:-}
if [ -z "$inc" ]; then
  if command -v nvcc >/dev/null; then inc=$(dirname "$(dirname "$(command -v nvcc)")")/include; fi
  [ -n "$inc" ] && [ -f "$inc/cuda_runtime.h" ] || inc=/usr/local/cuda/include
fi
[ -f "$inc/cuda_runtime.h" ] || { echo "run.sh: no cuda_runtime.h (set CUDA_INCLUDE)" >&2; exit 2; }

python3 "$here/prep.py" "$cuda" "$out/gen"

common="-std=c++20 ${SIM_OPT:--O1} -fPIC -ffp-contract=off -fno-math-errno -pthread -I$src ${SIM_CXXFLAGS:-}"
flags="$common -include $here/sim.h -I$here -I$out/gen -I$inc -DFT_CUDA_ARCHS=\"sim\"
  -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas -Wno-unused-variable -Wno-unused-function -Wno-missing-field-initializers"
# the CPU references: the list in ../../kernels.cmake
refs=$(sed -n 's|.*/src/\([A-Za-z0-9_]*\.cpp\).*|\1|p' "$cuda/../kernels.cmake")
headers=$(ls "$here"/*.h "$out"/gen/*.cuh "$out"/gen/tests/*.h "$src"/*.h)

newest() {  # true when $1 is missing or older than any later argument
  local o=$1; shift
  [ -f "$o" ] || return 0
  for f in "$@"; do [ "$f" -nt "$o" ] && return 0; done
  return 1
}
stale=() objs=()
for s in "$here/runtime.cpp" "$out"/gen/*.cpp "$out"/gen/tests/*.cpp; do
  o=$out/obj/$(basename "$(dirname "$s")")_$(basename "$s" .cpp).o
  objs+=("$o")
  if newest "$o" "$s" $headers; then stale+=("$s|$o|sim"); fi
done
for r in $refs; do
  o=$out/obj/ref_${r%.cpp}.o
  objs+=("$o")
  if newest "$o" "$src/$r" "$src"/*.h; then stale+=("$src/$r|$o|ref"); fi
done
for e in "${stale[@]+"${stale[@]}"}"; do
  IFS='|' read -r s o kind <<<"$e"
  echo "cc $(basename "$s")"
  if [ "$kind" = sim ]; then g++ $flags -c "$s" -o "$o"; else g++ $common -c "$s" -o "$o"; fi
done
if newest "$out/ftcuda_sim" "${objs[@]}"; then g++ $common "${objs[@]}" -o "$out/ftcuda_sim"; fi
echo "built $out/ftcuda_sim"
[ $# -gt 0 ] || exit 0
FTCUDA_SMALL=1 exec "$out/ftcuda_sim" "$@"
