// src/gemm/sm90/sm90_kernel.h: one compiled CUTLASS sm90 sparse GEMM, as the dispatcher sees it.
//
// Every kernel computes  D (m x n) = alpha * S B + beta * D + bias[i] on row i of D (those
// without a source operand, reads_source false, only with beta == 0), S: m x k 2:4 (compressed values m x k/2 row-major, metadata in the sm90 layout of the kernel's
// K tile: docs/FORMAT.md), B: k x n, D: m x n, fp32 accumulation. The list of kernels is
// kernels.def; this header has no CUTLASS in it, so the dispatcher compiles fast.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sparse24/dtype.h"

namespace sparse24::gemm {

struct Sm90Args {
  const char* name = "";         // the kernel's, for error messages
  int m = 0, n = 0, k = 0;
  const void* a = nullptr;       // compressed values, m x k/2 row-major
  const uint8_t* e = nullptr;    // metadata, sm90 layout
  const void* b = nullptr;       // k x n, K-major (column-major) or N-major (row-major)
  int64_t ldb = 0;               // elements between consecutive columns (K-major) or rows
  void* d = nullptr;             // m x n, column- or row-major; also the source when beta != 0
  int64_t ldd = 0;
  const void* bias = nullptr;    // m elements of D's dtype, or null
  float alpha = 1.f, beta = 0.f;
  int sm_count = 0;              // of the current device
  // Device scratch of at least `bytes` (the dispatcher's growing buffer).
  void* (*workspace)(size_t bytes) = nullptr;
};

// The output tiles a grid of tile_m x tile_n tiles in cluster_m x cluster_n clusters launches for
// an m x n output: whole clusters, so tiles past the output's edge count too (each runs its whole
// K loop).
inline int64_t grid_tiles(int64_t m, int64_t n, int tile_m, int tile_n, int cluster_m, int cluster_n) {
  const int64_t cm = int64_t(tile_m) * cluster_m, cn = int64_t(tile_n) * cluster_n;
  return (m + cm - 1) / cm * cluster_m * ((n + cn - 1) / cn * cluster_n);
}

struct Sm90Kernel {
  const char* name;              // kernels.def's: dtypes, majors, tile, cluster, schedule
  DType a, b, d;                 // S values, B, D (and bias) dtypes
  bool b_k_major, d_col_major;   // the majors of B and D
  int tile_m, tile_n;            // the output tile of one CTA
  int cluster_m, cluster_n;      // CTAs per cluster along m and n (the grid is whole clusters)
  int tile_k;                    // K tile: 64 reads MetaLayout kSm90K64, 128 kSm90K128
  bool reads_source;             // false: no beta * D term, the kernel runs only calls with beta == 0
  // Launches on the default stream; throws kShape when CUTLASS refuses the arguments, kDevice
  // when the launch fails.
  void (*run)(const Sm90Args& args);
};

}  // namespace sparse24::gemm
