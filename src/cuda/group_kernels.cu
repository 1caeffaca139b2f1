// The CUDA group transforms' entry point: picks the rule's launcher (group_kernels.cuh).
#include "cuda/group_kernels.cuh"

namespace sparse24::cuda {

int64_t prune_groups(const TensorView& in, const cpu::GroupArgs& args, const CompressOptions& opts,
                     Sparse24Matrix& out) {
  if (in.rows() == 0 || in.cols() == 0) return -1;
  const bool propagate = opts.non_finite == NonFinite::kPropagate;
  const group::GroupParams p{out.values.view().data, out.mask.codes().data<uint8_t>(), in.rows(), in.cols() / 4,
                             out.mask.row_bytes(), args.mask ? args.mask->codes().data<uint8_t>() : nullptr,
                             args.seed, args.beta, out.scale, opts.overflow,
                             propagate ? nullptr : reset_report_slot(),
                             out.hw_meta.defined() ? out.hw_meta.data<uint8_t>() : nullptr,
                             out.hw_meta.defined() ? sm90_meta(out.layout, out.rows, out.cols, out.dtype) : Sm90Meta{}};
  switch (args.rule) {
    case rules::GroupRule::kMagnitude: group::launch_magnitude(in, out.dtype, p); break;
    case rules::GroupRule::kMask: group::launch_mask(in, out.dtype, p); break;
    case rules::GroupRule::kMvue: group::launch_mvue(in, out.dtype, p); break;
    case rules::GroupRule::kSoftThreshold: group::launch_soft_threshold(in, out.dtype, p); break;
  }
  return propagate ? -1 : read_report_slot();
}

}  // namespace sparse24::cuda
