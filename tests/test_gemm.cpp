// tests/test_gemm.cpp: the 2:4 products (gemm.h) on the CPU against a double-precision reference.
//
// Every test builds its 2:4 matrix directly (random valid group codes, random stored values) and
// decompresses it here, so these tests depend only on format.h, not on the transforms.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/gemm_cpu.h"
#include "test_util.h"

namespace sparse24 {
namespace {

constexpr DType kValueDTypes[] = {DType::kF32,  DType::kF16,    DType::kBF16,
                                  DType::kI8,   DType::kF8E4M3, DType::kF8E5M2};
constexpr DType kDenseDTypes[] = {DType::kF32, DType::kF16, DType::kBF16};
const std::vector<int64_t> kDims = {4, 8, 12, 20, 36, 60, 100, 132};
const std::vector<int64_t> kNs = {1, 4, 8, 12, 20, 36, 60, 100, 132};

// ---- Inputs ----------------------------------------------------------------------------------

// The per-tensor scale each value dtype is tested with (stored = value / scale): int8 in steps of
// 0.05, fp8 scaled so that N(0, 1) values use their range, a scale on fp16 too.
float scale_for(DType t) {
  switch (t) {
    case DType::kI8: return 0.05f;
    case DType::kF8E4M3: return 0.02f;  // |x| < 9 -> |stored| < 450
    case DType::kF8E5M2: return 0.01f;
    case DType::kF16: return 0.25f;
    default: return 1.f;
  }
}

// A random m x k 2:4 matrix of value dtype `dtype`: every group gets one of the six valid codes,
// every kept slot an N(0, 1) value stored as dtype with scale_for(dtype).
Sparse24Matrix random_sparse(int64_t m, int64_t k, DType dtype, uint64_t seed) {
  static const uint8_t kCodes[6] = {group_code(0, 1), group_code(0, 2), group_code(0, 3),
                                    group_code(1, 2), group_code(1, 3), group_code(2, 3)};
  const float scale = scale_for(dtype);
  Sparse24Matrix s = make_sparse24(m, k, dtype, scale, Device::kCPU);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> pick(0, 5);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t g = 0; g < k / 4; ++g) s.mask.set_code(r, g, kCodes[pick(rng)]);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, uint8_t>) {
      T* v = s.values.data<T>();
      for (int64_t i = 0; i < m * k / 2; ++i)
        v[i] = from_f32<T>(dist(rng), scale, Overflow::kSaturate);
    }
  });
  return s;
}

// The real values of S as a dense row-major m x k matrix in double:
// dense[r][4g + i0] = value[r][2g] * scale, dense[r][4g + i1] = value[r][2g + 1] * scale.
std::vector<double> decompress_ref(const Sparse24Matrix& s) {
  std::vector<double> d(size_t(s.rows * s.cols), 0.0);
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t g = 0; g < s.cols / 4; ++g) {
      const uint8_t code = s.mask.code(r, g);
      d[size_t(r * s.cols + 4 * g + (code & 3))] = test::get(s.values, r, 2 * g) * s.scale;
      d[size_t(r * s.cols + 4 * g + (code >> 2))] = test::get(s.values, r, 2 * g + 1) * s.scale;
    }
  return d;
}

// How a dense operand sits in memory.
enum class Form { kRowMajor, kColMajor, kTransposed, kPadded, kPaddedTransposed };
constexpr Form kForms[] = {Form::kRowMajor, Form::kColMajor, Form::kTransposed, Form::kPadded,
                           Form::kPaddedTransposed};
const char* form_name(Form f) {
  switch (f) {
    case Form::kRowMajor: return "row-major";
    case Form::kColMajor: return "col-major";
    case Form::kTransposed: return "t() of row-major";
    case Form::kPadded: return "row stride cols+3";
    case Form::kPaddedTransposed: return "t() of row stride rows+3";
  }
  return "?";
}

struct Dense {
  Tensor storage;
  TensorView view;
};

// A rows x cols matrix of N(0, 1) values stored exactly as `dtype` (fp32, fp16, bf16), laid out
// as `form`. Padding holds NaN, so a kernel that reads outside the view fails the comparison.
Dense random_dense(int64_t rows, int64_t cols, DType dtype, Form form, uint64_t seed) {
  Dense d;
  switch (form) {
    case Form::kRowMajor: d.storage = Tensor::matrix(rows, cols, dtype); break;
    case Form::kColMajor: d.storage = Tensor::matrix(rows, cols, dtype, Layout::kColMajor); break;
    case Form::kTransposed: d.storage = Tensor::matrix(cols, rows, dtype); break;
    case Form::kPadded: d.storage = Tensor::matrix(rows, cols + 3, dtype); break;
    case Form::kPaddedTransposed: d.storage = Tensor::matrix(cols, rows + 3, dtype); break;
  }
  d.view = d.storage.view();
  if (form == Form::kTransposed) d.view = d.view.t();
  if (form == Form::kPadded) d.view.shape[1] = cols;
  if (form == Form::kPaddedTransposed) {
    d.view.shape[1] = rows;
    d.view = d.view.t();
  }
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  dispatch_input_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* all = d.storage.data<T>();
    for (int64_t i = 0; i < d.storage.numel(); ++i)
      all[i] = from_f32<T>(std::numeric_limits<float>::quiet_NaN(), 1.f, Overflow::kPyTorch);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        *d.view.at<T>(i, j) = from_f32<T>(dist(rng), 1.f, Overflow::kPyTorch);
  });
  return d;
}

// A vector of m N(0, 1) values as `dtype`, rank 1.
Tensor random_vector(int64_t m, DType dtype, uint64_t seed) {
  Tensor t = Tensor::empty({m}, dtype);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  dispatch_input_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t i = 0; i < m; ++i)
      t.data<T>()[i] = from_f32<T>(dist(rng), 1.f, Overflow::kPyTorch);
  });
  return t;
}

// Element i of a CPU vector view (rank 1, or 1 x m), any stride, as double.
double vector_at(const TensorView& v, int64_t i) {
  if (v.rank == 2) return test::get(v, 0, i);
  TensorView row = v;  // the vector as a 1 x m matrix with its stride
  row.rank = 2;
  row.shape[0] = 1;
  row.shape[1] = v.shape[0];
  row.strides[0] = 0;
  row.strides[1] = v.strides[0];
  return test::get(row, 0, i);
}

