// The GEMM backends this build does not have: each entry point says what is missing.
#include "gemm/backends.h"
#include "sparse24/error.h"

namespace sparse24::gemm {

#ifndef SPARSE24_WITH_CUTLASS
constexpr const char* kNoNative =
    "the native sparse GEMM is not in this build: it needs CUDA and the CUTLASS headers "
    "(scripts/setup-deps.sh fetches them; CMake option SPARSE24_CUTLASS_DIR)";
bool native_built() { return false; }
std::vector<NativeKernelInfo> native_kernel_info() { return {}; }
bool native_mm_if_it_fits(const SparseProblem&, std::string* why) {
  if (why) *why = kNoNative;
  return false;
}
void native_mm(const SparseProblem&) { S24_FAIL(kDevice, kNoNative); }
#endif

#ifndef SPARSE24_WITH_CUSPARSELT
bool cusparselt_built() { return false; }
void cusparselt_mm(const SparseProblem&) {
  S24_FAIL(kDevice, "the cuSPARSELt backend is not in this build: it needs CUDA and cuSPARSELt "
                    "(scripts/setup-deps.sh fetches it; CMake option SPARSE24_CUSPARSELT_DIR)");
}
#endif

#ifndef SPARSE24_WITH_CUDA
void cublaslt_mm(const DenseProblem&) {
  S24_FAIL(kDevice, "the cuBLASLt backend needs a CUDA build");
}
void expanded_mm(const SparseProblem&) {
  S24_FAIL(kDevice, "the expanded (dense cuBLASLt) GEMM needs a CUDA build");
}
#endif

}  // namespace sparse24::gemm
