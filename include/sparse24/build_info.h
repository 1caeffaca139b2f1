// sparse24/build_info.h: what this build of the library contains.
#pragma once

#include <string>
#include <vector>

namespace sparse24 {

const char* version();
bool built_with_cuda();
bool built_with_openmp();
int cpu_threads();  // OpenMP threads the CPU backend uses (1 without OpenMP)

struct GpuInfo {
  int index;
  std::string name;
  int cc_major, cc_minor;
  size_t memory_bytes;
};
// GPUs the CUDA runtime sees (empty without CUDA or without a GPU; `why` says which).
std::vector<GpuInfo> list_gpus(std::string* why = nullptr);
// The index of the calling thread's current GPU (cudaSetDevice chooses it; CUDA tensors live on
// it). Throws kDevice in a build without CUDA.
int current_gpu();

}  // namespace sparse24