// ---- The reference and the comparison --------------------------------------------------------

// A reference product: exact values (double) and, per element, the sum of the magnitudes of its
// terms (products and bias), which bounds the fp32 accumulation error.
struct Ref {
  int64_t rows = 0, cols = 0;
  int64_t terms = 0;  // products summed per element
  std::vector<double> val, mag;
};

// S B: S the decompressed m x k matrix, B any k x n view.
Ref ref_sb(const std::vector<double>& s, int64_t m, int64_t k, const TensorView& b) {
  Ref r;
  r.rows = m;
  r.cols = b.cols();
  r.terms = k / 2;
  r.val.assign(size_t(m * r.cols), 0.0);
  r.mag.assign(size_t(m * r.cols), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < k; ++c) {
      const double sv = s[size_t(i * k + c)];
      if (sv == 0.0) continue;
      for (int64_t j = 0; j < r.cols; ++j) {
        const double p = sv * test::get(b, c, j);
        r.val[size_t(i * r.cols + j)] += p;
        r.mag[size_t(i * r.cols + j)] += std::fabs(p);
      }
    }
  return r;
}

// A S^T (+ bias broadcast over rows): A any n x k view, S the decompressed m x k matrix.
Ref ref_as_t(const TensorView& a, const std::vector<double>& s, int64_t m, int64_t k,
             const TensorView* bias = nullptr) {
  Ref r;
  r.rows = a.rows();
  r.cols = m;
  r.terms = k / 2;
  r.val.assign(size_t(r.rows * m), 0.0);
  r.mag.assign(size_t(r.rows * m), 0.0);
  for (int64_t j = 0; j < r.rows; ++j)
    for (int64_t i = 0; i < m; ++i) {
      double sum = bias ? vector_at(*bias, i) : 0.0, mag = std::fabs(sum);
      for (int64_t c = 0; c < k; ++c) {
        const double p = test::get(a, j, c) * s[size_t(i * k + c)];
        sum += p;
        mag += std::fabs(p);
      }
      r.val[size_t(j * m + i)] = sum;
      r.mag[size_t(j * m + i)] = mag;
    }
  return r;
}

// Unit roundoff of the output dtype, and half its smallest subnormal (the absolute rounding error
// of a result that lands in the subnormal range).
double unit_roundoff(DType t) {
  return t == DType::kF16 ? 0x1p-11 : t == DType::kBF16 ? 0x1p-8 : 0x1p-24;
}
double half_subnormal(DType t) {
  return t == DType::kF16 ? 0x1p-25 : t == DType::kBF16 ? 0x1p-134 : 0x1p-150;
}

// Checks a result against the reference: a fresh contiguous CPU tensor of `dtype` holding
// ref.rows x ref.cols elements in row-major order, each element within
//   |out - ref| <= E + u_out * (|ref| + E) + half_subnormal,   E = (terms + 4) 2^-24 mag,
// where E bounds the fp32 computation (each term: stored * scale and the product, one rounding
// each; terms - 1 additions and the bias: gamma_{terms+2} * mag, Higham's recursive summation
// bound, with slack for the 1 / (1 - n u) factor) and the rest is the final rounding to the
// output dtype. The relative Frobenius error must stay < 1e-6 for fp32 (u_out + 1e-6 otherwise).
void expect_close(const Tensor& out, DType dtype, const Ref& ref) {
  ASSERT_TRUE(out.defined());
  ASSERT_EQ(out.device(), Device::kCPU);
  ASSERT_EQ(out.dtype(), dtype) << dtype_name(out.dtype());
  ASSERT_TRUE(out.view().is_contiguous()) << out.view().describe();
  ASSERT_EQ(out.numel(), ref.rows * ref.cols) << out.view().describe();
  const double u_out = unit_roundoff(dtype), tiny = half_subnormal(dtype);
  double err2 = 0, ref2 = 0;
  int bad = 0;
  dispatch_input_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t idx = 0; idx < out.numel(); ++idx) {
      const double o = to_f32(out.data<T>()[idx]), r = ref.val[size_t(idx)];
      const double e = double(ref.terms + 4) * 0x1p-24 * ref.mag[size_t(idx)];
      const double tol = e + u_out * (std::fabs(r) + e) + tiny;
      if (!(std::fabs(o - r) <= tol) && ++bad <= 5)
        ADD_FAILURE() << "element (" << idx / ref.cols << ", " << idx % ref.cols << "): got " << o
                      << ", reference " << r << ", tolerance " << tol;
      err2 += (o - r) * (o - r);
      ref2 += r * r;
    }
  });
  EXPECT_EQ(bad, 0) << "elements out of tolerance";
  if (ref2 > 0) {
    const double limit = dtype == DType::kF32 ? 1e-6 : u_out + 1e-6;
    EXPECT_LT(std::sqrt(err2 / ref2), limit) << "relative Frobenius error";
  }
}

// Two results hold the same bits.
void expect_bitwise_equal(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.dtype(), b.dtype());
  ASSERT_EQ(a.numel(), b.numel());
  const size_t bytes = size_t(a.numel()) * size_t(dtype_size(a.dtype()));
  EXPECT_EQ(std::memcmp(a.view().data, b.view().data, bytes), 0);
}

std::string trace(int64_t m, int64_t k, int64_t n, DType vt, Form f, DType dt) {
  return detail::concat("S ", m, " x ", k, " ", dtype_name(vt), ", dense ", dtype_name(dt), " ",
                        form_name(f), ", n = ", n);
}

// ---- Products against the reference ----------------------------------------------------------

// mm(S, B) over every m, k in kDims and n in kNs; the dense layout and the value dtype rotate.
TEST(GemmMm, MatchesReferenceOverShapesLayoutsAndValueDTypes) {
  int case_id = 0;
  for (int64_t m : kDims)
    for (int64_t k : kDims)
      for (int64_t n : kNs) {
        const Form form = kForms[case_id % 5];
        const DType vt = kValueDTypes[case_id % 6];
        ++case_id;
        SCOPED_TRACE(trace(m, k, n, vt, form, DType::kF32));
        const Sparse24Matrix s = random_sparse(m, k, vt, 1000 + uint64_t(case_id));
        const Dense b = random_dense(k, n, DType::kF32, form, 2000 + uint64_t(case_id));
        const Tensor out = mm(s, b.view);
        ASSERT_EQ(out.rows(), m);
        ASSERT_EQ(out.cols(), n);
        expect_close(out, DType::kF32, ref_sb(decompress_ref(s), m, k, b.view));
      }
}

