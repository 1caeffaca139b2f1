// src/cuda/runtime.h: the CUDA runtime as the rest of the library sees it. Implemented by
// runtime.cu in a CUDA build and by core/no_cuda.cpp otherwise (every call then throws kDevice,
// except gpus, which reports none). Scratch is for CUDA-only code (the GEMM backends) and has no
// CPU-only implementation.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sparse24/build_info.h"
#include "sparse24/dtype.h"

namespace sparse24::cuda {

// Device memory on the current GPU, from a cache of freed blocks (runtime.cu says how it works;
// it relies on all of sparse24's work running on the default stream).
std::shared_ptr<void> alloc(size_t bytes);
// Copies between host and device memory; each side's location is given.
void copy(void* dst, bool dst_on_gpu, const void* src, bool src_on_gpu, size_t bytes);
std::vector<GpuInfo> gpus(std::string* why);
int current_gpu();
// The current GPU's number of SMs (asked once per GPU).
int sm_count();
// The device slot where a kernel reports the first offending input position (a non-finite
// value, an invalid mask block): reset it before the launch, read it (synchronising) after.
// Reading gives the lowest index reported, or -1 for none.
unsigned long long* reset_report_slot();
int64_t read_report_slot();
// Fills device memory with a byte value.
void fill(void* dst, int byte, size_t bytes);
// dst[i] = src[i] for n contiguous device elements: dst fp32, fp16 or bf16, src one of those or
// fp8 (e4m3, e5m2), rounded to nearest even as the CPU's from_f32 (Overflow::kPyTorch). Queued,
// not synchronised.
void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n);

// A device buffer that grows on demand and is kept for reuse (GEMM workspaces). get() may drop
// the old buffer: back to alloc's cache, reused later in stream order.
class Scratch {
 public:
  void* get(size_t bytes);

 private:
  std::shared_ptr<void> buffer_;
  size_t bytes_ = 0;
};

// One T per GPU, made on the first use of each GPU: the GEMM backends' handles, plans and
// workspaces, the SM counts. get() default-constructs the GPU's T and passes it to `init` once
// (again on the next call if init threw); the T stays in place for the process's life, never
// destroyed (at exit CUDA may be torn down before static destructors run). Finding the T is
// thread-safe; using it is the caller's to guard.
template <typename T>
class PerGpu {
 public:
  template <typename Init>
  T& get(Init init, int gpu = current_gpu()) {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::unique_ptr<T>& slot = (*slots_)[gpu];
    if (!slot) {
      auto fresh = std::make_unique<T>();
      init(*fresh);
      slot = std::move(fresh);
    }
    return *slot;
  }
  T& get(int gpu = current_gpu()) {
    return get([](T&) {}, gpu);
  }

 private:
  std::mutex mutex_;
  std::map<int, std::unique_ptr<T>>* slots_ = new std::map<int, std::unique_ptr<T>>();
};

}  // namespace sparse24::cuda
