// src/cuda/runtime.h: the CUDA runtime as the rest of the library sees it. Implemented by
// runtime.cu in a CUDA build and by core/no_cuda.cpp otherwise (every call then throws kDevice,
// except gpus, which reports none). Scratch is for CUDA-only code (the GEMM backends) and has no
// CPU-only implementation.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "sparse24/build_info.h"

namespace sparse24::cuda {

std::shared_ptr<void> alloc(size_t bytes);
// Copies between host and device memory; each side's location is given.
void copy(void* dst, bool dst_on_gpu, const void* src, bool src_on_gpu, size_t bytes);
std::vector<GpuInfo> gpus(std::string* why);
// The device slot where a kernel reports the first offending input position (a non-finite
// value, an invalid mask block): reset it before the launch, read it (synchronising) after.
// Reading gives the lowest index reported, or -1 for none.
unsigned long long* reset_report_slot();
int64_t read_report_slot();
// Fills device memory with a byte value.
void fill(void* dst, int byte, size_t bytes);

// A device buffer that grows on demand and is kept for reuse (GEMM workspaces). get() may free
// the old buffer, which waits for the kernels that use it (cudaFree synchronises the device).
class Scratch {
 public:
  void* get(size_t bytes);

 private:
  std::shared_ptr<void> buffer_;
  size_t bytes_ = 0;
};

}  // namespace sparse24::cuda
