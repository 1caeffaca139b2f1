// The CUDA entry points of a build without CUDA: every device request is a clear error (and no
// GPU is ever listed), so a CUDA tensor can never reach a kernel that is not there.
#include "cuda/cast_cuda.h"
#include "cuda/nn_cuda.h"
#include "cuda/optim_cuda.h"
#include "cuda/runtime.h"
#include "cuda/transforms_cuda.h"
#include "sparse24/error.h"

namespace sparse24::cuda {

namespace {
[[noreturn]] void no_cuda() {
  S24_FAIL(kDevice, "this build of sparse24 has no CUDA backend (configure with a CUDA toolkit)");
}
}  // namespace

std::shared_ptr<void> alloc(size_t) { no_cuda(); }
void copy(void*, bool, const void*, bool, size_t) { no_cuda(); }
void fill(void*, int, size_t) { no_cuda(); }
void convert(void*, DType, const void*, DType, int64_t) { no_cuda(); }
unsigned long long* reset_report_slot() { no_cuda(); }
int64_t read_report_slot() { no_cuda(); }
int current_gpu() { no_cuda(); }
int sm_count() { no_cuda(); }
std::vector<GpuInfo> gpus(std::string* why) {
  if (why) *why = "built without CUDA";
  return {};
}

int64_t prune_groups(const TensorView&, const cpu::GroupArgs&, const CompressOptions&, Sparse24Matrix&) { no_cuda(); }
int64_t prune_transposable(const TensorView&, const Mask24*, const CompressOptions&, Transposable24&, bool) {
  no_cuda();
}
double sste_scale(const TensorView&, int64_t*) { no_cuda(); }
void decompress(const Sparse24Matrix&, const TensorView&) { no_cuda(); }
void adamw_update(float*, const float*, float*, float*, int64_t, const uint8_t*, int64_t, int64_t,
                  const rules::AdamWStep&) {
  no_cuda();
}
double sum_squares(const void*, DType, int64_t) { no_cuda(); }
bool scale_in_place(void*, DType, int64_t, float) { no_cuda(); }
void masked_decay(const TensorView&, const TensorView&, const Mask24&, float) { no_cuda(); }
double flip_rate(const Mask24&, const Mask24&) { no_cuda(); }
int64_t first_invalid_code(const Mask24&) { no_cuda(); }

float finite_amax(const TensorView&) { no_cuda(); }
void quantize(const TensorView&, const TensorView&, float, const TensorView*) { no_cuda(); }
void scatter_sm90_meta(uint8_t*, const Mask24&, const Sm90Meta&) { no_cuda(); }

void nn::gelu_forward(void*, const void*, DType, int64_t) { no_cuda(); }
void nn::gelu_backward(void*, const void*, const void*, DType, int64_t) { no_cuda(); }
void nn::bias_backward(float*, const TensorView&) { no_cuda(); }

}  // namespace sparse24::cuda
