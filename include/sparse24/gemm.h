// sparse24/gemm.h: products with a 2:4 operand, fp32 accumulation.
//
// The op set of the reference toolkit (and of torch.sparse semi-structured tensors):
//   mm(S, B)             = S B          S: m x k (2:4 along k), B: k x n
//   mm(A, t(S))          = A S^T        A: n x k
//   addmm(bias, A, t(S)) = bias + A S^T   bias: length m, broadcast over rows
//   linear(x, S, bias)   = x S^T + bias   x: [..., k], any leading dims (contiguous)
// t(S) is a view: no data moves. A product whose reduction would run across the 2:4 groups
// (S^T B, A S) is not a 2:4 product and throws kShape. Dense operands: fp32, fp16 or bf16, any
// layout. The result dtype defaults to the dense operand's. NaN/Inf propagate as IEEE says.
#pragma once

#include <optional>

#include "sparse24/format.h"
#include "sparse24/tensor.h"

namespace sparse24 {

// A 2:4 matrix as an operand, possibly transposed.
struct SparseOperand {
  const Sparse24Matrix* matrix = nullptr;
  bool transposed = false;
};
inline SparseOperand t(const Sparse24Matrix& s) { return {&s, true}; }
inline SparseOperand t(const SparseOperand& s) { return {s.matrix, !s.transposed}; }

Tensor mm(const Sparse24Matrix& s, const TensorView& b, std::optional<DType> out = std::nullopt);
Tensor mm(const SparseOperand& s, const TensorView& b, std::optional<DType> out = std::nullopt);
Tensor mm(const TensorView& a, const SparseOperand& s, std::optional<DType> out = std::nullopt);
Tensor addmm(const TensorView& bias, const TensorView& a, const SparseOperand& s,
             std::optional<DType> out = std::nullopt);
Tensor linear(const TensorView& x, const Sparse24Matrix& w, const TensorView* bias = nullptr,
              std::optional<DType> out = std::nullopt);

}  // namespace sparse24
