// CUDA twins of the FP8 casts (tensor.h: finite_amax, quantize_into) and of to_sm90_meta
// (format.h). The element rule is dtype.h's quantize_f32, the code the CPU runs, so both devices
// write the same bits.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/cast_cuda.h"
#include "cuda/check.h"
#include "cuda/tile.cuh"

namespace sparse24::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTile = 64;  // quantize_tile_kernel: a 64 x 64 tile per block

// The order in which a matrix covers one dense run of memory: 0 row by row, 1 column by column,
// -1 when it has gaps. Elements of a dense run are data[0 .. numel) in that order, which is all a
// max or an element-wise cast needs.
int run_order(const DeviceMatrix& m) {
  if (m.sc == 1 && (m.sr == m.cols || m.rows == 1)) return 0;
  if (m.sr == 1 && (m.sc == m.rows || m.cols == 1)) return 1;
  return -1;
}

// max(acc, |v|) over finite v (NaN and Inf fail the comparison).
__device__ __forceinline__ float max_finite(float acc, float v) {
  const float a = fabsf(v);
  return a <= 3.40282347e38f ? fmaxf(acc, a) : acc;
}

// Block-wide max of non-negative floats into *out (their bit patterns order as unsigned ints).
__device__ __forceinline__ void block_max_into(float v, unsigned* out) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  if (threadIdx.x % 32 == 0 && v > 0.f) atomicMax(out, __float_as_uint(v));
}

// *out = max |x| over finite x. `flat`: the elements are data[0 .. n) (run_order); `vec`: and
// data is 16-byte aligned, so 8 elements at a time go through one vector load.
template <typename T>
__global__ void __launch_bounds__(kThreads) amax_kernel(DeviceMatrix m, bool flat, bool vec, unsigned* out) {
  const T* p = static_cast<const T*>(m.data);
  const int64_t n = m.rows * m.cols, stride = int64_t(gridDim.x) * kThreads;
  const int64_t first = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  float acc = 0.f;
  int64_t scalar_from = 0;
  if (vec) {
    for (int64_t i = first; i < n / 8; i += stride) {
      float x[8];
      load8(p + 8 * i, x);
#pragma unroll
      for (int k = 0; k < 8; ++k) acc = max_finite(acc, x[k]);
    }
    scalar_from = n / 8 * 8;  // the tail
  }
  for (int64_t i = scalar_from + first; i < n; i += stride)
    acc = max_finite(acc, to_f32(p[flat ? i : (i / m.cols) * m.sr + (i % m.cols) * m.sc]));
  block_max_into(acc, out);
}

// dst[i] = quantize(src[i]) over one dense run in the same order on both sides, 8 elements per
// thread (vector loads and one 8-byte store when `vec`).
template <typename S, typename D>
__global__ void __launch_bounds__(kThreads) quantize_flat_kernel(D* dst, const S* src, int64_t n, float scale,
                                                                 bool vec) {
  const int64_t i = (blockIdx.x * int64_t(kThreads) + threadIdx.x) * 8;
  if (i >= n) return;
  if (vec && i + 8 <= n) {
    float x[8];
    load8(src + i, x);
    Vec<D, 8> q;
#pragma unroll
    for (int k = 0; k < 8; ++k) q.v[k] = quantize_f32<D>(x[k], scale);
    *reinterpret_cast<Vec<D, 8>*>(dst + i) = q;
    return;
  }
  for (int64_t k = i; k < min(n, i + 8); ++k) dst[k] = quantize_f32<D>(to_f32(src[k]), scale);
}

// Writes the 64 x 64 tile at (r0, c0), held as floats in shared memory, quantized into dst (any
// strides) along dst's contiguous dimension, 4 elements per thread (one 4-byte store when they
// are consecutive and aligned).
template <typename D>
__device__ __forceinline__ void store_tile(const float (*tile)[kTile + 1], const DeviceMatrix& dst, int64_t r0,
                                           int64_t c0, float scale) {
  const bool down_rows = dst.sr == 1 && dst.sc != 1;  // dst column-major: runs go down a column
  D* out = static_cast<D*>(const_cast<void*>(dst.data));
  for (int e = threadIdx.x; e < kTile * kTile / 4; e += kThreads) {
    const int lane_dim = 4 * (e % (kTile / 4)), other = e / (kTile / 4);
    const int r = down_rows ? lane_dim : other, c = down_rows ? other : lane_dim;  // first of 4
    const int64_t gr = r0 + r, gc = c0 + c;
    if (gr >= dst.rows || gc >= dst.cols) continue;
    Vec<D, 4> q;
#pragma unroll
    for (int k = 0; k < 4; ++k) q.v[k] = quantize_f32<D>(down_rows ? tile[r + k][c] : tile[r][c + k], scale);
    D* at = out + gr * dst.sr + gc * dst.sc;
    const bool whole = down_rows ? gr + 4 <= dst.rows : gc + 4 <= dst.cols;
    const bool unit = down_rows || dst.sc == 1;  // the 4 elements are consecutive in memory
    if (whole && unit && reinterpret_cast<uintptr_t>(at) % 4 == 0) {
      *reinterpret_cast<Vec<D, 4>*>(at) = q;
      continue;
    }
    for (int k = 0; k < 4; ++k) {
      const int64_t rr = down_rows ? gr + k : gr, cc = down_rows ? gc : gc + k;
      if (rr < dst.rows && cc < dst.cols) out[rr * dst.sr + cc * dst.sc] = q.v[k];
    }
  }
}

