// CUDA-event timing and random inputs for the benchmark commands.
#include "bench/timing.h"

#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <vector>

#include "sparse24/error.h"

namespace sparse24::bench {

void check(cudaError_t e, const char* what) {
  S24_CHECK(e == cudaSuccess, kDevice, what, ": ", cudaGetErrorString(e));
}

Timer::Timer() {
  check(cudaEventCreate(&start_), "cudaEventCreate");
  check(cudaEventCreate(&stop_), "cudaEventCreate");
}
Timer::~Timer() {
  cudaEventDestroy(start_);
  cudaEventDestroy(stop_);
}
void Timer::start() { check(cudaEventRecord(start_), "cudaEventRecord"); }
double Timer::stop_ms() {
  check(cudaEventRecord(stop_), "cudaEventRecord");
  check(cudaEventSynchronize(stop_), "cudaEventSynchronize");
  float ms = 0.f;
  check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
  return ms;
}

double median_of(std::vector<double>& v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double time_us(int rotate, const std::function<void(int)>& fn, const char* range) {
  for (int i = 0; i < 2 * rotate; ++i) fn(i % rotate);  // warm-up: module load, first touches
  check(cudaDeviceSynchronize(), "warm-up");
  const int per_sample = std::max(rotate, 10), samples = 15;
  Timer timer;
  std::vector<double> t;
  if (range) nvtxRangePushA(range);
  for (int s = 0; s < samples; ++s) {
    timer.start();
    for (int i = 0; i < per_sample; ++i) fn(i % rotate);
    t.push_back(1e3 * timer.stop_ms() / per_sample);
  }
  if (range) nvtxRangePop();
  check(cudaGetLastError(), "a benchmarked kernel");
  return median_of(t);
}

Tensor random_matrix(int64_t rows, int64_t cols, DType dt, Layout layout) {
  Tensor host = Tensor::matrix(rows, cols, dt, layout);
  uint32_t state = 12345;
  dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = host.data<T>();
    for (int64_t i = 0; i < rows * cols; ++i) {
      state = state * 1664525u + 1013904223u;
      const float u = float(int32_t(state >> 8) - (1 << 23)) / float(1 << 23);
      if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, int32_t>)
        p[i] = T(state >> 24);
      else
        p[i] = from_f32<T>(u, 1.f, Overflow::kPyTorch);
    }
  });
  return host;
}

}  // namespace sparse24::bench
