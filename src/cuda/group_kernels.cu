// CUDA group transforms (magnitude, explicit mask, MVUE24, soft threshold): one pass, dense in,
// compressed values and canonical metadata out. The rule of each group is rules24.h's, the same
// code the CPU backend runs, so the two backends agree bit for bit.
#include "core/rules24.h"
#include "cuda/check.h"
#include "cuda/tile.cuh"
#include "cuda/transforms_cuda.h"

namespace sparse24::cuda {
namespace {

constexpr int kTileR = 32, kTileC = 64, kThreads = 256;  // 8 metadata bytes per tile row

struct GroupParams {
  void* values;                 // rows x cols/2, row-major, of the storage type
  uint8_t* meta;                // rows x row_bytes
  int64_t groups, row_bytes;    // per row
  rules::GroupRule rule;
  const uint8_t* mask_meta;     // kMask: the mask's canonical metadata
  uint64_t seed;                // kMvue
  float beta, scale;
  Overflow overflow;
  bool propagate;               // NonFinite::kPropagate
  unsigned long long* bad;      // first non-finite index (kError)
};

// Block: a 32 x 64 tile. Thread t: tile row t / 8, metadata byte t % 8 (two groups, 8 columns).
template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads) group_kernel(DeviceMatrix in, GroupParams p) {
  __shared__ float tile[kTileR][kTileC + 1];
  const int64_t r0 = int64_t(blockIdx.y) * kTileR, c0 = int64_t(blockIdx.x) * kTileC;
  load_tile<In, kTileR, kTileC, kThreads>(in, r0, c0, tile);
  __syncthreads();

  const int r = threadIdx.x / 8, b = threadIdx.x % 8;
  const int64_t row = r0 + r, byte = c0 / 8 + b, g0 = 2 * byte;
  if (row >= in.rows || g0 >= p.groups) return;
  const uint8_t mask_byte = p.rule == rules::GroupRule::kMask ? p.mask_meta[row * p.row_bytes + byte] : 0;
  Out* vals = static_cast<Out*>(p.values) + row * 2 * p.groups;
  uint8_t meta = 0;
  for (int h = 0; h < 2 && g0 + h < p.groups; ++h) {
    float x[4], v0 = 0.f, v1 = 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i) x[i] = tile[r][8 * b + 4 * h + i];
    if (!p.propagate) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        if (!rules::is_finite_f(x[i])) report_first(p.bad, row * in.cols + 4 * (g0 + h) + i);
    }
    const rules::Pick k = rules::apply_group(x, p.rule, uint8_t((mask_byte >> (4 * h)) & 0xF), p.seed,
                                             uint64_t(row * p.groups + g0 + h), p.beta, &v0, &v1);
    vals[2 * (g0 + h)] = from_f32<Out>(v0, p.scale, p.overflow);
    vals[2 * (g0 + h) + 1] = from_f32<Out>(v1, p.scale, p.overflow);
    meta = uint8_t(meta | (group_code(k.i0, k.i1) << (4 * h)));
  }
  p.meta[row * p.row_bytes + byte] = meta;
}

template <typename In, typename Out>
void launch(const TensorView& in, const GroupParams& p) {
  const dim3 grid(unsigned((in.cols() + kTileC - 1) / kTileC), unsigned((in.rows() + kTileR - 1) / kTileR));
  S24_CHECK(grid.y <= 65535u, kShape, "CUDA transforms: ", in.describe(), " has too many rows for one launch");
  group_kernel<In, Out><<<grid, kThreads>>>(device_matrix(in), p);
  S24_CUDA_CHECK_LAUNCH("group_kernel");
}

}  // namespace

int64_t prune_groups(const TensorView& in, const cpu::GroupArgs& args, const CompressOptions& opts,
                     Sparse24Matrix& out) {
  if (in.rows() == 0 || in.cols() == 0) return -1;
  const bool propagate = opts.non_finite == NonFinite::kPropagate;
  unsigned long long* bad = propagate ? nullptr : reset_report_slot();
  GroupParams p{out.values.view().data, out.mask.codes().data<uint8_t>(), in.cols() / 4, out.mask.row_bytes(),
                args.rule, args.mask ? args.mask->codes().data<uint8_t>() : nullptr, args.seed, args.beta,
                out.scale, opts.overflow, propagate, bad};
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
