// src/cuda/group_kernels.cuh: the CUDA group transforms (magnitude, explicit mask, MVUE24, soft
// threshold): one pass, dense in, compressed values and canonical metadata out. The rule of each
// group is rules24.h's, the code the CPU backend runs, so the two backends agree bit for bit.
// The rule is a template parameter: each rule's kernels are compiled on their own (one .cu file
// per rule), so no kernel carries the instructions of the other rules.
//
// Work unit: one metadata byte = two groups = 8 consecutive elements of a row; it reads 8 inputs
// and writes 4 values and 1 byte. Two kernels feed it:
//   * rows_kernel: row-major input whose rows are 16-byte aligned runs of 8: each thread loads its
//     8 elements straight from global memory with vector loads (no shared memory);
//   * tile_kernel: anything else (notably the column-major dY^T of the weight gradient): a
//     32 x 64 tile goes through shared memory so that reads run along the contiguous dimension
//     and writes along rows.
#pragma once

#include "core/rules24.h"
#include "cuda/check.h"
#include "cuda/tile.cuh"
#include "cuda/transforms_cuda.h"

namespace sparse24::cuda::group {

constexpr int kThreads = 256;
constexpr int kTileR = 32, kTileC = 64;  // tile_kernel: 8 metadata bytes per tile row

struct GroupParams {
  void* values;                 // rows x cols/2, row-major, of the storage type
  uint8_t* meta;                // rows x row_bytes
  int64_t rows, groups, row_bytes;
  const uint8_t* mask_meta;     // kMask: the mask's canonical metadata
  uint64_t seed;                // kMvue
  float beta, scale;
  Overflow overflow;
  unsigned long long* bad;      // NonFinite::kError: first non-finite index; null under kPropagate
  uint8_t* hw_meta;             // the sm90 metadata, written beside the canonical one; or null
  Sm90Meta hw;                  // its geometry
};

// A kept input as the storage type: the raw bits when nothing changes them (same type, no scale),
// else converted as the CPU does (from_f32 of the exact float value).
template <typename In, typename Out>
__device__ __forceinline__ Out store_value(In v, float scale, Overflow ov) {
  if constexpr (std::is_same_v<In, Out>) {
    if (scale == 1.f) return v;  // finite values: from_f32(to_f32(v)) == v exactly
  }
  return from_f32<Out>(to_f32(v), scale, ov);
}

// An input as float, exact for every non-NaN value (a NaN may come out with another payload: the
// MVUE fast path below sends any group holding one to the general path, which converts again).
template <typename In>
__device__ __forceinline__ float to_f32_non_nan(In v) {
  if constexpr (std::is_same_v<In, f16_t>) return __half2float(__ushort_as_half(v.bits));
  else return to_f32(v);
}

// A non-NaN value as the storage type, exactly as from_f32 (which also handles NaN) stores it.
// (With a scale the quotient v / scale may still be NaN: that case stays with from_f32.)
template <typename Out>
__device__ __forceinline__ Out from_f32_non_nan(float v, float scale, Overflow ov) {
  if constexpr (std::is_same_v<Out, f16_t>) {
    if (scale != 1.f) return from_f32<Out>(v, scale, ov);
    return {__half_as_ushort(__float2half_rn(ov == Overflow::kSaturate ? fminf(fmaxf(v, -65504.f), 65504.f) : v))};
  } else if constexpr (std::is_same_v<Out, bf16_t>) {
    if (scale != 1.f) return from_f32<Out>(v, scale, ov);
    constexpr float kMax = 3.38953139e38f;
    return {__bfloat16_as_ushort(__float2bfloat16_rn(ov == Overflow::kSaturate ? fminf(fmaxf(v, -kMax), kMax) : v))};
  } else {
    return from_f32<Out>(v, scale, ov);
  }
}

// The integer magnitude keys (rules::magnitude_key) of a group's 4 raw inputs; whether all are
// finite. When `report` and p.bad is set, a non-finite input reports its row-major index (the
// group's first element is at `first`).
template <typename In>
__device__ __forceinline__ bool group_keys(const In g[4], uint32_t key[4], int64_t first, bool report,
                                           const GroupParams& p) {
  bool finite = true;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    key[i] = rules::magnitude_key(g[i]);
    finite = finite && key[i] < rules::non_finite_key(In{});
  }
  if (!finite && p.bad && report) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (key[i] >= rules::non_finite_key(In{})) report_first(p.bad, first + i);
  }
  return finite;
}

