// The SM clock as the GPU runs it now, measured: one block spins for a fixed number of cycles
// (clock64) and CUDA events time it. A GPU that throttles (heat, power) shows a clock far below
// its peak even for this one-SM load; the benchmark commands print it before and after their
// tables, since a throttled GPU makes every time slow and unsteady.
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "bench/bench.h"
#include "bench/timing.h"
#include "cuda/runtime.h"
#include "sparse24/error.h"

namespace sparse24::bench {
namespace {

// Spins until `cycles` SM cycles have passed; writes the cycles counted.
__global__ void spin(long long cycles, long long* counted) {
  const long long start = clock64();
  long long now = start;
  while (now - start < cycles) now = clock64();
  *counted = now - start;
}

}  // namespace

std::string sm_clock_report(const char* when) {
  int peak_khz = 0, gpu = 0;
  check(cudaGetDevice(&gpu), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&peak_khz, cudaDevAttrClockRate, gpu), "cudaDeviceGetAttribute");
  const std::shared_ptr<void> buffer = cuda::alloc(sizeof(long long));
  long long* counted = static_cast<long long*>(buffer.get());
  spin<<<1, 1>>>(5'000'000, counted);  // wakes an idle GPU up to its clock
  Timer timer;
  timer.start();
  spin<<<1, 1>>>(20'000'000, counted);
  const double ms = timer.stop_ms();
  check(cudaGetLastError(), "the clock's spin kernel");
  long long cycles = 0;
  cuda::copy(&cycles, false, counted, true, sizeof cycles);
  const double mhz = double(cycles) / (ms * 1e3), peak_mhz = peak_khz / 1e3;
  const double share = mhz / peak_mhz;
  std::string report = detail::concat("SM clock ", when, ": ", int(mhz + 0.5), " MHz (", int(100 * share + 0.5),
                                      "% of its ", int(peak_mhz + 0.5), " MHz peak; one SM spinning).");
  if (share < 0.8) {
    report += " WARNING: the GPU is throttled (heat or power?): times are slow and drift; compare "
              "only ratios measured close together, or let the GPU cool and run again.";
  }
  return report;
}

}  // namespace sparse24::bench
