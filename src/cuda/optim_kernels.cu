// The optimizer on the GPU: AdamW's update (one thread per element, the rule of
// core/adamw_rule.h, as the CPU), the gradient norm and in-place scaling (clipping, unscaling).
#include <algorithm>

#include "cuda/check.h"
#include "cuda/optim_cuda.h"
#include "cuda/runtime.h"
#include "cuda/tile.cuh"

namespace sparse24::cuda {

namespace {

constexpr int kThreads = 256;

// w, m, v <- AdamW(w, m, v, g (+ masked decay where mask_codes prunes)), element i per thread.
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(float* w, const float* g, float* m, float* v, int64_t n,
                 const uint8_t* mask_codes, int64_t cols, int64_t row_bytes, rules::AdamWStep s) {
  const int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (i >= n) return;
  float gi = g[i];
  if (mask_codes)
    gi = rules::masked_decay_grad(gi, w[i], s.alpha,
                                  rules::mask_keeps(mask_codes, row_bytes, i / cols, i % cols));
  float wi = w[i], mi = m[i], vi = v[i];
  rules::adamw_element(wi, mi, vi, gi, s);
  w[i] = wi;
  m[i] = mi;
  v[i] = vi;
}

// sum += x^2 over the tensor: per-thread double sums, a block reduction in shared memory, one
// atomic add per block.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    sum_squares_kernel(const T* x, int64_t n, double* sum) {
  __shared__ double partial[kThreads];
  double local = 0.0;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kThreads) {
    const double v = to_f32(x[i]);
    local += v * v;
  }
  partial[threadIdx.x] = local;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(sum, partial[0]);
}

// x = round(x * factor); a non-finite product reports its index (runtime.h's report slot).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    scale_kernel(T* x, int64_t n, float factor, unsigned long long* bad) {
  const int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (i >= n) return;
  const float v = to_f32(x[i]) * factor;
  if (!isfinite(v)) report_first(bad, i);
  x[i] = from_f32<T>(v, 1.f, Overflow::kPyTorch);
}

}  // namespace

double sum_squares(const void* data, DType dtype, int64_t n) {
  if (n == 0) return 0.0;
  const std::shared_ptr<void> slot = alloc(sizeof(double));
  S24_CUDA_CHECK(cudaMemsetAsync(slot.get(), 0, sizeof(double)));
  const unsigned blocks = unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 1024));
  dispatch_input_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    sum_squares_kernel<T><<<blocks, kThreads>>>(static_cast<const T*>(data), n,
                                                static_cast<double*>(slot.get()));
  });
  S24_CUDA_CHECK_LAUNCH("sum_squares_kernel");
  double sum = 0.0;
  copy(&sum, false, slot.get(), true, sizeof(double));
  return sum;
}

bool scale_in_place(void* data, DType dtype, int64_t n, float factor) {
  if (n == 0) return true;
  unsigned long long* bad = reset_report_slot();
  dispatch_input_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    scale_kernel<T><<<unsigned((n + kThreads - 1) / kThreads), kThreads>>>(static_cast<T*>(data), n, factor, bad);
  });
  S24_CUDA_CHECK_LAUNCH("scale_kernel");
  return read_report_slot() < 0;
}

void adamw_update(float* w, const float* g, float* m, float* v, int64_t n,
                  const uint8_t* mask_codes, int64_t cols, int64_t row_bytes,
                  const rules::AdamWStep& s) {
  if (n == 0) return;
  const unsigned blocks = unsigned((n + kThreads - 1) / kThreads);
  adamw_kernel<<<blocks, kThreads>>>(w, g, m, v, n, mask_codes, cols, row_bytes, s);
  S24_CUDA_CHECK_LAUNCH("adamw_kernel");
}

}  // namespace sparse24::cuda