// mm(A, t(S)) over the same shapes: the result is n x m.
TEST(GemmMmT, MatchesReferenceOverShapesLayoutsAndValueDTypes) {
  int case_id = 0;
  for (int64_t m : kDims)
    for (int64_t k : kDims)
      for (int64_t n : kNs) {
        const Form form = kForms[case_id % 5];
        const DType vt = kValueDTypes[case_id % 6];
        ++case_id;
        SCOPED_TRACE(trace(m, k, n, vt, form, DType::kF32));
        const Sparse24Matrix s = random_sparse(m, k, vt, 3000 + uint64_t(case_id));
        const Dense a = random_dense(n, k, DType::kF32, form, 4000 + uint64_t(case_id));
        const Tensor out = mm(a.view, t(s));
        ASSERT_EQ(out.rows(), n);
        ASSERT_EQ(out.cols(), m);
        expect_close(out, DType::kF32, ref_as_t(a.view, decompress_ref(s), m, k));
      }
}

// Every value dtype x dense dtype x output dtype (default: the dense operand's), both products.
TEST(GemmDTypes, EveryValueDenseAndOutputDType) {
  const std::optional<DType> outs[] = {std::nullopt, DType::kF32, DType::kF16, DType::kBF16};
  struct Shape { int64_t m, k, n; };
  const Shape shapes[] = {{36, 60, 20}, {20, 132, 1}, {100, 12, 36}, {40, 64, 300}};
  uint64_t seed = 0;
  for (const Shape& sh : shapes)
    for (DType vt : kValueDTypes)
      for (DType dt : kDenseDTypes)
        for (const std::optional<DType>& out : outs) {
          const Form form = kForms[seed % 5];
          ++seed;
          SCOPED_TRACE(trace(sh.m, sh.k, sh.n, vt, form, dt) + ", out " +
                       (out ? dtype_name(*out) : "default"));
          const DType expect = out.value_or(dt);
          const Sparse24Matrix s = random_sparse(sh.m, sh.k, vt, 5000 + seed);
          const std::vector<double> sd = decompress_ref(s);
          const Dense b = random_dense(sh.k, sh.n, dt, form, 6000 + seed);
          expect_close(mm(s, b.view, out), expect, ref_sb(sd, sh.m, sh.k, b.view));
          const Dense a = random_dense(sh.n, sh.k, dt, form, 7000 + seed);
          expect_close(mm(a.view, t(s), out), expect, ref_as_t(a.view, sd, sh.m, sh.k));
        }
}

// Zero-sized dimensions: k = 0 gives zeros (plus the bias), m = 0 or n = 0 empty results.
TEST(GemmMm, EmptyDimensions) {
  const Sparse24Matrix s0 = random_sparse(4, 0, DType::kF32, 1);  // k = 0
  const Tensor out = mm(s0, random_dense(0, 3, DType::kF32, Form::kRowMajor, 2).view);
  ASSERT_EQ(out.rows(), 4);
  ASSERT_EQ(out.cols(), 3);
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(out.data<float>()[i], 0.f);
  const Tensor bias = random_vector(4, DType::kF32, 3);
  const Tensor out2 = addmm(bias, random_dense(2, 0, DType::kF32, Form::kRowMajor, 4).view, t(s0));
  for (int64_t j = 0; j < 2; ++j)
    for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(out2.data<float>()[j * 4 + i], bias.data<float>()[i]);
  const Sparse24Matrix s1 = random_sparse(0, 8, DType::kF16, 5);  // m = 0
  EXPECT_EQ(mm(s1, random_dense(8, 3, DType::kF32, Form::kRowMajor, 6).view).numel(), 0);
  const Sparse24Matrix s2 = random_sparse(4, 8, DType::kF16, 7);
  const Tensor out3 = mm(s2, random_dense(8, 0, DType::kF32, Form::kRowMajor, 8).view);  // n = 0
  EXPECT_EQ(out3.rows(), 4);
  EXPECT_EQ(out3.numel(), 0);
  EXPECT_EQ(mm(random_dense(0, 8, DType::kBF16, Form::kColMajor, 9).view, t(s2)).numel(), 0);
}

// ---- Consistency between the entry points ----------------------------------------------------

// mm(S, B), mm(SparseOperand{S}, B) and mm(t(t(S)), B) are one product; t(t(S)) is S.
TEST(GemmMm, OverloadsAndDoubleTransposeAgree) {
  const Sparse24Matrix s = random_sparse(20, 36, DType::kBF16, 11);
  const Dense b = random_dense(36, 12, DType::kF16, Form::kColMajor, 12);
  const SparseOperand tt = t(t(s));
  EXPECT_EQ(tt.matrix, &s);
  EXPECT_FALSE(tt.transposed);
  EXPECT_TRUE(t(s).transposed);
  EXPECT_TRUE(t(tt).transposed);
  const Tensor r1 = mm(s, b.view);
  expect_bitwise_equal(r1, mm(SparseOperand{&s, false}, b.view));
  expect_bitwise_equal(r1, mm(tt, b.view));
  const Dense a = random_dense(5, 36, DType::kF32, Form::kRowMajor, 13);
  expect_bitwise_equal(mm(a.view, t(s)), mm(a.view, t(t(t(s)))));
}

// A S^T is the transpose of S A^T, bit for bit (the same kernel over the same fp32 operand).
TEST(GemmMmT, IsTheTransposeOfSTimesATransposed) {
  const Sparse24Matrix s = random_sparse(36, 60, DType::kF8E4M3, 21);
  const Dense a = random_dense(20, 60, DType::kBF16, Form::kPadded, 22);
  const Tensor ast = mm(a.view, t(s), DType::kF32);  // 20 x 36
  const Tensor sat = mm(s, a.view.t(), DType::kF32);  // 36 x 20
  for (int64_t j = 0; j < 20; ++j)
    for (int64_t i = 0; i < 36; ++i)
      ASSERT_EQ(f32_to_bits(ast.data<float>()[j * 36 + i]),
                f32_to_bits(sat.data<float>()[i * 20 + j]))
          << "(" << j << ", " << i << ")";
}

