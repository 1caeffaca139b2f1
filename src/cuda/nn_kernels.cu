// The GPT-2 layers on the GPU that an FFN block needs besides its GEMMs: GELU forward and
// backward, and the bias gradient. Each kernel's CPU twin (cpu/nn_cpu.cpp) defines what it
// computes:
//   * GELU: the per-element rules gelu_value / gelu_grad of cpu/nn_cpu.h, called by both
//     backends (fp32 math, one rounding to the storage type). Only expf differs (CUDA's against
//     glibc's, an ulp or two of fp32), so results match the CPU's to that, before rounding.
//   * Bias gradient: the column sums of dout added once to dbias, as the CPU's bias_backward,
//     but summed in a fixed tree rather than in row order (the same bits on every run, no
//     atomics; not the CPU's bits).
#include <algorithm>
#include <mutex>

#include "cpu/nn_cpu.h"
#include "cuda/check.h"
#include "cuda/nn_cuda.h"
#include "cuda/runtime.h"
#include "cuda/tile.cuh"

namespace sparse24::cuda::nn {

namespace {

constexpr int kThreads = 256;
constexpr int kPer = 8;  // elements per thread in the GELU kernels: one 16-byte load of fp16

// An element as float for arithmetic: to_f32, except that fp16 takes the hardware conversion
// alone (to_f32's check that keeps NaN payloads cost the bias kernels a third of their speed and
// more, on an H100). Every value converts exactly; a NaN stays a NaN, and neither GELU nor a sum
// keeps payloads.
template <typename T>
__device__ __forceinline__ float value_of(T v) {
  return to_f32(v);
}
template <>
__device__ __forceinline__ float value_of(f16_t v) {
  return __half2float(__ushort_as_half(v.bits));
}

// V consecutive elements at p as float: V = 8 as 16-byte vector loads (p 16-byte aligned, as
// tile.cuh's load8), V = 1 as one element.
template <int V, typename T>
__device__ __forceinline__ void load_run(const T* p, float x[V]) {
  static_assert(V == 1 || V == 8, "runs of 1 or 8");
  if constexpr (V == 1) {
    x[0] = value_of(*p);
  } else if constexpr (sizeof(T) == 4) {
    const Vec<T, 4> a = reinterpret_cast<const Vec<T, 4>*>(p)[0], b = reinterpret_cast<const Vec<T, 4>*>(p)[1];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      x[k] = value_of(a.v[k]);
      x[4 + k] = value_of(b.v[k]);
    }
  } else {
    const Vec<T, 8> a = *reinterpret_cast<const Vec<T, 8>*>(p);
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] = value_of(a.v[k]);
  }
}

// ---------------------------------------------------------------------------------------------
// GELU. Thread t owns elements 8t .. 8t + 7: with `vec` (every pointer 16-byte aligned) it moves
// them with vector loads and stores, otherwise (and for the last, partial group) one by one.
// Each thread reads its elements before writing them, so out may be inp, dinp inp or dout.

// Stores 8 elements at p (16-byte aligned).
template <typename T>
__device__ __forceinline__ void store8(T* p, const Vec<T, kPer>& v) {
  *reinterpret_cast<Vec<T, kPer>*>(p) = v;
}

// out[i] = gelu(inp[i]).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gelu_forward_kernel(T* out, const T* inp, int64_t n, bool vec) {
  const int64_t i0 = (blockIdx.x * int64_t(kThreads) + threadIdx.x) * kPer;
  if (vec && i0 + kPer <= n) {
    float x[kPer];
    load_run<kPer>(inp + i0, x);
    Vec<T, kPer> y;
#pragma unroll
    for (int k = 0; k < kPer; ++k) y.v[k] = from_f32<T>(cpu::nn::gelu_value(x[k]), 1.f, Overflow::kPyTorch);
    store8(out + i0, y);
    return;
  }
  for (int64_t i = i0; i < n && i < i0 + kPer; ++i)
    out[i] = from_f32<T>(cpu::nn::gelu_value(value_of(inp[i])), 1.f, Overflow::kPyTorch);
}

