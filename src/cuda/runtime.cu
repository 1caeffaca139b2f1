// CUDA runtime wrappers: allocation, copies, device listing. Errors become sparse24::Error.
#include <cuda_runtime.h>

#include "cuda/runtime.h"
#include "sparse24/error.h"

namespace sparse24::cuda {
namespace {
void check(cudaError_t e, const char* what) {
  S24_CHECK(e == cudaSuccess, kDevice, what, ": ", cudaGetErrorString(e));
}
}  // namespace

std::shared_ptr<void> alloc(size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc");
  return std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
}

void copy(void* dst, bool dst_on_gpu, const void* src, bool src_on_gpu, size_t bytes) {
  const cudaMemcpyKind kind = dst_on_gpu ? (src_on_gpu ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                         : (src_on_gpu ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  check(cudaMemcpy(dst, src, bytes, kind), "cudaMemcpy");
}

namespace {
unsigned long long* report_slot() {
  static thread_local unsigned long long* slot[64] = {};
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  S24_CHECK(dev < 64, kDevice, "GPU index ", dev, " beyond the 64 supported");
  if (!slot[dev]) check(cudaMalloc(&slot[dev], sizeof(unsigned long long)), "cudaMalloc");
  return slot[dev];
}
}  // namespace

unsigned long long* reset_report_slot() {
  unsigned long long* s = report_slot();
  check(cudaMemsetAsync(s, 0xFF, sizeof(*s)), "cudaMemsetAsync");
  return s;
}

int64_t read_report_slot() {
  unsigned long long v = 0;
  check(cudaMemcpy(&v, report_slot(), sizeof(v), cudaMemcpyDeviceToHost), "cudaMemcpy");
  return v == ~0ull ? -1 : int64_t(v);
}

void fill(void* dst, int byte, size_t bytes) { check(cudaMemset(dst, byte, bytes), "cudaMemset"); }

void* Scratch::get(size_t bytes) {
  if (bytes > bytes_) {
    bytes_ = 0;  // until the new buffer exists: a failed allocation leaves an empty Scratch
    buffer_.reset();
    buffer_ = alloc(bytes);
    bytes_ = bytes;
  }
  return buffer_.get();
}

std::vector<GpuInfo> gpus(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error so later calls are not confused by it
    return {};
  }
  std::vector<GpuInfo> out;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    out.push_back({i, p.name, p.major, p.minor, p.totalGlobalMem});
  }
  if (out.empty() && why) *why = "no CUDA device found";
  return out;
}

}  // namespace sparse24::cuda