// MVUE: the two groups of one metadata byte (4 values and the byte), bit for bit what
// process_byte's general path (rules::apply_group) gives. Fast path per group: the raw inputs
// converted without NaN handling and S = sum(|x| + eps) < 2^125, which holds exactly when every
// input is finite and the sums stay far from overflow (always for fp16 inputs); then rules::mvue
// runs with the range-checked reciprocals of rcp_normal, and its outputs (|v| <= S) are neither
// NaN nor infinite. Anything else (NaN/Inf, huge fp32/bf16 values) takes the general path.
template <typename In, typename Out>
__device__ __forceinline__ uint8_t mvue_byte(const In raw[8], int64_t row, int64_t byte, bool both,
                                             const GroupParams& p, Vec<Out, 4>& out) {
  const Philox4 words = mvue_words(p.seed, uint64_t(row * p.row_bytes + byte));
  uint8_t meta = 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const In* g = raw + 4 * h;
    const float u0 = philox_uniform(words.v[2 * h]), u1 = philox_uniform(words.v[2 * h + 1]);
    const float x[4] = {to_f32_non_nan(g[0]), to_f32_non_nan(g[1]), to_f32_non_nan(g[2]), to_f32_non_nan(g[3])};
    // rules::mvue's own S, formed the same way (the compiler shares it).
    float a[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = rules::abs_f(x[i]) + kMvueEps;
    const float s = ((a[0] + a[1]) + a[2]) + a[3];
    rules::Pick k;
    if (s < 0x1p125f) {
      float v0, v1;
      k = rules::mvue(x, u0, u1, kMvueEps, &v0, &v1);
      out.v[2 * h] = from_f32_non_nan<Out>(v0, p.scale, p.overflow);
      out.v[2 * h + 1] = from_f32_non_nan<Out>(v1, p.scale, p.overflow);
    } else {
      uint32_t key[4];
      (void)group_keys(g, key, row * 4 * p.groups + 8 * byte + 4 * h, h == 0 || both, p);
      const float xs[4] = {to_f32(g[0]), to_f32(g[1]), to_f32(g[2]), to_f32(g[3])};
      float v0 = 0.f, v1 = 0.f;
      k = rules::apply_group(xs, rules::GroupRule::kMvue, 0, u0, u1, p.beta, &v0, &v1);
      out.v[2 * h] = from_f32<Out>(v0, p.scale, p.overflow);
      out.v[2 * h + 1] = from_f32<Out>(v1, p.scale, p.overflow);
    }
    if (h == 0 || both) meta = uint8_t(meta | (group_code(k.i0, k.i1) << (4 * h)));
  }
  return meta;
}

// Stores one byte's 4 values (2 when the row's last byte holds one group).
template <typename Out>
__device__ __forceinline__ void store_values(const Vec<Out, 4>& out, int64_t row, int64_t byte, bool both,
                                             const GroupParams& p) {
  Out* dst = static_cast<Out*>(p.values) + row * 2 * p.groups + 4 * byte;
  if (both && p.groups % 2 == 0) {
    *reinterpret_cast<Vec<Out, 4>*>(dst) = out;  // 4 values, aligned: every row starts at a multiple of 4
  } else {
    dst[0] = out.v[0];
    dst[1] = out.v[1];
    if (both) {
      dst[2] = out.v[2];
      dst[3] = out.v[3];
    }
  }
}

// Stores one byte's values and its metadata (canonical, and sm90 when asked).
template <typename Out>
__device__ __forceinline__ void store_byte(const Vec<Out, 4>& out, uint8_t meta, int64_t row, int64_t byte, bool both,
                                           const GroupParams& p) {
  store_values<Out>(out, row, byte, both, p);
  p.meta[row * p.row_bytes + byte] = meta;
  if (p.hw_meta) p.hw_meta[p.hw.offset(row, byte)] = meta;
}

// The two groups of metadata byte `byte` of row `row`, from their 8 raw inputs. Magnitude and
// explicit-mask groups with finite values are chosen on integer keys (rules::magnitude_key) and
// copy or convert only the two kept values; everything else goes through rules::apply_group on
// floats. Both give the CPU's results bit for bit.
template <rules::GroupRule R, typename In, typename Out>
__device__ __forceinline__ void process_byte(const In raw[8], int64_t row, int64_t byte, const GroupParams& p) {
  const int64_t g0 = 2 * byte;
  const bool both = g0 + 1 < p.groups;
  if constexpr (R == rules::GroupRule::kMvue) {
    Vec<Out, 4> out;
    const uint8_t meta = mvue_byte<In, Out>(raw, row, byte, both, p, out);
    store_byte<Out>(out, meta, row, byte, both, p);
    return;
  }
  constexpr bool mask_rule = R == rules::GroupRule::kMask;
  const uint8_t mask_byte = mask_rule ? p.mask_meta[row * p.row_bytes + byte] : 0;
  Philox4 words{{0u, 0u, 0u, 0u}};  // MVUE: one Philox call for both groups
  if constexpr (R == rules::GroupRule::kMvue) words = mvue_words(p.seed, uint64_t(row * p.row_bytes + byte));
  Vec<Out, 4> out;
  uint8_t meta = 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const In* g = raw + 4 * h;
    uint32_t key[4];
    const bool finite = group_keys(g, key, row * 4 * p.groups + 4 * (g0 + h), h == 0 || both, p);
    const uint8_t mask_code = uint8_t((mask_byte >> (4 * h)) & 0xF);
    rules::Pick k;
    if (finite && (mask_rule || R == rules::GroupRule::kMagnitude)) {
      k = mask_rule ? rules::Pick{mask_code & 3, mask_code >> 2} : rules::top2(key);
      out.v[2 * h] = store_value<In, Out>(rules::pick4(g, k.i0), p.scale, p.overflow);
      out.v[2 * h + 1] = store_value<In, Out>(rules::pick4(g, k.i1), p.scale, p.overflow);
    } else {
      const float x[4] = {to_f32(g[0]), to_f32(g[1]), to_f32(g[2]), to_f32(g[3])};
      float v0 = 0.f, v1 = 0.f;
      k = rules::apply_group(x, R, mask_code, philox_uniform(words.v[2 * h]),
                             philox_uniform(words.v[2 * h + 1]), p.beta, &v0, &v1);
      out.v[2 * h] = from_f32<Out>(v0, p.scale, p.overflow);
      out.v[2 * h + 1] = from_f32<Out>(v1, p.scale, p.overflow);
    }
    if (h == 0 || both) meta = uint8_t(meta | (group_code(k.i0, k.i1) << (4 * h)));
  }
  store_byte<Out>(out, meta, row, byte, both, p);
}