// dinp[i] = gelu'(inp[i]) * dout[i].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gelu_backward_kernel(T* dinp, const T* inp, const T* dout, int64_t n, bool vec) {
  const int64_t i0 = (blockIdx.x * int64_t(kThreads) + threadIdx.x) * kPer;
  if (vec && i0 + kPer <= n) {
    float x[kPer], d[kPer];
    load_run<kPer>(inp + i0, x);
    load_run<kPer>(dout + i0, d);
    Vec<T, kPer> y;
#pragma unroll
    for (int k = 0; k < kPer; ++k)
      y.v[k] = from_f32<T>(cpu::nn::gelu_grad(x[k]) * d[k], 1.f, Overflow::kPyTorch);
    store8(dinp + i0, y);
    return;
  }
  for (int64_t i = i0; i < n && i < i0 + kPer; ++i)
    dinp[i] = from_f32<T>(cpu::nn::gelu_grad(value_of(inp[i])) * value_of(dout[i]), 1.f, Overflow::kPyTorch);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
unsigned gelu_blocks(int64_t n) { return unsigned((n + kThreads * kPer - 1) / (kThreads * kPer)); }

// ---------------------------------------------------------------------------------------------
// Bias gradient: column sums in two passes, each a fixed tree.
//   Pass 1: block (x, y) sums its strip of columns over row chunk y (chunk_rows rows) into one
//           partial per column: partial[y + c * chunks] (column-major, so that pass 2 reads each
//           column's partials contiguously).
//   Pass 2: the column sums of the partials, added to dbias.
// A single chunk (short dout, or very wide) skips the partials: pass 1 adds to dbias itself.
// The kernel and the chunking are a function of the shape, the strides and whether the data is
// 16-byte aligned (not of the GPU or of scheduling), and so are the bits.
//
// Where a kernel's sums go: chunk y's sum of column c is stored at out[y * row + c * col], or,
// with `add`, added there (dbias: row 0, col 1).
struct SumsOut {
  float* out;
  int64_t row, col;
  bool add;
};
__device__ __forceinline__ void put(const SumsOut& o, int64_t y, int64_t c, float v) {
  float* p = o.out + y * o.row + c * o.col;
  *p = o.add ? *p + v : v;
}

constexpr int kLanes = 32;                    // threads of a warp
constexpr int kWarps = kThreads / kLanes;     // warps of a block
constexpr int kTargetBlocks = 512;            // pass 1 aims at this many blocks (fills an H100/H200)
constexpr int64_t kMinChunkRows = 256;        // but gives each block at least this many rows
constexpr int64_t kPartialFloats = 1 << 20;   // and its partials at most this many floats (4 MiB)
// Loads a thread keeps in flight: 4 of fp32, 8 of fp16/bf16 (the same bytes).
template <typename T>
constexpr int kUnroll = sizeof(T) == 4 ? 4 : 8;

// Threads along the columns (row-major dout, or any strides). Block (x, y) owns columns
// x * 32V .. x * 32V + 32V - 1 and the rows of chunk y. Lane l owns V consecutive columns (V = 8:
// a 16-byte run per row, see vector_friendly; V = 1: one element, any strides), warp w the rows
// r0 + w, r0 + w + 8, ...: each thread sums its rows in order, kUnroll loads in flight; then the
// 8 warps' sums meet in shared memory in a fixed tree (w += w + 4, w += w + 2, w += w + 1).
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    column_sums_rows_kernel(DeviceMatrix m, int64_t chunk_rows, SumsOut o) {
  __shared__ float part[kWarps][kLanes * V];
  const int lane = threadIdx.x % kLanes, w = threadIdx.x / kLanes;
  const int64_t c0 = blockIdx.x * int64_t(kLanes * V), c = c0 + int64_t(lane) * V;
  const int64_t r0 = blockIdx.y * chunk_rows, r1 = r0 + chunk_rows < m.rows ? r0 + chunk_rows : m.rows;
  const T* base = static_cast<const T*>(m.data);
  float acc[V] = {};
  if (c < m.cols) {
    const T* p = base + c * m.sc;
    int64_t r = r0 + w;
    for (; r + (kUnroll<T> - 1) * kWarps < r1; r += kUnroll<T> * kWarps) {
      float x[kUnroll<T>][V];
#pragma unroll
      for (int u = 0; u < kUnroll<T>; ++u) load_run<V>(p + (r + u * kWarps) * m.sr, x[u]);
#pragma unroll
      for (int u = 0; u < kUnroll<T>; ++u)
#pragma unroll
        for (int k = 0; k < V; ++k) acc[k] += x[u][k];
    }
    for (; r < r1; r += kWarps) {
      float x[V];
      load_run<V>(p + r * m.sr, x);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += x[k];
    }
  }
#pragma unroll
  for (int k = 0; k < V; ++k) part[w][lane * V + k] = acc[k];
  __syncthreads();
  for (int half = kWarps / 2; half > 0; half /= 2) {
    for (int e = threadIdx.x; e < half * kLanes * V; e += kThreads)
      part[e / (kLanes * V)][e % (kLanes * V)] += part[e / (kLanes * V) + half][e % (kLanes * V)];
    __syncthreads();
  }
  for (int j = threadIdx.x; j < kLanes * V; j += kThreads)
    if (c0 + j < m.cols) put(o, blockIdx.y, c0 + j, part[0][j]);
}

