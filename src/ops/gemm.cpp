// The products of sparse24/gemm.h: argument validation, output allocation, device dispatch.
//
// Every product reduces along the rows of the 2:4 matrix S (m x k, groups along k):
//   mm(S, B)     = S B    -> cpu::mm_sb
//   mm(A, t(S))  = A S^T  -> cpu::mm_as_t (addmm and linear too, with a bias)
// A product of CUDA operands throws kDevice until the CUDA backend lands.
#include "sparse24/gemm.h"

#include <string>

#include "cpu/gemm_cpu.h"
#include "sparse24/error.h"

namespace sparse24 {

namespace {

// "2:4 e4m3[36 x 60, scale 0.02, cpu]", or "t(...)" around it for a transposed operand.
std::string describe(const SparseOperand& s) {
  const Sparse24Matrix& m = *s.matrix;
  const std::string core = detail::concat("2:4 ", dtype_name(m.dtype), "[", m.rows, " x ", m.cols,
                                          ", scale ", m.scale, ", ", device_name(m.device()), "]");
  return s.transposed ? "t(" + core + ")" : core;
}

// The 2:4 operand: present, and a consistent compressed matrix (values rows x cols/2 of its
// dtype, metadata rows x cols, both on one device).
void check_sparse(const char* op, const SparseOperand& s) {
  S24_CHECK(s.matrix != nullptr, kValue, op, ": the 2:4 operand is a null matrix pointer");
  const Sparse24Matrix& m = *s.matrix;
  S24_CHECK(m.values.defined() && m.mask.defined(), kValue, op, ": the 2:4 operand (", m.rows,
            " x ", m.cols, ") has no values or metadata (build it with make_sparse24 or a prune)");
  S24_CHECK(m.rows >= 0 && m.cols >= 0 && m.cols % 4 == 0, kShape, op, ": 2:4 operand ",
            describe(s), " needs columns divisible by 4");
  S24_CHECK(is_value_dtype(m.dtype) && m.values.dtype() == m.dtype, kDType, op, ": 2:4 operand ",
            describe(s), " holds values of dtype ", dtype_name(m.values.dtype()));
  S24_CHECK(m.values.view().is_matrix() && m.values.rows() == m.rows &&
                m.values.cols() == m.cols / 2 && m.values.view().is_row_major(),
            kShape, op, ": 2:4 operand ", describe(s), " has values ", m.values.view().describe(),
            ", expected ", m.rows, " x ", m.cols / 2, " row-major");
  S24_CHECK(m.mask.rows() == m.rows && m.mask.cols() == m.cols, kShape, op, ": 2:4 operand ",
            describe(s), " has metadata for ", m.mask.rows(), " x ", m.mask.cols());
  S24_CHECK(m.mask.device() == m.device(), kDevice, op, ": 2:4 operand ", describe(s),
            " has its metadata on ", device_name(m.mask.device()));
}

// A dense matrix operand: rank 2, fp32, fp16 or bf16 (any layout).
void check_dense(const char* op, const char* name, const TensorView& v) {
  S24_CHECK(v.is_matrix(), kShape, op, ": ", name, " must be a matrix, got ", v.describe());
  S24_CHECK(is_input_dtype(v.dtype), kDType, op, ": ", name, " ", v.describe(), " has dtype ",
            dtype_name(v.dtype), "; dense operands are fp32, fp16 or bf16");
}

// The result dtype: `out` when given (fp32, fp16 or bf16), else the dense operand's.
DType result_dtype(const char* op, std::optional<DType> out, DType dense) {
  if (!out) return dense;
  S24_CHECK(is_input_dtype(*out), kDType, op, ": output dtype ", dtype_name(*out),
            " is not supported (fp32, fp16 or bf16)");
  return *out;
}

// The bias of addmm/linear: m elements, rank 1 or 1 x m, fp32, fp16 or bf16.
void check_bias(const char* op, const TensorView& bias, int64_t m) {
  const bool shape_ok = (bias.rank == 1 && bias.shape[0] == m) ||
                        (bias.rank == 2 && bias.shape[0] == 1 && bias.shape[1] == m);
  S24_CHECK(shape_ok, kShape, op, ": bias ", bias.describe(), " must have length ", m,
            " (rank 1, or 1 x ", m, "), the number of rows of the 2:4 matrix");
  S24_CHECK(is_input_dtype(bias.dtype), kDType, op, ": bias ", bias.describe(), " has dtype ",
            dtype_name(bias.dtype), "; a bias is fp32, fp16 or bf16");
}

// All operands on the device of S; then the backend: the CPU, or an error for CUDA.
void check_device(const char* op, const SparseOperand& s, const TensorView& dense,
                  const char* name, const TensorView* bias) {
  const Device dev = s.matrix->device();
  S24_CHECK(dense.device == dev, kDevice, op, ": operands on different devices: ", describe(s),
            " and ", name, " ", dense.describe());
  S24_CHECK(!bias || bias->device == dev, kDevice, op, ": operands on different devices: ",
            describe(s), " and bias ", bias->describe());
  if (dev == Device::kCUDA) S24_FAIL(kDevice, op, ": no CUDA kernel in this build yet");
  S24_CHECK(s.matrix->layout == MetaLayout::kCanonical, kDevice, op, ": 2:4 operand ", describe(s),
            " carries a GPU metadata layout; the CPU kernel reads the canonical layout");
}

// The 2:4 operand on the right must be S^T: A S would reduce across the groups of S.
void check_right_transposed(const char* op, const TensorView& a, const SparseOperand& s) {
  S24_CHECK(s.transposed, kShape, op, ": A S reduces across the 2:4 groups: not a 2:4 product (A ",
            a.describe(), ", S ", describe(s), "); the 2:4 operand on the right must be t(S), "
            "giving A S^T");
}

// The checks of A S^T (+ bias) shared by mm(A, t(S)), addmm and linear, A an n x k matrix.
void check_as_t(const char* op, const TensorView& a, const SparseOperand& s,
                const TensorView* bias) {
  const Sparse24Matrix& m = *s.matrix;
  S24_CHECK(a.cols() == m.cols, kShape, op, ": inner dimensions differ: A ", a.describe(),
            " has ", a.cols(), " columns, ", describe(s), " has ", m.cols, " rows");
  if (bias) check_bias(op, *bias, m.rows);
  check_device(op, s, a, "A", bias);
}

// mm(A, t(S)) and addmm: a fresh n x m result.
Tensor as_t(const char* op, const TensorView& a, const SparseOperand& s, const TensorView* bias,
            std::optional<DType> out) {
  check_sparse(op, s);
  check_dense(op, "A", a);
  const DType dt = result_dtype(op, out, a.dtype);
  check_right_transposed(op, a, s);
  check_as_t(op, a, s, bias);
  Tensor result = Tensor::matrix(a.rows(), s.matrix->rows, dt);
  cpu::mm_as_t(a, *s.matrix, bias, result);
  return result;
}

}  // namespace

Tensor mm(const Sparse24Matrix& s, const TensorView& b, std::optional<DType> out) {
  return mm(SparseOperand{&s, false}, b, out);
}

Tensor mm(const SparseOperand& s, const TensorView& b, std::optional<DType> out) {
  const char* op = s.transposed ? "mm(t(S), B)" : "mm(S, B)";
  check_sparse(op, s);
  check_dense(op, "B", b);
  const DType dt = result_dtype(op, out, b.dtype);
  S24_CHECK(!s.transposed, kShape, op, ": S^T B reduces across the 2:4 groups: not a 2:4 "
            "product (", describe(s), ", B ", b.describe(), "); the 2:4 operand on the left "
            "must be S, giving S B");
  const Sparse24Matrix& m = *s.matrix;
  S24_CHECK(b.rows() == m.cols, kShape, op, ": inner dimensions differ: ", describe(s), " has ",
            m.cols, " columns, B ", b.describe(), " has ", b.rows(), " rows");
  check_device(op, s, b, "B", nullptr);
  Tensor result = Tensor::matrix(m.rows, b.cols(), dt);
  cpu::mm_sb(m, b, result);
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
  S24_CHECK(is_input_dtype(x.dtype), kDType, op, ": x ", x.describe(), " has dtype ",
            dtype_name(x.dtype), "; dense operands are fp32, fp16 or bf16");
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
  check_as_t(op, a, s, bias);
  // The result: x's leading dims, then m; written through an n x m row-major view.
  const int64_t m = w.rows;
  Tensor result = x.rank == 2   ? Tensor::empty({x.shape[0], m}, dt)
                  : x.rank == 3 ? Tensor::empty({x.shape[0], x.shape[1], m}, dt)
                                : Tensor::empty({x.shape[0], x.shape[1], x.shape[2], m}, dt);
  cpu::mm_as_t(a, w, bias, TensorView::matrix(result.view().data, dt, a.rows(), m));
  return result;
}

}  // namespace sparse24