// Any strides: the 64 x 64 tile at (r0, c0) is read along src's contiguous dimension into shared
// memory, then written into dst and, when also.data is set, into `also` (the FP8 GEMMs' operand
// and its transposed, K-major copy from one read of src).
template <typename S, typename D>
__global__ void __launch_bounds__(kThreads) quantize_tile_kernel(DeviceMatrix dst, DeviceMatrix also, DeviceMatrix src,
                                                                 float scale, bool vec, bool along_rows) {
  __shared__ float tile[kTile][kTile + 1];
  const int64_t r0 = int64_t(blockIdx.y) * kTile, c0 = int64_t(blockIdx.x) * kTile;
  load_tile<S, float, kTile, kTile, kThreads>(src, r0, c0, vec, along_rows, tile);
  __syncthreads();
  store_tile<D>(tile, dst, r0, c0, scale);
  if (also.data) store_tile<D>(tile, also, r0, c0, scale);
}

__global__ void __launch_bounds__(kThreads) scatter_sm90_meta_kernel(uint8_t* out, const uint8_t* codes, int64_t rows,
                                                                     int64_t row_bytes, Sm90Meta g) {
  const int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (i >= rows * row_bytes) return;
  out[g.offset(i / row_bytes, i % row_bytes)] = codes[i];
}

unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

}  // namespace

float finite_amax(const TensorView& x) {
  const DeviceMatrix m = device_matrix(x);
  const bool flat = run_order(m) >= 0;
  const bool vec = flat && reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
  const std::shared_ptr<void> slot = alloc(sizeof(unsigned));
  S24_CUDA_CHECK(cudaMemsetAsync(slot.get(), 0, sizeof(unsigned)));
  const unsigned blocks = std::min(blocks_for((m.rows * m.cols + 7) / 8), 2048u);
  dispatch_input_dtype(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    amax_kernel<T><<<blocks, kThreads>>>(m, flat, vec, static_cast<unsigned*>(slot.get()));
  });
  S24_CUDA_CHECK_LAUNCH("amax_kernel");
  float amax = 0.f;  // the bits of a non-negative float
  copy(&amax, false, slot.get(), true, sizeof(amax));
  return amax;
}

void quantize(const TensorView& dst, const TensorView& src, float scale, const TensorView* also) {
  const DeviceMatrix d = device_matrix(dst), s = device_matrix(src);
  const DeviceMatrix a = also ? device_matrix(*also) : DeviceMatrix{nullptr, 0, 0, 0, 0};
  const bool same_run = !also && run_order(d) >= 0 && run_order(d) == run_order(s);
  dispatch_input_dtype(src.dtype, [&](auto stag) {
    dispatch_fp8_dtype(dst.dtype, [&](auto dtag) {
      using S = typename decltype(stag)::type;
      using D = typename decltype(dtag)::type;
      if (same_run) {
        const int64_t n = src.numel();
        const bool vec = reinterpret_cast<uintptr_t>(src.data) % 16 == 0 && reinterpret_cast<uintptr_t>(dst.data) % 8 == 0;
        quantize_flat_kernel<S, D><<<blocks_for((n + 7) / 8), kThreads>>>(static_cast<D*>(dst.data),
                                                                        static_cast<const S*>(src.data), n, scale, vec);
      } else {
        bool along_rows = false;
        const bool vec = vector_friendly(src, &along_rows);
        const dim3 grid(unsigned((src.cols() + kTile - 1) / kTile), unsigned((src.rows() + kTile - 1) / kTile));
        S24_CHECK(grid.y <= 65535u, kShape, "quantize_into: ", src.describe(), " has too many rows for one launch");
        quantize_tile_kernel<S, D><<<grid, kThreads>>>(d, a, s, scale, vec, along_rows);
      }
    });
  });
  S24_CUDA_CHECK_LAUNCH("quantize kernel");
}

void scatter_sm90_meta(uint8_t* out, const Mask24& mask, const Sm90Meta& g) {
  const int64_t n = mask.rows() * mask.row_bytes();
  if (n == 0) return;
  scatter_sm90_meta_kernel<<<blocks_for(n), kThreads>>>(out, mask.codes().data<uint8_t>(), mask.rows(),
                                                        mask.row_bytes(), g);
  S24_CUDA_CHECK_LAUNCH("scatter_sm90_meta_kernel");
}

}  // namespace sparse24::cuda
