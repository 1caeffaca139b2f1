// src/cpu/gemm_cpu.h: the CPU backend of the 2:4 products (sparse24/gemm.h).
//
// Arguments arrive validated by src/ops/gemm.cpp: everything is on the CPU, shapes agree, the
// dense operands and the output are fp32, fp16 or bf16. One kernel (spmm_f32) does the work;
// the other functions convert the dense operand to fp32 and the fp32 result to the output.
#pragma once

#include <cstdint>

#include "sparse24/format.h"
#include "sparse24/tensor.h"

namespace sparse24::cpu {

// C[m x n] = S[m x k] . D[k x n] with m = s.rows, k = s.cols; D and C fp32 row-major, C written
// (not accumulated), fp32 accumulation in increasing column order of S. Throws kInvalidMask for
// a metadata code that is not one of the six valid ones.
void spmm_f32(const Sparse24Matrix& s, const float* d, int64_t n, float* c);

// out[m x n] = S B. b: k x n, any layout; out: a row-major m x n matrix.
void mm_sb(const Sparse24Matrix& s, const TensorView& b, const TensorView& out);

// out[n x m] = A S^T (+ bias broadcast over rows: out[j][i] += bias[i]). a: n x k, any layout;
// bias: null, or m elements (rank 1, or rank 2 of shape 1 x m, any stride); out: a row-major
// n x m matrix.
void mm_as_t(const TensorView& a, const Sparse24Matrix& s, const TensorView* bias,
             const TensorView& out);

}  // namespace sparse24::cpu
