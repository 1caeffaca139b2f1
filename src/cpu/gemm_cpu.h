// src/cpu/gemm_cpu.h: the CPU backend of the products of sparse24/gemm.h.
//
// Arguments arrive validated by src/ops/gemm.cpp: everything is on the CPU, shapes agree, the
// dense operands are float (fp8 included) and the output fp32, fp16 or bf16. One kernel per kind
// does the work (spmm_f32 for 2:4, a blocked fp32 GEMM for dense); the other functions convert
// the operands to fp32 and the fp32 result to the output.
#pragma once

#include <cstdint>

#include "sparse24/format.h"
#include "sparse24/tensor.h"

namespace sparse24::cpu {

// C[m x n] = S[m x k] . D[k x n] with m = s.rows, k = s.cols; D and C fp32 row-major, C written
// (not accumulated), fp32 accumulation in increasing column order of S. Throws kInvalidMask for
// a metadata code that is not one of the six valid ones.
void spmm_f32(const Sparse24Matrix& s, const float* d, int64_t n, float* c);

// D (m x n) = beta * D + (alpha * S B + bias[i] on row i), the definition of every backend's
// SparseProblem (src/gemm/backends.h). b: k x n, any layout and float dtype; bias: null or m
// elements (rank 1, or 1 x m, any stride); d: fp32/fp16/bf16, any strides; beta == 0 ignores
// D's old content (NaN included). Rounded once, to nearest even.
void sparse_mm(const Sparse24Matrix& s, const TensorView& b, const TensorView* bias, float alpha,
               float beta, const TensorView& d);

// out (m x n) = beta * out + (alpha * A B + bias[j] on column j), the definition of the dense
// products (dense_mm_into; on CUDA, cuBLASLt's DenseProblem with D = out^T). a: m x k, b: k x n,
// any layout and float dtype (fp8 included, converted to fp32 exactly); bias: null or n elements
// (rank 1, or 1 x n, any stride); out: fp32/fp16/bf16, any strides; beta == 0 ignores out's old
// content (NaN included). fp32 accumulation: each element sums its k products in increasing k
// order, from +0; the result is rounded once, to nearest even.
void dense_mm(const TensorView& a, const TensorView& b, const TensorView* bias, float alpha,
              float beta, const TensorView& out);

}  // namespace sparse24::cpu
