// src/cuda/tile.cuh: a device matrix view and the coalesced tile loader the transform kernels share.
#pragma once

#include <cstdint>

#include "sparse24/dtype.h"
#include "cuda/runtime.h"
#include "sparse24/tensor.h"

namespace sparse24::cuda {

// A matrix in device memory: element (r, c) at data[r * sr + c * sc].
struct DeviceMatrix {
  const void* data;
  int64_t rows, cols, sr, sc;
};
inline DeviceMatrix device_matrix(const TensorView& v) {
  return {v.data, v.rows(), v.cols(), v.strides[0], v.strides[1]};
}

// Loads the TR x TC tile at (r0, c0) into shared memory as float. Threads run along the
// contiguous dimension of the input (columns of a row-major matrix, rows of a column-major one),
// so every warp reads consecutive addresses. Elements outside the matrix read as 0.
template <typename In, int TR, int TC, int THREADS>
__device__ __forceinline__ void load_tile(const DeviceMatrix& m, int64_t r0, int64_t c0,
                                          float (*tile)[TC + 1]) {
  const In* base = static_cast<const In*>(m.data);
  const bool col_major = m.sr == 1 && m.sc != 1;
#pragma unroll 4
  for (int e = threadIdx.x; e < TR * TC; e += THREADS) {
    const int r = col_major ? e % TR : e / TC;
    const int c = col_major ? e / TR : e % TC;
    const int64_t gr = r0 + r, gc = c0 + c;
    tile[r][c] = (gr < m.rows && gc < m.cols) ? to_f32(base[gr * m.sr + gc * m.sc]) : 0.f;
  }
}

// Atomically lowers *slot to idx: the first (row-major) position any thread reports (see
// reset_report_slot in runtime.h).
__device__ __forceinline__ void report_first(unsigned long long* slot, int64_t idx) {
  atomicMin(slot, static_cast<unsigned long long>(idx));
}

}  // namespace sparse24::cuda