// ---- Bias: addmm and linear -------------------------------------------------------------------

// The bias (rank 1, 1 x m, strided; fp32, fp16, bf16) is added to every row of A S^T.
TEST(GemmAddmm, BiasBroadcastsOverRows) {
  struct Case { int64_t m, k, n; DType bias_dtype; int form; std::optional<DType> out; };
  const Case cases[] = {{60, 36, 12, DType::kF32, 0, std::nullopt},
                        {60, 36, 12, DType::kBF16, 1, std::nullopt},
                        {20, 132, 1, DType::kF16, 2, DType::kF16},
                        {4, 4, 1, DType::kF32, 1, DType::kBF16},
                        {132, 100, 8, DType::kF16, 0, DType::kF32}};
  uint64_t seed = 100;
  for (const Case& c : cases) {
    SCOPED_TRACE(detail::concat("m ", c.m, ", k ", c.k, ", n ", c.n, ", bias ",
                                dtype_name(c.bias_dtype), " form ", c.form));
    seed += 3;
    const Sparse24Matrix s = random_sparse(c.m, c.k, DType::kF16, seed);
    const Dense a = random_dense(c.n, c.k, DType::kF32, kForms[seed % 5], seed + 1);
    // form 0: rank 1; 1: 1 x m; 2: rank 1 taking every other element of a 2m buffer.
    const Tensor storage = random_vector(c.form == 2 ? 2 * c.m : c.m, c.bias_dtype, seed + 2);
    TensorView bias = storage.view();
    if (c.form == 1) bias = TensorView::matrix(storage.view().data, c.bias_dtype, 1, c.m);
    if (c.form == 2) {
      bias.shape[0] = c.m;
      bias.strides[0] = 2;
    }
    const Tensor out = addmm(bias, a.view, t(s), c.out);
    expect_close(out, c.out.value_or(DType::kF32),
                 ref_as_t(a.view, decompress_ref(s), c.m, c.k, &bias));
  }
}

// linear(x, W, bias) = x W^T + bias over the last dim of x; leading dims are kept.
TEST(GemmLinear, Rank3And4InputsKeepLeadingDims) {
  const int64_t m = 60, k = 36;
  const Sparse24Matrix w = random_sparse(m, k, DType::kBF16, 201);
  const Tensor bias = random_vector(m, DType::kF32, 202);
  const Dense x2 = random_dense(6, k, DType::kF16, Form::kRowMajor, 203);
  TensorView x3 = x2.view;  // the same memory as 2 x 3 x k
  x3.rank = 3;
  x3.shape[0] = 2, x3.shape[1] = 3, x3.shape[2] = k;
  x3.strides[0] = 3 * k, x3.strides[1] = k, x3.strides[2] = 1;
  const Tensor y3 = linear(x3, w, &bias.view());
  ASSERT_EQ(y3.view().rank, 3);
  EXPECT_EQ(y3.view().shape[0], 2);
  EXPECT_EQ(y3.view().shape[1], 3);
  EXPECT_EQ(y3.view().shape[2], m);
  expect_close(y3, DType::kF16, ref_as_t(x2.view, decompress_ref(w), m, k, &bias.view()));
  expect_bitwise_equal(y3, addmm(bias, x2.view, t(w)));

  TensorView x4 = x3;  // 1 x 2 x 3 x k, no bias, fp32 output
  x4.rank = 4;
  x4.shape[0] = 1, x4.shape[1] = 2, x4.shape[2] = 3, x4.shape[3] = k;
  x4.strides[0] = 6 * k, x4.strides[1] = 3 * k, x4.strides[2] = k, x4.strides[3] = 1;
  const Tensor y4 = linear(x4, w, nullptr, DType::kF32);
  ASSERT_EQ(y4.view().rank, 4);
  EXPECT_EQ(y4.view().shape[3], m);
  expect_close(y4, DType::kF32, ref_as_t(x2.view, decompress_ref(w), m, k));
  expect_bitwise_equal(y4, mm(x2.view, t(w), DType::kF32));
}

// A rank-2 x may have any layout, like A in mm(A, t(S)).
TEST(GemmLinear, Rank2InputOfAnyLayout) {
  const Sparse24Matrix w = random_sparse(12, 20, DType::kI8, 301);
  const Tensor bias = random_vector(12, DType::kBF16, 302);
  for (Form form : kForms) {
    SCOPED_TRACE(form_name(form));
    const Dense x = random_dense(8, 20, DType::kBF16, form, 303);
    const Tensor y = linear(x.view, w, &bias.view());
    ASSERT_EQ(y.rows(), 8);
    ASSERT_EQ(y.cols(), 12);
    expect_close(y, DType::kBF16, ref_as_t(x.view, decompress_ref(w), 12, 20, &bias.view()));
  }
}

// ---- IEEE special values -----------------------------------------------------------------------

// A NaN in B reaches exactly the outputs whose row of S keeps that column (pruned entries are
// never multiplied), and an fp16 result beyond 65504 overflows to Inf.
TEST(GemmMm, NaNPropagatesThroughKeptEntriesAndFp16OverflowsToInf) {
  const Sparse24Matrix s = random_sparse(12, 8, DType::kF32, 401);
  Dense b = random_dense(8, 4, DType::kF32, Form::kRowMajor, 402);
  *b.view.at<float>(5, 2) = std::numeric_limits<float>::quiet_NaN();
  const Tensor out = mm(s, b.view);
  for (int64_t r = 0; r < 12; ++r)
    for (int64_t j = 0; j < 4; ++j) {
      const float v = out.data<float>()[r * 4 + j];
      if (j == 2 && s.mask.kept(r, 5)) EXPECT_TRUE(std::isnan(v)) << r;
      else EXPECT_TRUE(std::isfinite(v)) << r << ", " << j;
    }

  Sparse24Matrix big = make_sparse24(1, 4, DType::kF32, 1.f, Device::kCPU);
  big.mask.set_code(0, 0, group_code(1, 3));
  big.values.data<float>()[0] = 300.f;
  big.values.data<float>()[1] = -300.f;
  const Dense ones = random_dense(4, 2, DType::kF16, Form::kRowMajor, 403);
  for (int64_t i = 0; i < 4; ++i) {
    *ones.view.at<f16_t>(i, 0) = from_f32<f16_t>(300.f, 1.f, Overflow::kPyTorch);
    *ones.view.at<f16_t>(i, 1) = from_f32<f16_t>(i == 1 ? 300.f : -300.f, 1.f, Overflow::kPyTorch);
  }
  const Tensor o16 = mm(big, ones.view);  // 300*300 - 300*300 = 0; 300*300 + 300*300 = 180000
  EXPECT_EQ(to_f32(o16.data<f16_t>()[0]), 0.f);
  EXPECT_EQ(to_f32(o16.data<f16_t>()[1]), std::numeric_limits<float>::infinity());
}

