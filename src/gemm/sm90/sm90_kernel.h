// src/gemm/sm90/sm90_kernel.h: one compiled CUTLASS sm90 sparse GEMM, as the dispatcher sees it.
//
// Every kernel computes  D (m x n) = alpha * S B + beta * D + bias[i] on row i of D,
// S: m x k 2:4 (compressed values m x k/2 row-major, metadata in the sm90 layout of the kernel's
// K tile: docs/FORMAT.md), B: k x n, D: m x n, fp32 accumulation. The list of kernels is
// kernels.def; this header has no CUTLASS in it, so the dispatcher compiles fast.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "sparse24/dtype.h"

namespace sparse24::gemm {

struct Sm90Args {
  int m = 0, n = 0, k = 0;
  const void* a = nullptr;       // compressed values, m x k/2 row-major
  const uint8_t* e = nullptr;    // metadata, sm90 layout
  const void* b = nullptr;       // k x n, K-major (column-major) or N-major (row-major)
  int64_t ldb = 0;               // elements between consecutive columns (K-major) or rows
  void* d = nullptr;             // m x n, column- or row-major; also the source when beta != 0
  int64_t ldd = 0;
  const void* bias = nullptr;    // m elements of the kernel's bias dtype, or null
  float alpha = 1.f, beta = 0.f;
  int sm_count = 0;              // of the current device
  // Device scratch of at least `bytes` (the dispatcher's growing buffer).
  void* (*workspace)(size_t bytes) = nullptr;
};

struct Sm90Kernel {
  const char* name;
  DType a, b, d, bias;           // S values, B, D and bias dtypes
  bool b_k_major, d_col_major;   // the majors of B and D
  int tile_m, tile_n, tile_k, cluster_m, cluster_n;
  const char* schedule;          // "cooperative", "ping-pong", "cooperative stream-K", ...
  // Launches on the default stream; returns "" or why CUTLASS refused the arguments.
  std::string (*run)(const Sm90Args& args);
};

}  // namespace sparse24::gemm
