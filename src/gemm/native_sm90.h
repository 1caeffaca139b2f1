// src/gemm/native_sm90.h: the native kernels and the dispatcher's choice among them, for the
// benchmark (which prints which kernel ran).
#pragma once

#include <vector>

#include "gemm/backends.h"
#include "gemm/sm90/sm90_kernel.h"

namespace sparse24::gemm {

// Every compiled kernel, in kernels.def order.
const std::vector<const Sm90Kernel*>& native_kernels();
// The kernel native_mm runs for p (p.native_kernel, else the dispatcher's choice); throws like
// native_mm for a call that no kernel can run, naming why.
const Sm90Kernel& native_choice(const SparseProblem& p);

}  // namespace sparse24::gemm