// Threads along the rows (unit row stride: a transposed dout, or pass 2 over the partials).
// Block (x, y) owns columns x * 8 .. x * 8 + 7, one per warp, and the rows of chunk y. Lane l owns
// runs of V consecutive rows (V = 8: 16-byte loads, see vector_friendly; chunk_rows a multiple of
// 8) r0 + lV, r0 + lV + 32V, ... and sums them in order, kUnroll runs in flight; then the warp's 32
// sums meet in a fixed shuffle tree (lane += lane + 16, + 8, + 4, + 2, + 1); lane 0 has the total.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    column_sums_cols_kernel(DeviceMatrix m, int64_t chunk_rows, SumsOut o) {
  constexpr int64_t kStep = kLanes * V;
  const int lane = threadIdx.x % kLanes;
  const int64_t c = blockIdx.x * int64_t(kWarps) + threadIdx.x / kLanes;
  if (c >= m.cols) return;  // the whole warp: no block-wide synchronisation follows
  const int64_t r0 = blockIdx.y * chunk_rows, r1 = r0 + chunk_rows < m.rows ? r0 + chunk_rows : m.rows;
  const T* col = static_cast<const T*>(m.data) + c * m.sc;
  float acc = 0.f;
  int64_t r = r0 + int64_t(lane) * V;
  for (; r + (kUnroll<T> - 1) * kStep < r1; r += kUnroll<T> * kStep) {
    float x[kUnroll<T>][V];
#pragma unroll
    for (int u = 0; u < kUnroll<T>; ++u) load_run<V>(col + (r + u * kStep) * m.sr, x[u]);
#pragma unroll
    for (int u = 0; u < kUnroll<T>; ++u)
#pragma unroll
      for (int k = 0; k < V; ++k) acc += x[u][k];
  }
  for (; r < r1; r += kStep) {
    float x[V];
    load_run<V>(col + r * m.sr, x);
#pragma unroll
    for (int k = 0; k < V; ++k) acc += x[k];
  }
#pragma unroll
  for (int off = kLanes / 2; off > 0; off /= 2) acc += __shfl_down_sync(0xFFFFFFFFu, acc, off);
  if (lane == 0) put(o, blockIdx.y, c, acc);
}

// The kernel that reads a layout coalesced: threads along the rows of a row-major matrix (any
// strides too), along the columns of a column-major one (unit row stride); with 16-byte runs
// where vector_friendly allows.
enum class Reader { kRowsVec8, kRows, kColsVec8, kCols };
Reader reader_of(const TensorView& v) {
  bool along_rows = false;
  if (vector_friendly(v, &along_rows)) return along_rows ? Reader::kRowsVec8 : Reader::kColsVec8;
  return v.strides[0] == 1 ? Reader::kCols : Reader::kRows;
}
// Columns one block covers.
int64_t strip_of(Reader reader) {
  return reader == Reader::kRowsVec8 ? kLanes * 8 : reader == Reader::kRows ? kLanes : kWarps;
}

