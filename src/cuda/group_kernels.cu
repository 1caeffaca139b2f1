// CUDA group transforms (magnitude, explicit mask, MVUE24, soft threshold): one pass, dense in,
// compressed values and canonical metadata out. The rule of each group is rules24.h's
// apply_group, the code the CPU backend runs, so the two backends agree bit for bit.
//
// Work unit: one metadata byte = two groups = 8 consecutive elements of a row; it reads 8 inputs
// and writes 4 values and 1 byte. Two kernels feed it:
//   * rows_kernel: row-major input whose rows are 16-byte aligned runs of 8: each thread loads its
//     8 elements straight from global memory with vector loads (no shared memory);
//   * tile_kernel: anything else (notably the column-major dY^T of the weight gradient): a
//     32 x 64 tile goes through shared memory so that reads run along the contiguous dimension
//     and writes along rows.
#include "core/rules24.h"
#include "cuda/check.h"
#include "cuda/tile.cuh"
#include "cuda/transforms_cuda.h"

namespace sparse24::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTileR = 32, kTileC = 64;  // tile_kernel: 8 metadata bytes per tile row

struct GroupParams {
  void* values;                 // rows x cols/2, row-major, of the storage type
  uint8_t* meta;                // rows x row_bytes
  int64_t rows, groups, row_bytes;
  rules::GroupRule rule;
  const uint8_t* mask_meta;     // kMask: the mask's canonical metadata
  uint64_t seed;                // kMvue
  float beta, scale;
  Overflow overflow;
  unsigned long long* bad;      // NonFinite::kError: first non-finite index; null under kPropagate
};

// The two groups of metadata byte `byte` of row `row`, from their 8 inputs x.
template <typename Out>
__device__ __forceinline__ void process_byte(const float x[8], int64_t row, int64_t byte, const GroupParams& p) {
  const int64_t g0 = 2 * byte;
  const bool both = g0 + 1 < p.groups;
  const uint8_t mask_byte = p.rule == rules::GroupRule::kMask ? p.mask_meta[row * p.row_bytes + byte] : 0;
  Philox4 words{{0u, 0u, 0u, 0u}};  // MVUE: one Philox call for both groups
  if (p.rule == rules::GroupRule::kMvue) words = mvue_words(p.seed, uint64_t(row * p.row_bytes + byte));
  Vec<Out, 4> out;
  uint8_t meta = 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float* g = x + 4 * h;
    if (p.bad && (h == 0 || both)) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        if (!rules::is_finite_f(g[i])) report_first(p.bad, row * 4 * p.groups + 4 * (g0 + h) + i);
    }
    float v0 = 0.f, v1 = 0.f;
    const rules::Pick k = rules::apply_group(g, p.rule, uint8_t((mask_byte >> (4 * h)) & 0xF),
                                             philox_uniform(words.v[2 * h]), philox_uniform(words.v[2 * h + 1]),
                                             p.beta, &v0, &v1);
    out.v[2 * h] = from_f32<Out>(v0, p.scale, p.overflow);
    out.v[2 * h + 1] = from_f32<Out>(v1, p.scale, p.overflow);
    if (h == 0 || both) meta = uint8_t(meta | (group_code(k.i0, k.i1) << (4 * h)));
  }
  Out* dst = static_cast<Out*>(p.values) + row * 2 * p.groups + 2 * g0;
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
  p.meta[row * p.row_bytes + byte] = meta;
}

// Block (32, 8): a warp takes 32 consecutive metadata bytes (256 elements) of one row.
template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads) rows_kernel(DeviceMatrix in, GroupParams p) {
  const int64_t byte = int64_t(blockIdx.x) * 32 + threadIdx.x, row = int64_t(blockIdx.y) * 8 + threadIdx.y;
  if (byte >= p.row_bytes || row >= p.rows) return;
  float x[8];
  load8(static_cast<const In*>(in.data) + row * in.sr + 8 * byte, x);
  process_byte<Out>(x, row, byte, p);
}

template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads) tile_kernel(DeviceMatrix in, GroupParams p, bool vec, bool along_rows) {
  __shared__ float tile[kTileR][kTileC + 1];
  const int64_t r0 = int64_t(blockIdx.y) * kTileR, c0 = int64_t(blockIdx.x) * kTileC;
  load_tile<In, kTileR, kTileC, kThreads>(in, r0, c0, vec, along_rows, tile);
  __syncthreads();
  const int r = threadIdx.x / 8, b = threadIdx.x % 8;  // tile row, metadata byte
  const int64_t row = r0 + r, byte = c0 / 8 + b;
  if (row >= p.rows || byte >= p.row_bytes) return;
  float x[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) x[i] = tile[r][8 * b + i];
  process_byte<Out>(x, row, byte, p);
}

template <typename In, typename Out>
void launch(const TensorView& in, const GroupParams& p) {
  bool along_rows = false;
  const bool vec = vector_friendly(in, &along_rows);
  if (vec && along_rows) {
    const dim3 grid(unsigned((p.row_bytes + 31) / 32), unsigned((p.rows + 7) / 8));
    S24_CHECK(grid.y <= 65535u, kShape, "CUDA transforms: ", in.describe(), " has too many rows for one launch");
    rows_kernel<In, Out><<<grid, dim3(32, 8)>>>(device_matrix(in), p);
  } else {
    const dim3 grid(unsigned((in.cols() + kTileC - 1) / kTileC), unsigned((in.rows() + kTileR - 1) / kTileR));
    S24_CHECK(grid.y <= 65535u, kShape, "CUDA transforms: ", in.describe(), " has too many rows for one launch");
    tile_kernel<In, Out><<<grid, kThreads>>>(device_matrix(in), p, vec, along_rows);
  }
  S24_CUDA_CHECK_LAUNCH("group kernel");
}

}  // namespace

int64_t prune_groups(const TensorView& in, const cpu::GroupArgs& args, const CompressOptions& opts,
                     Sparse24Matrix& out) {
  if (in.rows() == 0 || in.cols() == 0) return -1;
  const bool propagate = opts.non_finite == NonFinite::kPropagate;
  GroupParams p{out.values.view().data, out.mask.codes().data<uint8_t>(), in.rows(), in.cols() / 4,
                out.mask.row_bytes(), args.rule, args.mask ? args.mask->codes().data<uint8_t>() : nullptr,
                args.seed, args.beta, out.scale, opts.overflow, propagate ? nullptr : reset_report_slot()};
  dispatch_input_dtype(in.dtype, [&](auto itag) {
    dispatch_dtype(out.dtype, [&](auto otag) {
      using In = typename decltype(itag)::type;
      using Out = typename decltype(otag)::type;
      if constexpr (!std::is_same_v<Out, uint8_t>) launch<In, Out>(in, p);
    });
  });
  return propagate ? -1 : read_report_slot();
}

}  // namespace sparse24::cuda
