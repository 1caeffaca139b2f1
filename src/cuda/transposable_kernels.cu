// CUDA transposable 2:4: one pass over W choosing, for every aligned 4x4 block, the best of the
// 90 patterns (rules::best_transposable, the CPU's code) or reading a given mask, and writing W
// and W^T compressed. W's outputs are written straight from registers; W^T's are staged in
// shared memory so that they too leave the block in row order.
#include "core/rules24.h"
#include "cuda/check.h"
#include "cuda/tile.cuh"
#include "cuda/transforms_cuda.h"

namespace sparse24::cuda {
namespace {

constexpr int kTile = 64, kThreads = 256;  // a 64 x 64 tile: 16 x 16 blocks, one per thread
constexpr int kPitch = kTile + 4;

struct TransposableParams {
  void* w_values;              // rows x cols/2
  uint8_t* w_meta;             // rows x w_row_bytes
  void* wt_values;             // cols x rows/2
  uint8_t* wt_meta;            // cols x wt_row_bytes
  int64_t w_row_bytes, wt_row_bytes;
  const uint8_t* given_mask;   // W's canonical metadata when the mask is given, else null
  float scale;
  Overflow overflow;
  bool check_finite;           // report non-finite weights (the search always does)
  unsigned long long* bad;     // report slot: 2 * position + kind (0: invalid mask block, 1: NaN/Inf)
  uint8_t *w_hw, *wt_hw;       // sm90 metadata of W and W^T, written beside the canonical; or null
  Sm90Meta w_hwg, wt_hwg;      // their geometries
};

template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads) transposable_kernel(DeviceMatrix w, TransposableParams p, bool vec,
                                                               bool along_rows) {
  // Row pitch 68 floats: a thread reads its 4x4 block as four 16-byte rows, and the 8 lanes of a
  // quarter-warp (consecutive bj) read 128 consecutive bytes: no bank conflicts.
  __shared__ alignas(16) float tile[kTile][kPitch];
  __shared__ alignas(16) Out wt_vals[kTile][kTile / 2];     // W^T tile: 64 rows (W's columns) x 32 values
  __shared__ alignas(16) uint8_t wt_meta[kTile][kTile / 8];  // 64 rows x 8 metadata bytes
  const int64_t r0 = int64_t(blockIdx.y) * kTile, c0 = int64_t(blockIdx.x) * kTile;
  load_tile<In, float, kTile, kTile, kThreads, kPitch>(w, r0, c0, vec, along_rows, tile);
  // A given mask's bytes for the tile (64 rows x 8 bytes), read coalesced into shared memory.
  __shared__ alignas(8) uint8_t mask_tile[kTile][kTile / 8];
  if (p.given_mask) {
    const int64_t t_rows = min(int64_t(kTile), w.rows - r0), t_bytes = (min(int64_t(kTile), w.cols - c0) / 4 + 1) / 2;
    for (int e = threadIdx.x; e < kTile * (kTile / 8); e += kThreads) {
      const int lr = e / (kTile / 8), k = e % (kTile / 8);
      if (lr < t_rows && k < t_bytes) mask_tile[lr][k] = p.given_mask[(r0 + lr) * p.w_row_bytes + c0 / 8 + k];
    }
  }
  __syncthreads();

  // Thread t owns block (bi, bj) of the tile; lanes with consecutive bj share W's metadata bytes,
  // lanes 16 apart (bi, bi + 1) share W^T's.
  const int bi = threadIdx.x / 16, bj = threadIdx.x % 16;
  const bool inside = r0 + 4 * bi < w.rows && c0 + 4 * bj < w.cols;
  float blk[4][4];  // the thread's 4x4 block, one 16-byte shared-memory load per row
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const float4 v = *reinterpret_cast<const float4*>(&tile[4 * bi + r][4 * bj]);
    blk[r][0] = v.x;
    blk[r][1] = v.y;
    blk[r][2] = v.z;
    blk[r][3] = v.w;
  }
  uint16_t rows_pairs = 0;  // 3 bits per row: the pattern's pair index of each row
  if (inside) {
    if (p.given_mask) {
      // Read the block's pattern, checking that it has two ones in every row and column: each
      // row's kept columns, spread one per nibble, add up to 2 in every nibble (0x2222).
      bool valid = true;
      uint32_t per_col = 0;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const uint8_t code = (mask_tile[4 * bi + r][bj / 2] >> (4 * (bj % 2))) & 0xF;
        valid = valid && is_valid_group_code(code);
        per_col += (1u << (4 * (code & 3))) + (1u << (4 * (code >> 2)));
        rows_pairs = uint16_t(rows_pairs | rules::pair_index(code & 3, code >> 2) << (3 * r));
      }
      valid = valid && per_col == 0x2222u;
      if (!valid) report_first(p.bad, 2 * ((r0 + 4 * bi) * w.cols + c0 + 4 * bj));  // kind 0: mask
    }
    float absw[16];
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      const float x = blk[k / 4][k % 4];
      if (p.check_finite && !rules::is_finite_f(x))
        report_first(p.bad, 2 * ((r0 + 4 * bi + k / 4) * w.cols + c0 + 4 * bj + k % 4) + 1);  // kind 1
      absw[k] = rules::abs_f(x);
    }
    if (!p.given_mask) rows_pairs = rules::best_transposable(absw);
  }

  // The pattern's kept pair of each row, decoded once.
  int pa[4], pb[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) rules::pattern_row(rows_pairs, r, &pa[r], &pb[r]);

  // W: rows r0 + 4bi + r, group c0/4 + bj.
  Out* wv = static_cast<Out*>(p.w_values);
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const uint8_t code = group_code(pa[r], pb[r]);
    const uint8_t odd = uint8_t(__shfl_down_sync(0xFFFFFFFFu, code, 1));  // bj + 1's code
    if (!inside) continue;
    const int64_t row = r0 + 4 * bi + r, g = c0 / 4 + bj;
    const float* trow = blk[r];
    Vec<Out, 2> pair;
    pair.v[0] = from_f32<Out>(rules::pick4(trow, pa[r]), p.scale, p.overflow);
    pair.v[1] = from_f32<Out>(rules::pick4(trow, pb[r]), p.scale, p.overflow);
    *reinterpret_cast<Vec<Out, 2>*>(wv + row * (w.cols / 2) + 2 * g) = pair;
    if (bj % 2 == 0) {
      const bool has_odd = c0 + 4 * bj + 4 < w.cols;
      p.w_meta[row * p.w_row_bytes + g / 2] = uint8_t(code | (has_odd ? odd << 4 : 0));
      if (p.w_hw) p.w_hw[p.w_hwg.offset(row, g / 2)] = uint8_t(code | (has_odd ? odd << 4 : 0));
    }
  }

  // W^T: tile row 4bj + c keeps the two rows of the pattern with a one in column c, as group bi.
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    int k0 = -1, k1 = 0;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const bool hit = pa[r] == c || pb[r] == c;
      if (hit && k0 < 0) k0 = r;
      else if (hit) k1 = r;
    }
    k0 = k0 < 0 ? 0 : k0;
    const uint8_t code = group_code(k0, k1);
    const uint8_t odd = uint8_t(__shfl_down_sync(0xFFFFFFFFu, code, 16));  // bi + 1's code
    const float col[4] = {blk[0][c], blk[1][c], blk[2][c], blk[3][c]};
    wt_vals[4 * bj + c][2 * bi] = from_f32<Out>(rules::pick4(col, k0), p.scale, p.overflow);
    wt_vals[4 * bj + c][2 * bi + 1] = from_f32<Out>(rules::pick4(col, k1), p.scale, p.overflow);
    if (bi % 2 == 0) {
      const bool has_odd = r0 + 4 * bi + 4 < w.rows;
      wt_meta[4 * bj + c][bi / 2] = uint8_t(code | (has_odd ? odd << 4 : 0));
    }
  }
  __syncthreads();

  // Write the W^T tile: rows c0.., values from slot r0/2, metadata from byte r0/8; whole rows of
  // the tile go out as 16-byte vectors when the tile is full and the rows are 16-byte aligned.
  Out* tv = static_cast<Out*>(p.wt_values);
  const int64_t t_rows = min(int64_t(kTile), w.cols - c0), t_vals = min(int64_t(kTile), w.rows - r0) / 2;
  const int64_t t_bytes = (min(int64_t(kTile), w.rows - r0) / 4 + 1) / 2;
  constexpr int kChunks = (kTile / 2) * int(sizeof(Out)) / 16;  // 16-byte chunks per tile row
  if (t_vals == kTile / 2 && ((w.rows / 2) * int64_t(sizeof(Out))) % 16 == 0) {
    for (int e = threadIdx.x; e < kTile * kChunks; e += kThreads) {
      const int lr = e / kChunks, k = e % kChunks;
      if (lr < t_rows)
        reinterpret_cast<uint4*>(tv + (c0 + lr) * (w.rows / 2) + r0 / 2)[k] = reinterpret_cast<const uint4*>(wt_vals[lr])[k];
    }
  } else {
    for (int e = threadIdx.x; e < kTile * (kTile / 2); e += kThreads) {
      const int lr = e / (kTile / 2), k = e % (kTile / 2);
      if (lr < t_rows && k < t_vals) tv[(c0 + lr) * (w.rows / 2) + r0 / 2 + k] = wt_vals[lr][k];
    }
  }
  if (p.wt_hw) {
    for (int e = threadIdx.x; e < kTile * (kTile / 8); e += kThreads) {
      const int lr = e / (kTile / 8), k = e % (kTile / 8);
      if (lr < t_rows && k < t_bytes) p.wt_hw[p.wt_hwg.offset(c0 + lr, r0 / 8 + k)] = wt_meta[lr][k];
    }
  }
  if (t_bytes == kTile / 8 && p.wt_row_bytes % 8 == 0) {
    for (int lr = threadIdx.x; lr < t_rows; lr += kThreads)
      *reinterpret_cast<uint2*>(p.wt_meta + (c0 + lr) * p.wt_row_bytes + r0 / 8) = *reinterpret_cast<const uint2*>(wt_meta[lr]);
  } else {
    for (int e = threadIdx.x; e < kTile * (kTile / 8); e += kThreads) {
      const int lr = e / (kTile / 8), k = e % (kTile / 8);
      if (lr < t_rows && k < t_bytes) p.wt_meta[(c0 + lr) * p.wt_row_bytes + r0 / 8 + k] = wt_meta[lr][k];
    }
  }
}

}  // namespace