// One pass over m in chunks of chunk_rows rows.
template <typename T>
void column_sums(Reader reader, const DeviceMatrix& m, int64_t chunk_rows, int64_t chunks, const SumsOut& o) {
  const dim3 grid(unsigned((m.cols + strip_of(reader) - 1) / strip_of(reader)), unsigned(chunks));
  switch (reader) {
    case Reader::kRowsVec8: column_sums_rows_kernel<T, 8><<<grid, kThreads>>>(m, chunk_rows, o); break;
    case Reader::kRows: column_sums_rows_kernel<T, 1><<<grid, kThreads>>>(m, chunk_rows, o); break;
    case Reader::kColsVec8: column_sums_cols_kernel<T, 8><<<grid, kThreads>>>(m, chunk_rows, o); break;
    case Reader::kCols: column_sums_cols_kernel<T, 1><<<grid, kThreads>>>(m, chunk_rows, o); break;
  }
  S24_CUDA_CHECK_LAUNCH("column_sums");
}

// The partials buffer of the current GPU (at most kPartialFloats floats), kept for reuse. The
// mutex is held from pass 1 to pass 2 so that no other thread's pass 1 lands between them.
std::mutex g_partials_mutex;
Scratch& partials_of_current_gpu() {
  static PerGpu<Scratch> buffers;
  return buffers.get();
}

// Both passes for dout of element type T: one chunk adds to dbias directly; several go through
// the partials (pass 2: column_sums_cols_kernel, each column's partials being contiguous).
template <typename T>
void bias_sums(float* dbias, Reader reader, const DeviceMatrix& m, int64_t chunk_rows, int64_t chunks) {
  if (chunks == 1) {
    column_sums<T>(reader, m, chunk_rows, 1, {dbias, 0, 1, true});
    return;
  }
  const std::lock_guard<std::mutex> lock(g_partials_mutex);
  float* partial = static_cast<float*>(partials_of_current_gpu().get(size_t(chunks * m.cols) * sizeof(float)));
  column_sums<T>(reader, m, chunk_rows, chunks, {partial, 1, chunks, false});
  const DeviceMatrix p{partial, chunks, m.cols, 1, chunks};  // chunks x cols, column-major
  column_sums<float>(Reader::kCols, p, chunks, 1, {dbias, 0, 1, true});
}

}  // namespace

void gelu_forward(void* out, const void* inp, DType dtype, int64_t n) {
  if (n == 0) return;
  const bool vec = aligned16(out) && aligned16(inp);
  dispatch_input_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gelu_forward_kernel<T><<<gelu_blocks(n), kThreads>>>(static_cast<T*>(out), static_cast<const T*>(inp), n, vec);
  });
  S24_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
}

void gelu_backward(void* dinp, const void* inp, const void* dout, DType dtype, int64_t n) {
  if (n == 0) return;
  const bool vec = aligned16(dinp) && aligned16(inp) && aligned16(dout);
  dispatch_input_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gelu_backward_kernel<T><<<gelu_blocks(n), kThreads>>>(static_cast<T*>(dinp), static_cast<const T*>(inp),
                                                          static_cast<const T*>(dout), n, vec);
  });
  S24_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
}

void bias_backward(float* dbias, const TensorView& dout) {
  const DeviceMatrix m = device_matrix(dout);
  if (m.rows == 0 || m.cols == 0) return;
  const Reader reader = reader_of(dout);
  // Row chunks: about kTargetBlocks blocks, at least kMinChunkRows rows each, partials that fit;
  // chunk_rows a multiple of 8 (the runs of kColsVec8).
  const int64_t strips = (m.cols + strip_of(reader) - 1) / strip_of(reader);
  int64_t chunks = (kTargetBlocks + strips - 1) / strips;
  chunks = std::min({chunks, (m.rows + kMinChunkRows - 1) / kMinChunkRows, kPartialFloats / m.cols});
  chunks = std::max<int64_t>(chunks, 1);
  const int64_t chunk_rows = ((m.rows + chunks - 1) / chunks + 7) / 8 * 8;
  chunks = (m.rows + chunk_rows - 1) / chunk_rows;

  dispatch_input_dtype(dout.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    bias_sums<T>(dbias, reader, m, chunk_rows, chunks);
  });
}

}  // namespace sparse24::cuda::nn
