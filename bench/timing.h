// bench/timing.h: what every benchmark command shares: CUDA-event timing and random inputs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "sparse24/tensor.h"

namespace sparse24::bench {

// Throws kDevice naming `what` when a CUDA call failed.
void check(cudaError_t e, const char* what);

// CUDA events around work on the default stream: start(), then stop_ms() waits for the work and
// returns the milliseconds between the two.
class Timer {
 public:
  Timer();
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void start();
  double stop_ms();

 private:
  cudaEvent_t start_, stop_;
};

// The median of v (sorted in place; v not empty).
double median_of(std::vector<double>& v);

// Median time in microseconds of one call of fn(i), i cycling over `rotate` prepared inputs
// (after 2 * rotate warm-up calls; 15 samples of max(rotate, 10) calls each). With `range`, the
// timed calls (not the warm-up) run inside an NVTX range of that name, for profilers:
// `ncu --nvtx --nvtx-include "native/" ...` profiles only the native column's timed kernels.
double time_us(int rotate, const std::function<void(int)>& fn, const char* range = nullptr);

// A CPU rows x cols matrix of dtype dt and layout, the same on every run: uniform in [-1, 1)
// for the float dtypes, random bytes for the integer ones.
Tensor random_matrix(int64_t rows, int64_t cols, DType dt, Layout layout = Layout::kRowMajor);

}  // namespace sparse24::bench
