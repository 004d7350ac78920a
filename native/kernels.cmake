# The CPU kernels (plain C++, no Node): one list for the addon's build (CMakeLists.txt) and the
# CUDA tests' standalone build (cuda/CMakeLists.txt), where they are the references.
set(FT_KERNEL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/src/nf4.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/dynamic_map.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/double_quant.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/adamw.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/adamw8bit.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/qwen3.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/head.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/simd.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/threads.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/gguf_quant.cpp
)
