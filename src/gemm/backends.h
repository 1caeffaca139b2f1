// src/gemm/backends.h: the CUDA GEMM backends behind sparse24/gemm.h.
//
// src/ops/gemm.cpp validates every call (devices, shapes, dtypes) and reduces each public
// product to one of two problems, so a backend sees a single form:
//
//   SparseProblem:  D (m x n) = alpha * scale(S) * S B + beta * D + bias[i] on row i of D
//                   S: m x k, 2:4 along k (the GEMM's "A"); B: k x n; D: m x n.
//   DenseProblem:   D (m x n) = alpha * A B + beta * D + bias[i] on row i of D
//
// B, A and D are strided views: a row-major or column-major matrix each (a transposed view is
// just the other major). For example linear's Y = X W^T (X: n x k row-major) arrives as
// D = Y^T (column-major), S = W, B = X^T (column-major, i.e. "K-major"); the weight gradient
// dW = S(dY^T) X arrives with B = X row-major ("N-major") and D = dW row-major.
//
// A backend either runs the problem (on the default stream, asynchronously) or throws
// kDType / kShape / kDevice with a message that names what it does not support.
#pragma once

#include <string>
#include <vector>

#include "sparse24/format.h"
#include "sparse24/gemm.h"
#include "sparse24/tensor.h"

namespace sparse24::gemm {

struct SparseProblem {
  const Sparse24Matrix* s = nullptr;  // CUDA; values row-major m x k/2
  TensorView b;                       // k x n, CUDA
  TensorView d;                       // m x n, CUDA, row- or column-major
  const TensorView* bias = nullptr;   // null, or m contiguous elements (fp32, fp16 or bf16)
  float alpha = 1.f, beta = 0.f;      // alpha excludes S's scale: backends multiply it in
  std::string native_kernel;          // native only: a kernel by name instead of the choice
};

struct DenseProblem {
  TensorView a;                      // m x k, CUDA
  TensorView b;                      // k x n, CUDA
  TensorView d;                      // m x n, CUDA, row- or column-major
  const TensorView* bias = nullptr;  // null, or m contiguous elements
  float alpha = 1.f, beta = 0.f;
  // fp8 only: cuBLASLt's fast accumulation (the tensor cores' own accumulator, no periodic
  // promotion to fp32 registers), as the native fp8 kernels accumulate. The library's products
  // leave it off; `bench gemm --dtype e4m3` times and measures both.
  bool fp8_fast_accumulation = false;
};

// The native CUTLASS sm90 kernels (src/gemm/native_sm90.cpp). Throws kDevice when the build has
// no CUTLASS or the GPU is not sm_90.
void native_mm(const SparseProblem& p);
// native_mm(p) if a native kernel takes p (a Hopper GPU, a kernel for its dtypes, majors, layout
// and alignment), returning true; else false with the reason in *why, launching nothing.
bool native_mm_if_it_fits(const SparseProblem& p, std::string* why);
bool native_built();
std::vector<NativeKernelInfo> native_kernel_info();

// cuSPARSELt (src/gemm/cusparselt_backend.cpp). Throws kDevice when the build has no cuSPARSELt.
void cusparselt_mm(const SparseProblem& p);
bool cusparselt_built();

// S expanded to dense and the product run on cuBLASLt (src/gemm/expanded_backend.cpp): kAuto's
// choice where the native kernels do not run, correct at dense speed. Throws kDevice in builds
// without CUDA.
void expanded_mm(const SparseProblem& p);

// cuBLASLt (src/gemm/cublaslt_backend.cpp), and the algorithm it picks for p (benchmarks).
void cublaslt_mm(const DenseProblem& p);
std::string cublaslt_describe(const DenseProblem& p);

}  // namespace sparse24::gemm
