// sparse24/gemm.h: products with a 2:4 operand, fp32 accumulation.
//
// The op set of the reference toolkit (and of torch.sparse semi-structured tensors):
//   mm(S, B)             = S B          S: m x k (2:4 along k), B: k x n
//   mm(A, t(S))          = A S^T        A: n x k
//   addmm(bias, A, t(S)) = bias + A S^T   bias: length m, broadcast over rows
//   linear(x, S, bias)   = x S^T + bias   x: [..., k], any leading dims (contiguous)
// t(S) is a view: no data moves. A product whose reduction would run across the 2:4 groups
// (S^T B, A S) is not a 2:4 product and throws kShape. Dense operands: fp32, fp16, bf16 or fp8
// (e4m3, e5m2), any layout. The result dtype defaults to the dense operand's (bf16 for fp8) and
// may be fp32, fp16 or bf16. NaN/Inf propagate as IEEE says.
#pragma once

#include <optional>
#include <string>
#include <vector>

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

// ---- Products into existing memory, on the CPU or CUDA ------------------------------------
// The operands' device picks the backend. CPU operands run the reference above (the definition
// of every product); CUDA operands run the backend GemmOptions names (docs/GEMM.md lists what
// each supports; an unsupported dtype, layout or shape throws an error naming it). On CUDA a bias
// must be contiguous and K > 0; an empty output is a no-op everywhere.

enum class GemmBackend : uint8_t {
  kAuto,        // 2:4: native when it supports the call, else kExpanded (said once on stderr:
                // no sparse speed); dense: cuBLASLt
  kNative,      // sparse24's CUTLASS sm90 kernels; read the 2:4 operand's hw_meta, which must be
                // native_layout(dtype) (transforms write it with CompressOptions::layout)
  kCusparselt,  // NVIDIA cuSPARSELt, its algorithm searched on the first call of each shape;
                // compresses its own copy of the 2:4 operand in every call
  kCublasLt,    // dense products only
  kExpanded,    // the 2:4 operand expanded to dense, the product on cuBLASLt: any CUDA GPU,
                // dense speed (fp8 operands widened exactly to 16 bits)
};
// "auto", "native", "cusparselt", "cublaslt", "expanded".
const char* gemm_backend_name(GemmBackend b);
// Which backends this build has ("native" needs CUTLASS headers, "cusparselt" the library;
// "auto", "expanded" and "cublaslt": any CUDA build).
bool gemm_backend_built(GemmBackend b);
// The metadata layout the native kernels read for 2:4 values of `dtype`: kSm90K64 for fp16 and
// bf16, kSm90K128 for fp8.
MetaLayout native_layout(DType dtype);

// One native kernel (src/gemm/sm90/kernels.def; GemmOptions::native_kernel takes its name): what
// it multiplies and the layouts it reads and writes.
struct NativeKernelInfo {
  std::string name;
  DType s, b, d;     // the 2:4 operand's values, the dense operand B, the output D (and bias)
  bool b_k_major;    // B K-major (forward-type products) or N-major (16-bit weight gradients)
  bool d_col_major;  // D column-major (forward-type products: row-major Y) or row-major (dW)
  MetaLayout layout; // the metadata layout of its K tile: kSm90K64 or kSm90K128
  bool reads_source; // false: it has no beta * out term and runs only calls with beta == 0
};
// The native kernels in order of preference; empty in a build without them.
std::vector<NativeKernelInfo> native_kernel_info();

struct GemmOptions {
  GemmBackend backend = GemmBackend::kAuto;
  float alpha = 1.f;  // out = alpha * product + beta * out (+ bias); the 2:4 operand's own scale
  float beta = 0.f;   // multiplies too. A dense fp8 operand has no scale: fold it into alpha.
  // kNative only: run this kernel instead of the one the dispatcher picks (benchmarks, tests).
  std::string native_kernel;
};

// out (m x n) = alpha * S B + beta * out. S: m x k; B: k x n.
void mm_into(const TensorView& out, const SparseOperand& s, const TensorView& b,
             const GemmOptions& options = {});
void mm_into(const TensorView& out, const Sparse24Matrix& s, const TensorView& b,
             const GemmOptions& options = {});
// out (n x m) = alpha * A S^T + beta * out + bias. A: n x k; S: m x k; bias: null or m elements.
void mm_into(const TensorView& out, const TensorView& a, const SparseOperand& s,
             const TensorView* bias = nullptr, const GemmOptions& options = {});
// Dense: out (m x n) = alpha * A B + beta * out + bias. A: m x k; B: k x n; bias: null or n
// elements (one per column of out, as in linear).
void dense_mm_into(const TensorView& out, const TensorView& a, const TensorView& b,
                   const TensorView* bias = nullptr, const GemmOptions& options = {});

}  // namespace sparse24
