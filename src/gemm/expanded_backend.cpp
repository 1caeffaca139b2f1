// kAuto's product where the native kernels do not run (a GPU without them, or a product they
// have no kernel for), and GemmBackend::kExpanded: S expanded to a dense m x k matrix (its stored
// values, pruned entries zero, row-major) and D = alpha * scale(S) * S B + beta * D + bias run
// dense on cuBLASLt. Correct wherever cuBLASLt runs, at dense speed plus one pass over S (faster
// on an H100 than the library's cuSPARSELt path, which compresses S in every call).
//
// 16-bit S and B stay in their dtype. 8-bit S and B are widened to fp16 when D is fp16, else to
// bf16: every e4m3 and e5m2 value is exactly an fp16 and a bf16 value, so the products are exact
// and only the fp32 accumulation rounds (no fp8 tensor cores needed, so Ampere runs it too).
// The expanded copies come from the caching allocator and go back to it in stream order.
#include <memory>

#include "cuda/runtime.h"
#include "cuda/transforms_cuda.h"
#include "gemm/backends.h"
#include "sparse24/error.h"

namespace sparse24::gemm {
namespace {

constexpr const char* kOp = "GEMM expanded to dense";

// The dtype an operand is multiplied in: itself, or for fp8 the 16-bit type chosen above.
DType widened(DType t, DType out) {
  if (!is_fp8(t)) return t;
  return out == DType::kF16 ? DType::kF16 : DType::kBF16;
}

}  // namespace

void expanded_mm(const SparseProblem& p) {
  const Sparse24Matrix& s = *p.s;
  const DType wide = widened(s.dtype, p.d.dtype);
  S24_CHECK(is_input_dtype(wide), kDType, kOp, ": no product of ", dtype_name(s.dtype),
            " values (fp32, fp16, bf16, e4m3 and e5m2 have one)");
  S24_CHECK(widened(p.b.dtype, p.d.dtype) == wide, kDType, kOp, ": B ", p.b.describe(),
            " and the 2:4 operand (", dtype_name(s.dtype), ") have no common dtype to multiply "
            "in (16-bit operands must match; fp8 ones widen to ", dtype_name(wide), ")");
  const int64_t m = s.rows, k = s.cols, n = p.b.cols();
  const std::shared_ptr<void> dense_s = cuda::alloc(size_t(m * k) * size_t(dtype_size(wide)));
  DenseProblem q;
  q.a = TensorView::matrix(dense_s.get(), wide, m, k, Layout::kRowMajor, Device::kCUDA);
  Sparse24Matrix unscaled = s;  // the scale goes into alpha
  unscaled.scale = 1.f;
  cuda::decompress(unscaled, q.a);
  q.b = p.b;
  std::shared_ptr<void> wide_b;
  if (p.b.dtype != wide) {
    S24_CHECK(p.b.is_row_major() || p.b.is_col_major(), kShape, kOp, ": fp8 B ", p.b.describe(),
              " must be row- or column-major without gaps to be widened");
    wide_b = cuda::alloc(size_t(k * n) * size_t(dtype_size(wide)));
    cuda::convert(wide_b.get(), wide, p.b.data, p.b.dtype, k * n);
    q.b = TensorView::matrix(wide_b.get(), wide, k, n,
                             p.b.is_row_major() ? Layout::kRowMajor : Layout::kColMajor,
                             Device::kCUDA);
  }
  q.d = p.d;
  q.bias = p.bias;
  q.alpha = p.alpha * s.scale;
  q.beta = p.beta;
  cublaslt_mm(q);
}

}  // namespace sparse24::gemm