// Block (32, 8): a warp takes 32 consecutive metadata bytes (256 elements) of one row.
template <rules::GroupRule R, typename In, typename Out>
__global__ void __launch_bounds__(kThreads) rows_kernel(DeviceMatrix in, GroupParams p) {
  const int64_t byte = int64_t(blockIdx.x) * 32 + threadIdx.x, row = int64_t(blockIdx.y) * 8 + threadIdx.y;
  if (byte >= p.row_bytes || row >= p.rows) return;
  In x[8];
  load8(static_cast<const In*>(in.data) + row * in.sr + 8 * byte, x);
  process_byte<R, In, Out>(x, row, byte, p);
}

template <rules::GroupRule R, typename In, typename Out>
__global__ void __launch_bounds__(kThreads) tile_kernel(DeviceMatrix in, GroupParams p, bool vec, bool along_rows) {
  __shared__ In tile[kTileR][kTileC + 1];
  const int64_t r0 = int64_t(blockIdx.y) * kTileR, c0 = int64_t(blockIdx.x) * kTileC;
  load_tile<In, In, kTileR, kTileC, kThreads>(in, r0, c0, vec, along_rows, tile);
  __syncthreads();
  const int r = threadIdx.x / 8, b = threadIdx.x % 8;  // tile row, metadata byte
  const int64_t row = r0 + r, byte = c0 / 8 + b;
  if (row >= p.rows || byte >= p.row_bytes) return;
  In x[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) x[i] = tile[r][8 * b + i];
  process_byte<R, In, Out>(x, row, byte, p);
}

template <rules::GroupRule R, typename In, typename Out>
void launch(const TensorView& in, const GroupParams& p) {
  bool along_rows = false;
  const bool vec = vector_friendly(in, &along_rows);
  if (vec && along_rows) {
    const dim3 grid(unsigned((p.row_bytes + 31) / 32), unsigned((p.rows + 7) / 8));
    S24_CHECK(grid.y <= 65535u, kShape, "CUDA transforms: ", in.describe(), " has too many rows for one launch");
    rows_kernel<R, In, Out><<<grid, dim3(32, 8)>>>(device_matrix(in), p);
  } else {
    const dim3 grid(unsigned((in.cols() + kTileC - 1) / kTileC), unsigned((in.rows() + kTileR - 1) / kTileR));
    S24_CHECK(grid.y <= 65535u, kShape, "CUDA transforms: ", in.describe(), " has too many rows for one launch");
    tile_kernel<R, In, Out><<<grid, kThreads>>>(device_matrix(in), p, vec, along_rows);
  }
  S24_CUDA_CHECK_LAUNCH("group kernel");
}

// Launches rule R on `in` for the storage type of the output (every input x output type pair).
template <rules::GroupRule R>
void launch_rule(const TensorView& in, DType out_dtype, const GroupParams& p) {
  dispatch_input_dtype(in.dtype, [&](auto itag) {
    dispatch_dtype(out_dtype, [&](auto otag) {
      using In = typename decltype(itag)::type;
      using Out = typename decltype(otag)::type;
      if constexpr (kIsValueType<Out>) launch<R, In, Out>(in, p);
    });
  });
}

// One instantiation per rule, each in its own translation unit (group_<rule>.cu).
void launch_magnitude(const TensorView& in, DType out_dtype, const GroupParams& p);
void launch_mask(const TensorView& in, DType out_dtype, const GroupParams& p);
void launch_mvue(const TensorView& in, DType out_dtype, const GroupParams& p);
void launch_soft_threshold(const TensorView& in, DType out_dtype, const GroupParams& p);

}  // namespace sparse24::cuda::group
