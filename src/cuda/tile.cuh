// src/cuda/tile.cuh: device matrix views, vector loads and stores, element access and paired
// conversions, and the coalesced tile loader the transform kernels share.
#pragma once

#include <cstdint>
#include <type_traits>

#include "cuda/runtime.h"
#include "sparse24/dtype.h"
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

// True when runs of 8 consecutive elements along the contiguous dimension (columns of a
// row-major matrix, rows of a column-major one) start 16-byte aligned: the vector loads below
// then apply. `along_rows` is true for row-major.
inline bool vector_friendly(const TensorView& v, bool* along_rows) {
  const int64_t es = dtype_size(v.dtype);
  const bool aligned = reinterpret_cast<uintptr_t>(v.data) % 16 == 0;
  if (v.strides[1] == 1 && v.cols() % 8 == 0 && (v.strides[0] * es) % 16 == 0) {
    *along_rows = true;
    return aligned;
  }
  if (v.strides[0] == 1 && v.rows() % 8 == 0 && (v.strides[1] * es) % 16 == 0) {
    *along_rows = false;
    return aligned;
  }
  return false;
}

// N elements of type T as one aligned block, for single vector loads and stores.
template <typename T, int N>
struct alignas(sizeof(T) * N >= 16 ? 16 : sizeof(T) * N) Vec {
  T v[N];
};

// An element as the tile holds it: converted to float, or kept raw (T = In).
template <typename T, typename In>
__device__ __forceinline__ T as_tile(In v) {
  if constexpr (std::is_same_v<T, In>) return v;
  else return to_f32(v);
}

// Loads 8 consecutive elements (16-byte aligned) as T (float, or In itself).
template <typename In, typename T>
__device__ __forceinline__ void load8(const In* p, T x[8]) {
  if constexpr (sizeof(In) == 4) {
    const Vec<In, 4> a = reinterpret_cast<const Vec<In, 4>*>(p)[0], b = reinterpret_cast<const Vec<In, 4>*>(p)[1];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      x[i] = as_tile<T>(a.v[i]);
      x[4 + i] = as_tile<T>(b.v[i]);
    }
  } else {
    const Vec<In, 8> a = *reinterpret_cast<const Vec<In, 8>*>(p);
#pragma unroll
    for (int i = 0; i < 8; ++i) x[i] = as_tile<T>(a.v[i]);
  }
}

// Element i of input values held as 32-bit words: a float per word, or two 16-bit values per
// word, the low half first (how the row kernels keep their vector loads).
template <typename In>
__device__ __forceinline__ In word_element(const uint32_t* w, int i) {
  if constexpr (sizeof(In) == 4) return __uint_as_float(w[i]);
  else return In{uint16_t(w[i / 2] >> (16 * (i % 2)))};
}

// An input as float by the hardware conversion alone: exact for every non-NaN value (a NaN may
// come out with another payload; callers send NaN to to_f32, which keeps it).
template <typename In>
__device__ __forceinline__ float to_f32_non_nan(In v) {
  if constexpr (std::is_same_v<In, f16_t>) return __half2float(__ushort_as_half(v.bits));
  else return to_f32(v);
}

// Two finite floats stored with scale 1 as a packed pair of fp16 or bf16 (x0 in the low half):
// from_f32's bits by one hardware conversion. With kSaturate, .satfinite (an overflow after
// rounding becomes the largest finite value) equals from_f32's clamp before rounding for finite
// inputs.
template <typename Out>
__device__ __forceinline__ uint32_t pack_pair(float x0, float x1, Overflow ov) {
  constexpr bool f16 = std::is_same_v<Out, f16_t>;
  uint32_t r;
  if (ov == Overflow::kSaturate) {
    if constexpr (f16) asm("cvt.rn.satfinite.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(x1), "f"(x0));
    else asm("cvt.rn.satfinite.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(x1), "f"(x0));
  } else {
    if constexpr (f16) asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(x1), "f"(x0));
    else asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(x1), "f"(x0));
  }
  return r;
}

// Loads the TR x TC tile at (r0, c0) into shared memory as T (float, or In itself; TC a multiple
// of 8). Threads run along the contiguous dimension of the input so that every warp reads
// consecutive addresses; with `vec` (see vector_friendly) each thread moves 8 elements with
// 16-byte loads. Elements outside the matrix read as zero bits.
// PITCH is the tile's row pitch in elements (TC + padding against shared-memory bank conflicts).
template <typename In, typename T, int TR, int TC, int THREADS, int PITCH = TC + 1>
__device__ __forceinline__ void load_tile(const DeviceMatrix& m, int64_t r0, int64_t c0, bool vec,
                                          bool along_rows, T (*tile)[PITCH]) {
  const In* base = static_cast<const In*>(m.data);
  if (vec && along_rows) {
    for (int e = threadIdx.x; e < TR * TC / 8; e += THREADS) {
      const int r = e / (TC / 8), c = 8 * (e % (TC / 8));
      const int64_t gr = r0 + r, gc = c0 + c;
      T x[8] = {};
      if (gr < m.rows && gc < m.cols) load8(base + gr * m.sr + gc, x);
#pragma unroll
      for (int i = 0; i < 8; ++i) tile[r][c + i] = x[i];
    }
  } else if (vec) {
    for (int e = threadIdx.x; e < TR * TC / 8; e += THREADS) {
      const int c = e / (TR / 8), r = 8 * (e % (TR / 8));
      const int64_t gr = r0 + r, gc = c0 + c;
      T x[8] = {};
      if (gr < m.rows && gc < m.cols) load8(base + gc * m.sc + gr, x);
#pragma unroll
      for (int i = 0; i < 8; ++i) tile[r + i][c] = x[i];
    }
  } else {
    const bool col_major = m.sr == 1 && m.sc != 1;
    for (int e = threadIdx.x; e < TR * TC; e += THREADS) {
      const int r = col_major ? e % TR : e / TC;
      const int c = col_major ? e / TR : e % TC;
      const int64_t gr = r0 + r, gc = c0 + c;
      tile[r][c] = (gr < m.rows && gc < m.cols) ? as_tile<T>(base[gr * m.sr + gc * m.sc]) : T{};
    }
  }
}

// Atomically lowers *slot to idx: the first (row-major) position any thread reports (see
// reset_report_slot in runtime.h).
__device__ __forceinline__ void report_first(unsigned long long* slot, int64_t idx) {
  atomicMin(slot, static_cast<unsigned long long>(idx));
}

}  // namespace sparse24::cuda
