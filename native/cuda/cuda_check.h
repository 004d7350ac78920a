// cuda_check.h: errors of CUDA runtime calls, for host code (kernels' launchers and the addon).
//
// FT_CUDA(call): on failure throws ft::Error (src/check.h) naming the file and line, the call,
// CUDA's own words and a hint for the error codes people actually meet (no device, out of
// memory, a binary without code for this GPU). FT_LAUNCHED() checks a launch (cudaGetLastError:
// bad grid, too much shared memory); execution errors show up at the next synchronising call.
#pragma once
#include <cuda_runtime.h>

#include "check.h"

namespace ft::cuda {

/** A hint for the CUDA errors a user can do something about. */
inline const char* hintFor(cudaError_t e) {
  switch (e) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return " (hint: no usable GPU or driver here; train.device: cpu runs without one)";
    case cudaErrorMemoryAllocation:
      return " (hint: the GPU is out of memory: lower train.batchSize or tokenize.maxSeqLen)";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
      return " (hint: this build has no code for this GPU: rebuild with its architecture in CMAKE_CUDA_ARCHITECTURES, or a newer driver for the PTX)";
    case cudaErrorInvalidConfiguration:
      return " (hint: a launch asked for more threads or shared memory than the GPU has)";
    default:
      return "";
  }
}

}  // namespace ft::cuda

/** A CUDA runtime call whose failure becomes ft::Error with file:line, the call and a hint. */
#define FT_CUDA(call)                                                                                                      \
  do {                                                                                                                     \
    const cudaError_t ft_cuda_e_ = (call);                                                                                 \
    if (ft_cuda_e_ != cudaSuccess)                                                                                         \
      ::ft::detail::fail(__FILE__, __LINE__, #call, ": ", cudaGetErrorString(ft_cuda_e_), ::ft::cuda::hintFor(ft_cuda_e_)); \
  } while (0)

/** After a launch: a bad configuration shows up here (execution errors show up at the next sync). */
#define FT_LAUNCHED() FT_CUDA(cudaGetLastError())
