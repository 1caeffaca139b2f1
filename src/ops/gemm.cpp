// The products of sparse24/gemm.h: argument validation, output allocation, device and backend
// dispatch.
//
// Every 2:4 product becomes one problem, D (m x n) = alpha * S B + beta * D + bias (per row of
// D), with S the m x k 2:4 matrix (groups along k), as views without copies:
//   mm(S, B)      -> D = out,     B = B
//   mm(A, t(S))   -> D = out^T,   B = A^T    (addmm and linear too, with the bias)
// The CPU solves it with cpu::sparse_mm (the definition); CUDA with a backend of src/gemm/.
// Dense products likewise: out = A B + bias (per column of out) is D = out^T = B^T A^T.
#include "sparse24/gemm.h"

#include <cmath>
#include <cstdio>
#include <mutex>
#include <string>

#include "cpu/gemm_cpu.h"
#include "gemm/backends.h"
#include "sparse24/build_info.h"
#include "sparse24/error.h"

namespace sparse24 {

namespace {

// Sparse24Matrix::describe(), or "t(...)" around it for a transposed operand.
std::string describe(const SparseOperand& s) {
  const std::string core = s.matrix->describe();
  return s.transposed ? "t(" + core + ")" : core;
}

// The 2:4 operand: present, and a consistent compressed matrix (values rows x cols/2 of its
// dtype, metadata rows x cols, both on one device).
void check_sparse(const char* op, const SparseOperand& s) {
  S24_CHECK(s.matrix != nullptr, kValue, op, ": the 2:4 operand is a null matrix pointer");
  s.matrix->check(op);
}

// A dense matrix operand: rank 2, fp32, fp16, bf16 or fp8 (any layout).
void check_dense(const char* op, const char* name, const TensorView& v) {
  S24_CHECK(v.is_matrix(), kShape, op, ": ", name, " must be a matrix, got ", v.describe());
  S24_CHECK(is_input_dtype(v.dtype) || is_fp8(v.dtype), kDType, op, ": ", name, " ",
            v.describe(), " has dtype ", dtype_name(v.dtype),
            "; dense operands are fp32, fp16, bf16, e4m3 or e5m2");
}

// The result dtype: `out` when given (fp32, fp16 or bf16), else the dense operand's (bf16 for
// fp8).
DType result_dtype(const char* op, std::optional<DType> out, DType dense) {
  if (!out) return is_fp8(dense) ? DType::kBF16 : dense;
  S24_CHECK(is_input_dtype(*out), kDType, op, ": output dtype ", dtype_name(*out),
            " is not supported (fp32, fp16 or bf16)");
  return *out;
}

// An output matrix of mm_into: rows x cols, fp32, fp16 or bf16.
void check_out(const char* op, const TensorView& out, int64_t rows, int64_t cols) {
  S24_CHECK(out.is_matrix() && out.rows() == rows && out.cols() == cols, kShape, op,
            ": the output ", out.describe(), " must be ", rows, " x ", cols);
  S24_CHECK(is_input_dtype(out.dtype), kDType, op, ": the output ", out.describe(),
            " must be fp32, fp16 or bf16");
}

void check_scalars(const char* op, const GemmOptions& o) {
  S24_CHECK(std::isfinite(o.alpha) && std::isfinite(o.beta), kValue, op, ": alpha ", o.alpha,
            " and beta ", o.beta, " must be finite");
}

// A bias: m elements, rank 1 or 1 x m, fp32, fp16 or bf16; `what_m` says what m counts.
void check_bias(const char* op, const TensorView& bias, int64_t m, const char* what_m) {
  const bool shape_ok = (bias.rank == 1 && bias.shape[0] == m) ||
                        (bias.rank == 2 && bias.shape[0] == 1 && bias.shape[1] == m);
  S24_CHECK(shape_ok, kShape, op, ": bias ", bias.describe(), " must have length ", m,
            " (rank 1, or 1 x ", m, "), ", what_m);
  S24_CHECK(is_input_dtype(bias.dtype), kDType, op, ": bias ", bias.describe(), " has dtype ",
            dtype_name(bias.dtype), "; a bias is fp32, fp16 or bf16");
}

// All operands on one device; on the CPU, the 2:4 operand's canonical metadata is what is read.
void check_device(const char* op, const SparseOperand& s, const TensorView& dense,
                  const char* name, const TensorView* bias, const TensorView& out) {
  const Device dev = s.matrix->device();
  for (const TensorView* v : {&dense, bias, &out})
    S24_CHECK(!v || v->device == dev, kDevice, op, ": operands on different devices: ",
              describe(s), " and ", v == &out ? "the output" : v == bias ? "bias" : name, " ",
              v->describe());
}

// Says once per process, on stderr, that a 2:4 product ran expanded to dense (no sparse speed),
// and why the native kernels did not take it.
void note_expanded(const gemm::SparseProblem& p, const std::string& native_why) {
  static std::once_flag once;
  std::call_once(once, [&] {
    std::fprintf(stderr,
                 "sparse24: a 2:4 product (%lld x %lld x %lld, %s x %s -> %s) runs expanded to "
                 "dense on cuBLASLt, without sparse speed (said once; later ones may too).\n"
                 "  native: %s\n",
                 static_cast<long long>(p.s->rows), static_cast<long long>(p.d.cols()),
                 static_cast<long long>(p.s->cols), dtype_name(p.s->dtype),
                 dtype_name(p.b.dtype), dtype_name(p.d.dtype), native_why.c_str());
  });
}

// Runs D = alpha * S B + beta * D + bias on the operands' device. The options are checked the
// same way on every device; on CUDA the bias must be contiguous and K > 0.
void run_sparse(const char* op, const gemm::SparseProblem& p, GemmBackend backend) {
  S24_CHECK(backend != GemmBackend::kCublasLt, kValue, op, ": cuBLASLt runs dense products "
            "only; choose kAuto, kNative, kCusparselt or kExpanded for a 2:4 operand");
  S24_CHECK(p.native_kernel.empty() || backend == GemmBackend::kNative, kValue, op,
            ": a native kernel (", p.native_kernel, ") is named but the backend is ",
            gemm_backend_name(backend));
  if (p.s->device() == Device::kCPU) return cpu::sparse_mm(*p.s, p.b, p.bias, p.alpha, p.beta, p.d);
  if (p.d.rows() == 0 || p.d.cols() == 0) return;
  S24_CHECK(p.s->cols > 0, kShape, op, ": K = 0 (a 2:4 operand without columns) on CUDA");
  S24_CHECK(!p.bias || p.bias->strides[p.bias->rank - 1] == 1, kShape, op, ": bias ",
            p.bias->describe(), " must be contiguous on CUDA");
  switch (backend) {
    case GemmBackend::kNative: return gemm::native_mm(p);
    case GemmBackend::kCusparselt: return gemm::cusparselt_mm(p);
    case GemmBackend::kExpanded: return gemm::expanded_mm(p);
    case GemmBackend::kCublasLt: break;  // refused above
    case GemmBackend::kAuto: {
      // Not cuSPARSELt: its per-call compression costs more than its searched kernel saves
      // (docs/GEMM.md), where the expanded product runs at about dense speed.
      std::string native_why;
      if (gemm::native_mm_if_it_fits(p, &native_why)) return;
      try {
        gemm::expanded_mm(p);
      } catch (const Error& e) {  // say why neither runs the call (the expanded product's kind)
        throw Error(e.kind(), detail::concat(op, ": no GEMM backend runs this call. Native: ",
                                             native_why, ". Expanded to dense: ", e.what()));
      }
      note_expanded(p, native_why);
      return;
    }
  }
}

// The 2:4 operand on the right must be S^T: A S would reduce across the groups of S.
void check_right_transposed(const char* op, const TensorView& a, const SparseOperand& s) {
  S24_CHECK(s.transposed, kShape, op, ": A S reduces across the 2:4 groups: not a 2:4 product (A ",
            a.describe(), ", S ", describe(s), "); the 2:4 operand on the right must be t(S), "
            "giving A S^T");
}

// out (n x m) = alpha * A S^T + beta * out + bias: the checks shared by mm_into(A, t(S)),
// addmm and linear, then the product as D = out^T, B = A^T.
void as_t_into(const char* op, const TensorView& out, const TensorView& a, const SparseOperand& s,
               const TensorView* bias, const GemmOptions& o) {
  check_sparse(op, s);
  check_dense(op, "A", a);
  check_right_transposed(op, a, s);
  check_scalars(op, o);
  const Sparse24Matrix& m = *s.matrix;
  S24_CHECK(a.cols() == m.cols, kShape, op, ": inner dimensions differ: A ", a.describe(),
            " has ", a.cols(), " columns, ", describe(s), " has ", m.cols, " rows");
  if (bias) check_bias(op, *bias, m.rows, "the number of rows of the 2:4 matrix");
  check_out(op, out, a.rows(), m.rows);
  check_device(op, s, a, "A", bias, out);
  run_sparse(op, {&m, a.t(), out.t(), bias, o.alpha, o.beta, o.native_kernel}, o.backend);
}

// out (m x n) = alpha * S B + beta * out: mm_into(S, B) and mm.
void sb_into(const char* op, const TensorView& out, const SparseOperand& s, const TensorView& b,
             const GemmOptions& o) {
  check_sparse(op, s);
  check_dense(op, "B", b);
  check_scalars(op, o);
  S24_CHECK(!s.transposed, kShape, op, ": S^T B reduces across the 2:4 groups: not a 2:4 "
            "product (", describe(s), ", B ", b.describe(), "); the 2:4 operand on the left "
            "must be S, giving S B");
  const Sparse24Matrix& m = *s.matrix;
  S24_CHECK(b.rows() == m.cols, kShape, op, ": inner dimensions differ: ", describe(s), " has ",
            m.cols, " columns, B ", b.describe(), " has ", b.rows(), " rows");
  check_out(op, out, m.rows, b.cols());
  check_device(op, s, b, "B", nullptr, out);
  run_sparse(op, {&m, b, out, nullptr, o.alpha, o.beta, o.native_kernel}, o.backend);
}

// mm(A, t(S)) and addmm: a fresh n x m result.
Tensor as_t(const char* op, const TensorView& a, const SparseOperand& s, const TensorView* bias,
            std::optional<DType> out) {
  check_sparse(op, s);
  check_dense(op, "A", a);
  Tensor result = Tensor::matrix(a.rows(), s.matrix->rows, result_dtype(op, out, a.dtype),
                                 Layout::kRowMajor, s.matrix->device());
  as_t_into(op, result, a, s, bias, {});
  return result;
}

}  // namespace

const char* gemm_backend_name(GemmBackend b) {
  switch (b) {
    case GemmBackend::kAuto: return "auto";
    case GemmBackend::kNative: return "native";
    case GemmBackend::kCusparselt: return "cusparselt";
    case GemmBackend::kExpanded: return "expanded";
    case GemmBackend::kCublasLt: return "cublaslt";
  }
  return "?";
}

bool gemm_backend_built(GemmBackend b) {
  switch (b) {
    case GemmBackend::kNative: return gemm::native_built();
    case GemmBackend::kCusparselt: return gemm::cusparselt_built();
    case GemmBackend::kAuto:
    case GemmBackend::kExpanded:
    case GemmBackend::kCublasLt: return built_with_cuda();
  }
  return false;
}

std::vector<NativeKernelInfo> native_kernel_info() { return gemm::native_kernel_info(); }

MetaLayout native_layout(DType dtype) {
  S24_CHECK(dtype == DType::kF16 || dtype == DType::kBF16 || is_fp8(dtype), kDType, "the native "
            "sparse GEMM has no kernels for ", dtype_name(dtype), " values (fp16, bf16, e4m3, "
            "e5m2)");
  return dtype_size(dtype) == 2 ? MetaLayout::kSm90K64 : MetaLayout::kSm90K128;
}

void mm_into(const TensorView& out, const SparseOperand& s, const TensorView& b,
             const GemmOptions& o) {
  sb_into(s.transposed ? "mm_into(out, t(S), B)" : "mm_into(out, S, B)", out, s, b, o);
}

void mm_into(const TensorView& out, const Sparse24Matrix& s, const TensorView& b,
             const GemmOptions& o) {
  sb_into("mm_into(out, S, B)", out, SparseOperand{&s, false}, b, o);
}

void mm_into(const TensorView& out, const TensorView& a, const SparseOperand& s,
             const TensorView* bias, const GemmOptions& o) {
  as_t_into(s.transposed ? "mm_into(out, A, t(S))" : "mm_into(out, A, S)", out, a, s, bias, o);
}

void dense_mm_into(const TensorView& out, const TensorView& a, const TensorView& b,
                   const TensorView* bias, const GemmOptions& o) {
  const char* op = "dense_mm_into(out, A, B)";
  check_dense(op, "A", a);
  check_dense(op, "B", b);
  check_scalars(op, o);
  S24_CHECK(a.cols() == b.rows(), kShape, op, ": inner dimensions differ: A ", a.describe(),
            ", B ", b.describe());
  if (bias) check_bias(op, *bias, b.cols(), "the number of columns of B");
  check_out(op, out, a.rows(), b.cols());
  for (const TensorView* v : {&b, bias, &out})
    S24_CHECK(!v || v->device == a.device, kDevice, op, ": operands on different devices: A ",
              a.describe(), " and ", v->describe());
  S24_CHECK(o.backend == GemmBackend::kAuto || o.backend == GemmBackend::kCublasLt, kValue, op,
            ": backend ", gemm_backend_name(o.backend), " runs 2:4 products only; dense "
            "products run on cuBLASLt");
  S24_CHECK(o.native_kernel.empty(), kValue, op, ": a native kernel (", o.native_kernel,
            ") is named for a dense product");
  if (a.device == Device::kCPU) return cpu::dense_mm(a, b, bias, o.alpha, o.beta, out);
  gemm::cublaslt_mm({b.t(), a.t(), out.t(), bias, o.alpha, o.beta});
}

Tensor mm(const Sparse24Matrix& s, const TensorView& b, std::optional<DType> out) {
  return mm(SparseOperand{&s, false}, b, out);
}

Tensor mm(const SparseOperand& s, const TensorView& b, std::optional<DType> out) {
  const char* op = s.transposed ? "mm(t(S), B)" : "mm(S, B)";
  check_sparse(op, s);
  check_dense(op, "B", b);
  Tensor result = Tensor::matrix(s.matrix->rows, b.cols(), result_dtype(op, out, b.dtype),
                                 Layout::kRowMajor, s.matrix->device());
  sb_into(op, result, s, b, {});
  return result;
}

Tensor mm(const TensorView& a, const SparseOperand& s, std::optional<DType> out) {
  return as_t(s.transposed ? "mm(A, t(S))" : "mm(A, S)", a, s, nullptr, out);
}

Tensor addmm(const TensorView& bias, const TensorView& a, const SparseOperand& s,
             std::optional<DType> out) {
  return as_t(s.transposed ? "addmm(bias, A, t(S))" : "addmm(bias, A, S)", a, s, &bias, out);
}

Tensor linear(const TensorView& x, const Sparse24Matrix& w, const TensorView* bias,
              std::optional<DType> out) {
  const char* op = "linear(x, W, bias)";
  const SparseOperand s{&w, true};
  check_sparse(op, s);
  S24_CHECK(x.rank >= 2 && x.rank <= 4, kShape, op, ": x ", x.describe(),
            " must have rank 2 to 4 ([..., k])");
  const DType dt = result_dtype(op, out, x.dtype);
  S24_CHECK(x.shape[x.rank - 1] == w.cols, kShape, op, ": inner dimensions differ: x ",
            x.describe(), " has ", x.shape[x.rank - 1], " features, W ", describe({&w, false}),
            " has ", w.cols, " columns");
  // The rows of x: a matrix of any layout as given, higher ranks flattened (contiguous only).
  TensorView a = x;
  if (x.rank > 2) {
    S24_CHECK(x.is_contiguous(), kShape, op, ": x ", x.describe(), " of rank ", x.rank,
              " must be contiguous (its leading dims are flattened)");
    int64_t rows = 1;
    for (int i = 0; i + 1 < x.rank; ++i) rows *= x.shape[i];
    a = TensorView::matrix(x.data, x.dtype, rows, x.shape[x.rank - 1], Layout::kRowMajor, x.device);
  }
  // The result: x's leading dims, then m; written through an n x m row-major view.
  const int64_t m = w.rows;
  const Device dev = w.device();
  Tensor result = x.rank == 2   ? Tensor::empty({x.shape[0], m}, dt, dev)
                  : x.rank == 3 ? Tensor::empty({x.shape[0], x.shape[1], m}, dt, dev)
                                : Tensor::empty({x.shape[0], x.shape[1], x.shape[2], m}, dt, dev);
  as_t_into(op, TensorView::matrix(result.view().data, dt, a.rows(), m, Layout::kRowMajor, dev),
            a, s, bias, {});
  return result;
}

}  // namespace sparse24