// ---- Errors -----------------------------------------------------------------------------------

// Runs `stmt`, expecting a sparse24::Error of `kind` whose message contains `text`.
#define EXPECT_S24_ERROR(stmt, error_kind, text)                                            \
  do {                                                                                      \
    try {                                                                                   \
      (void)(stmt);                                                                         \
      ADD_FAILURE() << "no sparse24::Error from " #stmt;                                    \
    } catch (const Error& e) {                                                              \
      EXPECT_EQ(e.kind(), ErrorKind::error_kind) << e.what();                               \
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos)                        \
          << "message \"" << e.what() << "\" lacks \"" << (text) << "\"";                   \
    }                                                                                       \
  } while (0)

struct ErrorFixture {
  Sparse24Matrix s = random_sparse(12, 20, DType::kF16, 501);  // m = 12, k = 20
  Dense b = random_dense(20, 5, DType::kF32, Form::kRowMajor, 502);
  Dense a = random_dense(5, 20, DType::kF32, Form::kRowMajor, 503);
  Tensor bias = random_vector(12, DType::kF32, 504);
};

TEST(GemmErrors, InnerDimensionsMismatch) {
  ErrorFixture f;
  const Dense b24 = random_dense(24, 5, DType::kF32, Form::kRowMajor, 1);
  EXPECT_S24_ERROR(mm(f.s, b24.view), kShape, "inner dimensions differ");
  EXPECT_S24_ERROR(mm(f.s, b24.view), kShape, "fp32[24 x 5, row-major, cpu]");
  EXPECT_S24_ERROR(mm(f.s, b24.view), kShape, "2:4 fp16[12 x 20");
  const Dense a24 = random_dense(5, 24, DType::kF32, Form::kColMajor, 2);
  EXPECT_S24_ERROR(mm(a24.view, t(f.s)), kShape, "fp32[5 x 24, col-major, cpu] has 24 columns");
  EXPECT_S24_ERROR(addmm(f.bias, a24.view, t(f.s)), kShape, "inner dimensions differ");
  const Dense x24 = random_dense(5, 24, DType::kF32, Form::kRowMajor, 3);
  TensorView x3 = x24.view;  // contiguous 5 x 24 seen as 1 x 5 x 24
  x3.rank = 3;
  x3.shape[0] = 1, x3.shape[1] = 5, x3.shape[2] = 24;
  x3.strides[0] = 120, x3.strides[1] = 24, x3.strides[2] = 1;
  EXPECT_S24_ERROR(linear(x3, f.s), kShape, "has 24 features");
}

TEST(GemmErrors, ProductsAcrossTheGroupsAreNot24) {
  ErrorFixture f;
  const Dense b12 = random_dense(12, 5, DType::kF32, Form::kRowMajor, 1);  // shapes fit S^T B
  EXPECT_S24_ERROR(mm(t(f.s), b12.view), kShape,
                   "S^T B reduces across the 2:4 groups: not a 2:4 product");
  EXPECT_S24_ERROR(mm(t(f.s), b12.view), kShape, "t(2:4 fp16[12 x 20");
  const Dense a12 = random_dense(5, 12, DType::kF32, Form::kRowMajor, 2);  // shapes fit A S
  EXPECT_S24_ERROR(mm(a12.view, SparseOperand{&f.s, false}), kShape,
                   "A S reduces across the 2:4 groups");
  EXPECT_S24_ERROR(mm(a12.view, t(t(f.s))), kShape, "mm(A, S)");
  EXPECT_S24_ERROR(addmm(f.bias, a12.view, SparseOperand{&f.s, false}), kShape,
                   "not a 2:4 product");
}

TEST(GemmErrors, BiasShapeDTypeAndDevice) {
  ErrorFixture f;
  const Tensor b13 = random_vector(13, DType::kF32, 1);
  EXPECT_S24_ERROR(addmm(b13, f.a.view, t(f.s)), kShape, "bias fp32[13, cpu] must have length 12");
  const Tensor b2 = Tensor::matrix(2, 12, DType::kF32);
  EXPECT_S24_ERROR(addmm(b2, f.a.view, t(f.s)), kShape, "bias fp32[2 x 12");
  EXPECT_S24_ERROR(linear(f.a.view, f.s, &b13.view()), kShape, "must have length 12");
  const Tensor b8 = Tensor::empty({12}, DType::kI8);
  EXPECT_S24_ERROR(addmm(b8, f.a.view, t(f.s)), kDType, "bias int8[12, cpu] has dtype int8");
  TensorView on_gpu = f.bias.view();
  on_gpu.device = Device::kCUDA;
  EXPECT_S24_ERROR(addmm(on_gpu, f.a.view, t(f.s)), kDevice, "different devices");
}

TEST(GemmErrors, NullOrEmptyMatrix) {
  ErrorFixture f;
  EXPECT_S24_ERROR(mm(SparseOperand{}, f.b.view), kValue, "null matrix pointer");
  EXPECT_S24_ERROR(mm(f.a.view, SparseOperand{nullptr, true}), kValue, "null matrix pointer");
  EXPECT_S24_ERROR(addmm(f.bias, f.a.view, SparseOperand{nullptr, true}), kValue,
                   "null matrix pointer");
  const Sparse24Matrix empty;
  EXPECT_S24_ERROR(mm(empty, f.b.view), kValue, "no values or metadata");
}

