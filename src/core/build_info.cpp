#include "sparse24/build_info.h"

#include "cuda/runtime.h"

#ifdef SPARSE24_WITH_OPENMP
#include <omp.h>
#endif

namespace sparse24 {

const char* version() { return SPARSE24_VERSION; }

bool built_with_cuda() {
#ifdef SPARSE24_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool built_with_openmp() {
#ifdef SPARSE24_WITH_OPENMP
  return true;
#else
  return false;
#endif
}

int cpu_threads() {
#ifdef SPARSE24_WITH_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

std::vector<GpuInfo> list_gpus(std::string* why) { return cuda::gpus(why); }
int current_gpu() { return cuda::current_gpu(); }

}  // namespace sparse24
