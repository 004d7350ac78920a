#!/usr/bin/env bash
# addon.sh BUILD_DIR: builds BUILD_DIR/ftcuda_sim.node, the CUDA backend's Node binding
# (src/addon_cuda.cpp: cudaDevices, CudaTrainer) over the CPU simulator's build of the kernels
# (run.sh: the same objects). With FT_CUDA_ADDON=BUILD_DIR/ftcuda_sim.node, native/index.ts takes
# the CUDA backend from it, so `train.device: cuda` runs end to end (the trainer, the binding, the
# step's kernels) on a machine without a GPU: slowly (fibers), so on small models only.
# The environment of run.sh applies (SIM_ORDER at run time; SIM_OPT, SIM_CXXFLAGS, CUDA_INCLUDE).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cuda=$(dirname "$here")
native=$(dirname "$cuda")
repo=$(dirname "$native")
out=${1:?usage: addon.sh BUILD_DIR}
bash "$here/run.sh" "$out" >/dev/null
out=$(cd "$out" && pwd)

inc=${CUDA_INCLUDE:-}
if [ -z "$inc" ]; then
  if command -v nvcc >/dev/null; then inc=$(dirname "$(dirname "$(command -v nvcc)")")/include; fi
  [ -n "$inc" ] && [ -f "$inc/cuda_runtime.h" ] || inc=/usr/local/cuda/include
fi
napi_version=$(sed -n 's/.*"napi_versions": *\[ *\([0-9]*\).*/\1/p' "$native/package.json")
common="-std=c++20 ${SIM_OPT:--O1} -fPIC -ffp-contract=off -fno-math-errno -pthread -I$native/src ${SIM_CXXFLAGS:-}"
napi="-isystem $repo/node_modules/node-api-headers/include -isystem $repo/node_modules/node-addon-api
  -DNAPI_VERSION=$napi_version -DNODE_ADDON_API_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED"
flags="$common -include $here/sim.h -I$here -I$out/gen -I$inc $napi -Wall -Wextra -Wno-unused-parameter"

objs=("$out/obj/sim_runtime.o")
for s in "$out"/gen/*.cpp; do objs+=("$out/obj/gen_$(basename "$s" .cpp).o"); done
for r in $(sed -n 's|.*/src/\([A-Za-z0-9_]*\.cpp\).*|\1|p' "$native/kernels.cmake"); do objs+=("$out/obj/ref_${r%.cpp}.o"); done
for s in "$native/src/addon_cuda.cpp" "$here/addon_main.cpp"; do
  o=$out/obj/addon_$(basename "$s" .cpp).o
  if [ ! -f "$o" ] || [ -n "$(find "$s" "$native/src" "$out/gen" "$here" -newer "$o" -name '*.[ch]*' -print -quit)" ]; then
    echo "cc $(basename "$s")"
    g++ $flags -c "$s" -o "$o"
  fi
  objs+=("$o")
done
g++ -shared $common "${objs[@]}" -o "$out/ftcuda_sim.node.tmp"
mv "$out/ftcuda_sim.node.tmp" "$out/ftcuda_sim.node"
echo "built $out/ftcuda_sim.node"