TEST(GemmErrors, InconsistentOrInvalidMatrix) {
  ErrorFixture f;
  Sparse24Matrix wrong_dtype = f.s;
  wrong_dtype.dtype = DType::kBF16;  // the values are fp16
  EXPECT_S24_ERROR(mm(wrong_dtype, f.b.view), kDType, "holds values of dtype fp16");
  Sparse24Matrix wrong_shape = f.s;
  wrong_shape.rows = 13;
  EXPECT_S24_ERROR(mm(wrong_shape, f.b.view), kShape, "expected 13 x 10 row-major");
  Sparse24Matrix bad_code = random_sparse(4, 20, DType::kF32, 2);
  bad_code.mask.set_code(1, 2, 0x3);  // i0 = 3, i1 = 0: not i0 < i1
  EXPECT_S24_ERROR(mm(bad_code, f.b.view), kInvalidMask, "row 1, group 2 has code 0x3");
  EXPECT_S24_ERROR(mm(f.a.view, t(bad_code)), kInvalidMask, "not one of the six valid codes");
}

TEST(GemmErrors, DenseOperandDTypeAndRank) {
  ErrorFixture f;
  const Tensor b8 = Tensor::matrix(20, 5, DType::kI8);
  EXPECT_S24_ERROR(mm(f.s, b8), kDType, "B int8[20 x 5, row-major, cpu] has dtype int8");
  const Tensor a32 = Tensor::matrix(5, 20, DType::kI32);
  EXPECT_S24_ERROR(mm(a32, t(f.s)), kDType, "has dtype int32");
  EXPECT_S24_ERROR(linear(Tensor::matrix(5, 20, DType::kU8), f.s), kDType, "has dtype uint8");
  EXPECT_S24_ERROR(mm(f.s, Tensor::empty({20}, DType::kF32)), kShape,
                   "B must be a matrix, got fp32[20, cpu]");
  EXPECT_S24_ERROR(linear(Tensor::empty({20}, DType::kF32), f.s), kShape, "must have rank 2 to 4");
  TensorView x3 = f.a.view;  // 5 x 20 seen with permuted strides: not contiguous
  x3.rank = 3;
  x3.shape[0] = 5, x3.shape[1] = 1, x3.shape[2] = 20;
  x3.strides[0] = 1, x3.strides[1] = 100, x3.strides[2] = 5;
  EXPECT_S24_ERROR(linear(x3, f.s), kShape, "must be contiguous");
}

TEST(GemmErrors, OutputDType) {
  ErrorFixture f;
  EXPECT_S24_ERROR(mm(f.s, f.b.view, DType::kI8), kDType, "output dtype int8 is not supported");
  EXPECT_S24_ERROR(mm(f.a.view, t(f.s), DType::kF8E5M2), kDType, "output dtype e5m2");
  EXPECT_S24_ERROR(linear(f.a.view, f.s, nullptr, DType::kU8), kDType, "output dtype uint8");
}

TEST(GemmErrors, MixedDevices) {
  ErrorFixture f;
  TensorView b = f.b.view;
  b.device = Device::kCUDA;
  EXPECT_S24_ERROR(mm(f.s, b), kDevice, "mm(S, B): operands on different devices");
  EXPECT_S24_ERROR(mm(f.s, b), kDevice, "fp32[20 x 5, row-major, cuda]");
  TensorView a = f.a.view;
  a.device = Device::kCUDA;
  EXPECT_S24_ERROR(mm(a, t(f.s)), kDevice, "different devices");
  EXPECT_S24_ERROR(linear(a, f.s, &f.bias.view()), kDevice, "different devices");
}

// ---- Dense products: cpu::dense_mm, the definition of dense_mm_into -------------------------

constexpr DType kFloatDTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3,
                                  DType::kF8E5M2};

// random_dense for any float dtype: fp8 matrices hold the fp32 matrix's values rounded to fp8
// (N(0, 1): no overflow), in the same form, NaN padding included.
Dense random_float_dense(int64_t rows, int64_t cols, DType dtype, Form form, uint64_t seed) {
  if (!is_fp8(dtype)) return random_dense(rows, cols, dtype, form, seed);
  const Dense f = random_dense(rows, cols, DType::kF32, form, seed);
  const TensorView& st = f.storage.view();
  Dense d;
  d.storage = test::convert(st, dtype, st.is_row_major() ? Layout::kRowMajor : Layout::kColMajor);
  d.view = f.view;
  d.view.data = d.storage.view().data;
  d.view.dtype = dtype;
  return d;
}

// alpha A B + bias[j] + beta old in double (old: out's content before the product, a row-major
// copy), with the magnitudes of the terms; `terms` = k products.
Ref ref_dense(const TensorView& a, const TensorView& b, const TensorView* bias, float alpha,
              float beta, const Tensor& old) {
  Ref r;
  r.rows = a.rows();
  r.cols = b.cols();
  r.terms = a.cols();
  r.val.assign(size_t(r.rows * r.cols), 0.0);
  r.mag.assign(size_t(r.rows * r.cols), 0.0);
  for (int64_t i = 0; i < r.rows; ++i)
    for (int64_t j = 0; j < r.cols; ++j) {
      double sum = 0, mag = 0;
      for (int64_t t = 0; t < r.terms; ++t) {
        const double p = test::get(a, i, t) * test::get(b, t, j);
        sum += p;
        mag += std::fabs(p);
      }
      sum *= alpha;
      mag *= std::fabs(alpha);
      if (bias) {
        sum += vector_at(*bias, j);
        mag += std::fabs(vector_at(*bias, j));
      }
      if (beta != 0.f) {
        const double o = double(beta) * test::get(old, i, j);
        sum += o;
        mag += std::fabs(o);
      }
      r.val[size_t(i * r.cols + j)] = sum;
      r.mag[size_t(i * r.cols + j)] = mag;
    }
  return r;
}

