// CUDA runtime wrappers: allocation, copies, device listing. Errors become sparse24::Error.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <mutex>
#include <map>

#include "cuda/runtime.h"
#include "sparse24/error.h"

namespace sparse24::cuda {
namespace {
void check(cudaError_t e, const char* what) {
  S24_CHECK(e == cudaSuccess, kDevice, what, ": ", cudaGetErrorString(e));
}
}  // namespace

// Device memory comes from a cache, as in PyTorch: a freed block goes back to its GPU's free
// list under its size class, and the next request takes the smallest free block of its class or
// larger, up to twice its class (so that varying shapes reuse blocks instead of piling them up,
// and a small request never pins a large block). A training loop that
// allocates the same shapes every step (compressed weights, MVUE's sparse gradient) then calls
// cudaMalloc only in its first step, and never cudaFree, which synchronises the device. All of
// sparse24's work runs on the default stream, so a block freed by the host is reused by later
// work in stream order. When cudaMalloc fails, the cached blocks of that GPU are released and it
// is retried. SPARSE24_NO_CUDA_CACHE=1 in the environment turns the cache off (plain cudaMalloc
// and cudaFree), so that compute-sanitizer sees every use after free.
namespace {
constexpr int kMaxGpus = 64;

struct BlockCache {
  std::mutex mu;
  std::multimap<size_t, void*> free[kMaxGpus];  // size class -> free blocks, smallest first
};
BlockCache& block_cache() {
  static BlockCache* c = new BlockCache;  // never destroyed: blocks may be freed at exit
  return *c;
}

// Size classes: multiples of 512 bytes up to 1 MiB, of 2 MiB above.
size_t size_class(size_t bytes) {
  const size_t unit = bytes <= (size_t(1) << 20) ? 512 : (size_t(2) << 20);
  return (std::max<size_t>(bytes, 1) + unit - 1) / unit * unit;
}

}  // namespace

int current_gpu() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  S24_CHECK(dev < kMaxGpus, kDevice, "GPU index ", dev, " beyond the ", kMaxGpus, " supported");
  return dev;
}

int sm_count() {
  static PerGpu<int> counts;
  return counts.get([](int& n) {
    check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, current_gpu()), "cudaDeviceGetAttribute");
  });
}

namespace {
bool caching() {
  static const bool on = [] {
    const char* v = std::getenv("SPARSE24_NO_CUDA_CACHE");
    return !(v && *v && std::string(v) != "0");
  }();
  return on;
}

// Frees the current GPU's cached blocks.
void release_cached_memory() {
  BlockCache& c = block_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  const int dev = current_gpu();
  for (auto& [size, p] : c.free[dev]) cudaFree(p);
  c.free[dev].clear();
}
}  // namespace

std::shared_ptr<void> alloc(size_t bytes) {
  if (!caching()) {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc");
    return std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
  }
  BlockCache& c = block_cache();
  const int dev = current_gpu();
  size_t cls = size_class(bytes);  // of the block returned: the request's, or a cached block's
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    const auto it = c.free[dev].lower_bound(cls);
    if (it != c.free[dev].end() && it->first <= 2 * cls) {
      cls = it->first;
      p = it->second;
      c.free[dev].erase(it);
    }
  }
  if (!p && cudaMalloc(&p, cls) != cudaSuccess) {
    (void)cudaGetLastError();  // an allocation failure is not sticky: clear it, free the cache, retry
    release_cached_memory();
    const cudaError_t e = cudaMalloc(&p, cls);
    S24_CHECK(e == cudaSuccess, kDevice, "cudaMalloc of ", bytes, " bytes on GPU ", dev, ": ",
              cudaGetErrorString(e));
  }
  return std::shared_ptr<void>(p, [dev, cls](void* q) {
    BlockCache& cache = block_cache();
    std::lock_guard<std::mutex> lock(cache.mu);
    cache.free[dev].emplace(cls, q);
  });
}

void copy(void* dst, bool dst_on_gpu, const void* src, bool src_on_gpu, size_t bytes) {
  const cudaMemcpyKind kind = dst_on_gpu ? (src_on_gpu ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                         : (src_on_gpu ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  check(cudaMemcpy(dst, src, bytes, kind), "cudaMemcpy");
}

namespace {
unsigned long long* report_slot() {
  static thread_local unsigned long long* slot[kMaxGpus] = {};
  const int dev = current_gpu();
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

namespace {
// dst[i] = from_f32(to_f32(src[i])), one element per thread.
template <typename D, typename S>
__global__ void convert_kernel(D* dst, const S* src, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(256) + threadIdx.x;
  if (i < n) dst[i] = from_f32<D>(to_f32(src[i]), 1.f, Overflow::kPyTorch);
}
}  // namespace

void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n) {
  if (n == 0) return;
  dispatch_input_dtype(dst_dtype, [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    const auto launch = [&](auto stag) {
      using S = typename decltype(stag)::type;
      convert_kernel<D, S><<<unsigned((n + 255) / 256), 256>>>(static_cast<D*>(dst), static_cast<const S*>(src), n);
    };
    if (is_fp8(src_dtype)) {
      dispatch_fp8_dtype(src_dtype, launch);
    } else {
      dispatch_input_dtype(src_dtype, launch);
    }
  });
  check(cudaGetLastError(), "convert_kernel");
}

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
