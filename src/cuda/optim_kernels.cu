// AdamW's update on the GPU: one thread per element, the rule of core/adamw_rule.h (the CPU's).
#include "cuda/check.h"
#include "cuda/optim_cuda.h"

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

}  // namespace

void adamw_update(float* w, const float* g, float* m, float* v, int64_t n,
                  const uint8_t* mask_codes, int64_t cols, int64_t row_bytes,
                  const rules::AdamWStep& s) {
  if (n == 0) return;
  const unsigned blocks = unsigned((n + kThreads - 1) / kThreads);
  adamw_kernel<<<blocks, kThreads>>>(w, g, m, v, n, mask_codes, cols, row_bytes, s);
  S24_CUDA_CHECK_LAUNCH("adamw_kernel");
}

}  // namespace sparse24::cuda
