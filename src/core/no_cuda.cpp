// The CUDA runtime entry points of a build without CUDA: every device request is a clear error.
#include "cuda/runtime.h"
#include "sparse24/error.h"

namespace sparse24::cuda {

std::shared_ptr<void> alloc(size_t) {
  S24_FAIL(kDevice, "this build of sparse24 has no CUDA backend (configure with a CUDA toolkit)");
}
void copy(void*, bool, const void*, bool, size_t) {
  S24_FAIL(kDevice, "this build of sparse24 has no CUDA backend (configure with a CUDA toolkit)");
}
std::vector<GpuInfo> gpus(std::string* why) {
  if (why) *why = "built without CUDA";
  return {};
}

}  // namespace sparse24::cuda