// A bias of n values as `dtype`: form 0 rank 1, 1 a 1 x n matrix, 2 rank 1 with stride 2.
struct Bias {
  Tensor storage;
  TensorView view;
};
Bias random_bias(int64_t n, DType dtype, int form, uint64_t seed) {
  Bias b;
  b.storage = random_vector(form == 2 ? 2 * n : n, dtype, seed);
  b.view = b.storage.view();
  if (form == 1) b.view = TensorView::matrix(b.view.data, dtype, 1, n);
  if (form == 2) {
    b.view.shape[0] = n;
    b.view.strides[0] = 2;
  }
  return b;
}

// Every shape of a grid (blocks of 16 rows, panels of 128 columns and 256-deep slices crossed),
// with the operand dtypes (fp8 included), output dtype, layouts of A, B and out, alpha/beta and
// bias rotating.
TEST(DenseMm, MatchesReferenceOverShapesLayoutsDTypesAlphaBetaAndBias) {
  struct Scalars { float alpha, beta; };
  const Scalars scalars[] = {{1.f, 0.f}, {0.5f, 0.f}, {1.f, 1.f}, {-2.f, 0.25f}};
  int case_id = 0;
  for (int64_t m : {1, 5, 17, 40})
    for (int64_t k : {1, 3, 64, 300})
      for (int64_t n : {1, 8, 130}) {
        const DType at = kFloatDTypes[case_id % 5], bt = kFloatDTypes[(case_id / 5) % 5];
        const DType ot = kDenseDTypes[case_id % 3];
        const Form af = kForms[case_id % 5], bf = kForms[(case_id + 2) % 5];
        const Form of = kForms[(case_id / 3) % 5];
        const Scalars sc = scalars[case_id % 4];
        const int bias_form = case_id % 4;  // 3: no bias
        const uint64_t seed = 9000 + 10 * uint64_t(case_id);
        ++case_id;
        SCOPED_TRACE(detail::concat(m, " x ", k, " x ", n, ": A ", dtype_name(at), " ",
                                    form_name(af), ", B ", dtype_name(bt), " ", form_name(bf),
                                    ", out ", dtype_name(ot), " ", form_name(of), ", alpha ",
                                    sc.alpha, ", beta ", sc.beta, ", bias form ", bias_form));
        const Dense a = random_float_dense(m, k, at, af, seed);
        const Dense b = random_float_dense(k, n, bt, bf, seed + 1);
        const Dense out = random_dense(m, n, ot, of, seed + 2);
        const Bias bias = random_bias(n, kDenseDTypes[(case_id / 4) % 3], bias_form, seed + 3);
        const TensorView* bv = bias_form == 3 ? nullptr : &bias.view;
        const Tensor old = test::convert(out.view, ot);
        cpu::dense_mm(a.view, b.view, bv, sc.alpha, sc.beta, out.view);
        expect_close(test::convert(out.view, ot), ot,
                     ref_dense(a.view, b.view, bv, sc.alpha, sc.beta, old));
      }
}

// The definition, bit for bit: each element is the fp32 sum of its products in increasing k
// from +0, then beta * out + (alpha * sum + bias), rounded once.
TEST(DenseMm, BitwiseEqualsTheFp32LoopInIncreasingK) {
  const int64_t m = 40, k = 301, n = 260;  // crosses the row blocks, panels and slices
  const Tensor a = test::randn(m, k, 11);
  const Tensor b = test::randn(k, n, 12, Layout::kColMajor);
  const Tensor bias = random_vector(n, DType::kF32, 13);
  for (DType ot : kDenseDTypes) {
    SCOPED_TRACE(dtype_name(ot));
    const Dense out = random_dense(m, n, ot, Form::kPaddedTransposed, 14);
    const Tensor old = test::convert(out.view, DType::kF32);
    const float alpha = 0.75f, beta = -1.5f;
    cpu::dense_mm(a, b, &bias.view(), alpha, beta, out.view);
    dispatch_input_dtype(ot, [&](auto tag) {
      using T = typename decltype(tag)::type;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          float sum = 0.f;
          for (int64_t t = 0; t < k; ++t)
            sum = sum + *a.view().at<float>(i, t) * *b.view().at<float>(t, j);
          const float v =
              beta * *old.view().at<float>(i, j) + (alpha * sum + bias.data<float>()[j]);
          const T expect = from_f32<T>(v, 1.f, Overflow::kPyTorch);
          ASSERT_EQ(std::memcmp(out.view.at<T>(i, j), &expect, sizeof(T)), 0)
              << "(" << i << ", " << j << "): " << to_f32(*out.view.at<T>(i, j)) << " vs " << v;
        }
    });
  }
}

// beta == 0 never reads out (NaN there stays out of the result); beta != 0 does.
TEST(DenseMm, BetaZeroIgnoresOldContent) {
  const Dense a = random_float_dense(9, 20, DType::kF8E4M3, Form::kRowMajor, 21);
  const Dense b = random_float_dense(20, 7, DType::kF8E5M2, Form::kColMajor, 22);
  Tensor out = Tensor::matrix(9, 7, DType::kBF16);
  for (int64_t i = 0; i < out.numel(); ++i) out.data<bf16_t>()[i] = {0x7FC0};  // NaN
  cpu::dense_mm(a.view, b.view, nullptr, 2.f, 0.f, out);
  expect_close(out, DType::kBF16, ref_dense(a.view, b.view, nullptr, 2.f, 0.f, out));
  for (int64_t i = 0; i < out.numel(); ++i) out.data<bf16_t>()[i] = {0x7FC0};
  cpu::dense_mm(a.view, b.view, nullptr, 2.f, 1.f, out);
  for (int64_t i = 0; i < out.numel(); ++i) EXPECT_TRUE(std::isnan(to_f32(out.data<bf16_t>()[i])));
}

