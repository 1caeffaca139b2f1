// The magnitude group kernels (group_kernels.cuh), compiled on their own.
#include "cuda/group_kernels.cuh"

namespace sparse24::cuda::group {

void launch_magnitude(const TensorView& in, DType out_dtype, const GroupParams& p) {
  launch_rule<rules::GroupRule::kMagnitude>(in, out_dtype, p);
}

}  // namespace sparse24::cuda::group