int64_t prune_transposable(const TensorView& w, const Mask24* mask, const CompressOptions& opts,
                           Transposable24& res, bool report) {
  if (w.rows() == 0 || w.cols() == 0) return -1;
  unsigned long long* bad = reset_report_slot();  // non-finite weight, or invalid mask block
  TransposableParams p{res.w.values.view().data, res.w.mask.codes().data<uint8_t>(),
                       res.wt.values.view().data, res.wt.mask.codes().data<uint8_t>(),
                       res.w.mask.row_bytes(), res.wt.mask.row_bytes(),
                       mask ? mask->codes().data<uint8_t>() : nullptr, res.w.scale, opts.overflow,
                       !mask || opts.non_finite == NonFinite::kError, bad,
                       res.w.hw_meta.defined() ? res.w.hw_meta.data<uint8_t>() : nullptr,
                       res.wt.hw_meta.defined() ? res.wt.hw_meta.data<uint8_t>() : nullptr,
                       res.w.hw_meta.defined() ? sm90_meta(res.w.layout, res.w.rows, res.w.cols, res.w.dtype) : Sm90Meta{},
                       res.wt.hw_meta.defined() ? sm90_meta(res.wt.layout, res.wt.rows, res.wt.cols, res.wt.dtype) : Sm90Meta{}};
  const dim3 grid(unsigned((w.cols() + kTile - 1) / kTile), unsigned((w.rows() + kTile - 1) / kTile));
  bool along_rows = false;
  const bool vec = vector_friendly(w, &along_rows);
  S24_CHECK(grid.y <= 65535u, kShape, "prune_transposable: ", w.describe(), " has too many rows for one launch");
  dispatch_input_dtype(w.dtype, [&](auto itag) {
    dispatch_dtype(res.w.dtype, [&](auto otag) {
      using In = typename decltype(itag)::type;
      using Out = typename decltype(otag)::type;
      if constexpr (kIsValueType<Out>) {
        transposable_kernel<In, Out><<<grid, kThreads>>>(device_matrix(w), p, vec, along_rows);
        S24_CUDA_CHECK_LAUNCH("transposable_kernel");
      }
    });
  });
  res.mask = res.w.mask;
  return report ? read_report_slot() : -1;
}

}  // namespace sparse24::cuda