// k == 0: out = beta * out + bias (the empty sum is 0); m == 0 or n == 0: nothing to do.
TEST(DenseMm, EmptyDimensions) {
  const Dense a = random_dense(3, 0, DType::kF16, Form::kRowMajor, 31);
  const Dense b = random_dense(0, 4, DType::kF16, Form::kColMajor, 32);
  const Tensor bias = random_vector(4, DType::kF32, 33);
  const Dense out = random_dense(3, 4, DType::kF32, Form::kColMajor, 34);
  const Tensor old = test::convert(out.view, DType::kF32);
  cpu::dense_mm(a.view, b.view, &bias.view(), 1.f, 0.5f, out.view);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j)
      EXPECT_EQ(*out.view.at<float>(i, j),
                0.5f * *old.view().at<float>(i, j) + (0.f + bias.data<float>()[j]));
  const Dense a0 = random_dense(0, 5, DType::kBF16, Form::kRowMajor, 35);
  const Dense b0 = random_dense(5, 0, DType::kBF16, Form::kRowMajor, 36);
  Tensor none = Tensor::matrix(0, 4, DType::kF32);
  cpu::dense_mm(a0.view, random_dense(5, 4, DType::kBF16, Form::kRowMajor, 37).view, nullptr, 1.f,
                0.f, none);
  Tensor none2 = Tensor::matrix(3, 0, DType::kF16);
  cpu::dense_mm(random_dense(3, 5, DType::kBF16, Form::kRowMajor, 38).view, b0.view, nullptr, 1.f,
                1.f, none2);
  EXPECT_EQ(none.numel() + none2.numel(), 0);
}

// ---- mm_into and dense_mm_into through the public calls (CPU): alpha, beta, bias, options ------

// out0 filled with i - j / 2 (row i, column j): a known start for beta.
Tensor start_matrix(int64_t rows, int64_t cols, Layout layout) {
  Tensor t = Tensor::matrix(rows, cols, DType::kF32, layout);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) *t.view().at<float>(i, j) = float(i) - 0.5f * float(j);
  return t;
}

TEST(GemmInto, AlphaBetaAndBiasOnBothProductForms) {
  const Sparse24Matrix s = random_sparse(12, 20, DType::kF16, 7);  // m = 12, k = 20
  const std::vector<double> sd = decompress_ref(s);
  const Dense a = random_dense(5, 20, DType::kF32, Form::kRowMajor, 8);  // A: n x k
  const Dense b = random_dense(20, 5, DType::kF32, Form::kColMajor, 9);  // B: k x n
  const Tensor bias = random_vector(12, DType::kF32, 10);
  GemmOptions o;
  o.alpha = 0.5f;
  o.beta = -2.f;
  // out (n x m) = alpha A S^T + beta out + bias (one per column of out).
  Tensor out = start_matrix(5, 12, Layout::kRowMajor);
  mm_into(out, a.view, t(s), &bias.view(), o);
  for (int64_t j = 0; j < 5; ++j)
    for (int64_t i = 0; i < 12; ++i) {
      double dot = 0;
      for (int64_t c = 0; c < 20; ++c) dot += test::get(a.view, j, c) * sd[size_t(i * 20 + c)];
      const double want = 0.5 * dot - 2.0 * (double(j) - 0.5 * double(i)) + bias.data<float>()[i];
      EXPECT_NEAR(test::get(out, j, i), want, 1e-4) << j << ", " << i;
    }
  // out (m x n, column-major) = alpha S B + beta out.
  Tensor out2 = start_matrix(12, 5, Layout::kColMajor);
  mm_into(out2, s, b.view, o);
  for (int64_t i = 0; i < 12; ++i)
    for (int64_t j = 0; j < 5; ++j) {
      double dot = 0;
      for (int64_t c = 0; c < 20; ++c) dot += sd[size_t(i * 20 + c)] * test::get(b.view, c, j);
      EXPECT_NEAR(test::get(out2, i, j), 0.5 * dot - 2.0 * (double(i) - 0.5 * double(j)), 1e-4);
    }
  // beta = 0 never reads the output: NaN there stays out of the result.
  Tensor nan_out = Tensor::matrix(12, 5, DType::kF32);
  std::fill(nan_out.data<float>(), nan_out.data<float>() + 60, std::nanf(""));
  o.beta = 0.f;
  mm_into(nan_out, s, b.view, o);
  for (int64_t i = 0; i < 60; ++i) ASSERT_TRUE(std::isfinite(nan_out.data<float>()[i])) << i;
}

TEST(GemmInto, OptionsAreCheckedOnEveryDevice) {
  ErrorFixture f;
  Tensor out = Tensor::matrix(12, 5, DType::kF32);
  GemmOptions cublas;
  cublas.backend = GemmBackend::kCublasLt;
  EXPECT_S24_ERROR(mm_into(out, f.s, f.b.view, cublas), kValue, "dense products only");
  GemmOptions named;
  named.native_kernel = "f16_bk_dc_128x256x64_c2x1_p";
  EXPECT_S24_ERROR(mm_into(out, f.s, f.b.view, named), kValue, "is named but the backend is auto");
  GemmOptions native;
  native.backend = GemmBackend::kNative;
  Tensor dense_out = Tensor::matrix(5, 5, DType::kF32);
  EXPECT_S24_ERROR(dense_mm_into(dense_out, f.a.view, f.b.view, nullptr, native), kValue,
                   "runs 2:4 products only");
  GemmOptions bad;
  bad.alpha = std::numeric_limits<float>::infinity();
  EXPECT_S24_ERROR(mm_into(out, f.s, f.b.view, bad), kValue, "must be finite");
  const Tensor bias4 = random_vector(4, DType::kF32, 1);
  EXPECT_S24_ERROR(dense_mm_into(dense_out, f.a.view, f.b.view, &bias4.view()), kShape,
                   "the number of columns of B");
  Tensor wrong = Tensor::matrix(5, 12, DType::kF32);
  EXPECT_S24_ERROR(mm_into(wrong, f.s, f.b.view), kShape, "must be 12 x 5");
}

// An fp8 dense operand is read exactly (its own scale folded into alpha by the caller); the
// result defaults to bf16.
TEST(GemmInto, Fp8DenseOperand) {
  const Sparse24Matrix s = random_sparse(12, 20, DType::kF16, 11);
  const Tensor b8 = test::convert(test::randn(20, 7, 12), DType::kF8E4M3);
  const Tensor b32 = test::convert(b8, DType::kF32);
  const Tensor via_fp8 = mm(s, b8);
  EXPECT_EQ(via_fp8.dtype(), DType::kBF16);
  const Tensor via_f32 = mm(s, b32, DType::kBF16);
  ASSERT_EQ(std::memcmp(via_fp8.view().data, via_f32.view().data, 12 * 7 * 2), 0);
}

}  // namespace
}  // namespace sparse24
