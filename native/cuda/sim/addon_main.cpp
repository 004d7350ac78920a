// addon_main.cpp: the CPU simulator's Node module (addon.sh): the CUDA backend's binding
// (src/addon_cuda.cpp) over the simulated kernels, loaded by native/index.ts through FT_CUDA_ADDON.
#include <napi.h>

namespace ft {
void RegisterCuda(Napi::Env env, Napi::Object exports);
}

static Napi::Object InitFtcudaSim(Napi::Env env, Napi::Object exports) {
  ft::RegisterCuda(env, exports);
  return exports;
}

NODE_API_MODULE(ftcuda_sim, InitFtcudaSim)
