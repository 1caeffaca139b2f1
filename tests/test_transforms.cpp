// Magnitude, explicit mask, soft threshold, S-STE scale, masked decay, flip rate, check_24,
// storage conversion and the error paths, each against an independent definition.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>

#include "test_util.h"

namespace sparse24 {
namespace {

using test::expect_error;

// Independent magnitude choice: stable sort of positions by |x| descending.
std::array<int, 2> magnitude_ref(const double x[4]) {
  std::array<int, 4> idx = {0, 1, 2, 3};
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return std::fabs(x[a]) > std::fabs(x[b]); });
  return {std::min(idx[0], idx[1]), std::max(idx[0], idx[1])};
}

double stored(const Sparse24Matrix& s, int64_t r, int64_t slot) {
  return test::get(s.values, r, slot) * double(s.scale);
}

TEST(Magnitude, MatchesStableSortOnEveryShapeDtypeAndLayout) {
  for (DType in_dt : {DType::kF32, DType::kF16, DType::kBF16})
    for (Layout layout : {Layout::kRowMajor, Layout::kColMajor})
      for (bool ties : {false, true})
        for (auto [rows, cols] : test::sweep_shapes()) {
          const Tensor src = ties ? test::rand_ints(rows, cols, 2, 5) : test::randn(rows, cols, 5);
          const Tensor x = test::convert(src, in_dt, layout);
          const Sparse24Matrix s = prune_magnitude(x);
          ASSERT_EQ(s.dtype, in_dt);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t g = 0; g < cols / 4; ++g) {
              double v[4];
              for (int i = 0; i < 4; ++i) v[i] = test::get(x, r, 4 * g + i);
              const auto want = magnitude_ref(v);
              const uint8_t code = s.mask.code(r, g);
              ASSERT_EQ(code, group_code(want[0], want[1])) << "row " << r << " group " << g;
              EXPECT_EQ(stored(s, r, 2 * g), v[want[0]]);
              EXPECT_EQ(stored(s, r, 2 * g + 1), v[want[1]]);
            }
        }
}

TEST(Magnitude, TransposedViewPrunesColumns) {
  const Tensor w = test::randn(12, 8, 9);
  const Sparse24Matrix s = prune_magnitude(w.view().t());  // groups along W's columns
  ASSERT_EQ(s.rows, 8);
  ASSERT_EQ(s.cols, 12);
  const Tensor copy = Tensor::copy_of(w.view().t(), Device::kCPU);
  const Tensor row_major = test::convert(copy, DType::kF32);
  const Sparse24Matrix ref = prune_magnitude(row_major);
  EXPECT_TRUE(s.mask == ref.mask);
}

TEST(Magnitude, StorageConversions) {
  const Tensor x = test::randn(16, 32, 21);
  struct Case { DType dt; float scale; Overflow ov; };
  for (Case c : {Case{DType::kF16, 1.f, Overflow::kPyTorch}, Case{DType::kBF16, 1.f, Overflow::kPyTorch},
                 Case{DType::kF8E4M3, 0.01f, Overflow::kSaturate}, Case{DType::kF8E5M2, 1e-4f, Overflow::kPyTorch},
                 Case{DType::kI8, 0.02f, Overflow::kPyTorch}}) {
    CompressOptions o;
    o.dtype = c.dt;
    o.scale = c.scale;
    o.overflow = c.ov;
    const Sparse24Matrix s = prune_magnitude(x, o);
    const Sparse24Matrix f = prune_magnitude(x);
    EXPECT_TRUE(s.mask == f.mask);
    for (int64_t r = 0; r < 16; ++r)
      for (int64_t k = 0; k < 16; ++k) {
        const float v = f.values.data<float>()[r * 16 + k];
        dispatch_dtype(c.dt, [&](auto tag) {
          using T = typename decltype(tag)::type;
          if constexpr (!std::is_same_v<T, uint8_t>) {
            const T want = from_f32<T>(v, c.scale, c.ov);
            EXPECT_EQ(std::memcmp(&want, s.values.data<T>() + r * 16 + k, sizeof(T)), 0) << dtype_name(c.dt);
          }
        });
      }
  }
}

TEST(ExplicitMask, KeepsExactlyTheMaskedEntries) {
  for (auto [rows, cols] : test::sweep_shapes()) {
    const Tensor x = test::randn(rows, cols, 31);
    const Mask24 mask = prune_magnitude(test::randn(rows, cols, 32)).mask;  // unrelated to x
    const Sparse24Matrix s = prune_with_mask(x, mask);
    EXPECT_TRUE(s.mask == mask);
    const Tensor d = decompress(s);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        EXPECT_EQ(test::get(d, r, c), mask.kept(r, c) ? test::get(x, r, c) : 0.0);
  }
}

TEST(SoftThreshold, MatchesFormula) {
  for (bool ties : {false, true})
    for (auto [rows, cols] : test::sweep_shapes()) {
      const Tensor x = ties ? test::rand_ints(rows, cols, 3, 41) : test::randn(rows, cols, 41);
      const float beta = 0.75f;
      const Tensor d = decompress(prune_soft_threshold(x, beta));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < cols / 4; ++g) {
          double v[4], a[4];
          for (int i = 0; i < 4; ++i) a[i] = std::fabs(v[i] = test::get(x, r, 4 * g + i));
          std::sort(a, a + 4);
          const double t = a[1];  // second smallest |x|
          for (int i = 0; i < 4; ++i) {
            const double want = (v[i] < 0 ? -1 : 1) * std::max(std::fabs(v[i]) - t, 0.0) * beta;
            EXPECT_NEAR(test::get(d, r, 4 * g + i), want, 1e-6 * (1 + std::fabs(want)));
          }
        }
    }
}

TEST(SoftThreshold, IsContinuous) {
  // S is 1-Lipschitz in each of |x_i| and t, so a change of delta in the input moves every
  // output by at most 2 delta, also when the kept positions swap.
  const Tensor x = test::randn(64, 64, 51);
  const Tensor d0 = decompress(prune_soft_threshold(x));
  const float delta = 1e-3f;
  Tensor y = Tensor::copy_of(x, Device::kCPU);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-delta, delta);
  for (int64_t i = 0; i < y.numel(); ++i) y.data<float>()[i] += u(rng);
  const Tensor d1 = decompress(prune_soft_threshold(y));
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_LE(std::fabs(d1.data<float>()[i] - d0.data<float>()[i]), 2 * delta + 1e-6);
  // Across a swap of the kept positions: 2 and 2 + 1e-4 trade places.
  float g[4] = {1.f, 2.f, 3.f, 2.f + 1e-4f}, h[4] = {1.f, 2.f + 1e-4f, 3.f, 2.f};
  const Tensor a = decompress(prune_soft_threshold(TensorView::matrix(g, DType::kF32, 1, 4)));
  const Tensor b = decompress(prune_soft_threshold(TensorView::matrix(h, DType::kF32, 1, 4)));
  for (int i = 0; i < 4; ++i) EXPECT_LE(std::fabs(a.data<float>()[i] - b.data<float>()[i]), 2e-4f);
}

TEST(SsteScale, MatchesDoubleReference) {
  for (auto [rows, cols] : test::sweep_shapes()) {
    const Tensor w = test::randn(rows, cols, 61);
    const Tensor s = decompress(prune_soft_threshold(w));
    double dot = 0, norm = 0;
    for (int64_t i = 0; i < w.numel(); ++i) {
      dot += double(w.data<float>()[i]) * s.data<float>()[i];
      norm += double(s.data<float>()[i]) * s.data<float>()[i];
    }
    EXPECT_NEAR(sste_scale(w), dot / norm, 1e-12 * std::fabs(dot / norm));
  }
  float flat[8] = {1, 1, 1, 1, -2, 2, -2, 2};  // every group ties at its threshold: S(W) = 0
  expect_error([&] { sste_scale(TensorView::matrix(flat, DType::kF32, 1, 8)); }, ErrorKind::kValue, "all zero");
}

TEST(MaskedDecay, AddsAlphaWOnPrunedEntriesOnly) {
  const Tensor w = test::randn(12, 16, 71);
  const Tensor grad = test::randn(12, 16, 72);
  const Tensor before = Tensor::copy_of(grad, Device::kCPU);
  const Mask24 mask = prune_magnitude(w).mask;
  masked_decay(grad, w, mask, 6e-5f);
  for (int64_t r = 0; r < 12; ++r)
    for (int64_t c = 0; c < 16; ++c) {
      const float g0 = before.data<float>()[r * 16 + c], wv = w.data<float>()[r * 16 + c];
      EXPECT_EQ(grad.data<float>()[r * 16 + c], mask.kept(r, c) ? g0 : g0 + 6e-5f * wv);
    }
  expect_error([&] { masked_decay(grad, test::randn(12, 12, 1), mask, 1.f); }, ErrorKind::kShape, "one shape");
  expect_error([&] { masked_decay(grad, w, mask, NAN); }, ErrorKind::kValue, "alpha");
}

TEST(FlipRate, CountsChangedEntries) {
  const Mask24 a = prune_magnitude(test::randn(20, 40, 81)).mask;
  const Mask24 b = prune_magnitude(test::randn(20, 40, 82)).mask;
  const Tensor da = a.to_dense(), db = b.to_dense();
  int64_t diff = 0;
  for (int64_t i = 0; i < 800; ++i) diff += da.data<uint8_t>()[i] != db.data<uint8_t>()[i];
  EXPECT_DOUBLE_EQ(flip_rate(a, b), double(diff) / 800.0);
  EXPECT_EQ(flip_rate(a, a), 0.0);
  expect_error([&] { flip_rate(a, prune_magnitude(test::randn(20, 44, 1)).mask); }, ErrorKind::kShape, "differ");
}

TEST(Check24, ReportsRowsColumnsAndTransposability) {
  const Tensor w = test::randn(16, 24, 91);
  const SparsityReport dense = check_24(w);
  EXPECT_FALSE(dense.rows_24);
  EXPECT_FALSE(dense.cols_24);
  EXPECT_EQ(dense.bad_row, 0);
  EXPECT_EQ(dense.bad_row_group, 0);
  const SparsityReport rows = check_24(decompress(prune_magnitude(w)));
  EXPECT_TRUE(rows.rows_24);
  const SparsityReport both = check_24(decompress(prune_transposable(w).w));
  EXPECT_TRUE(both.rows_24 && both.cols_24 && both.transposable());
  // One extra non-zero at row 5, column 9 breaks row 5's group 2 and column 9's group 1.
  Tensor d = decompress(prune_transposable(w).w);
  for (int c = 8; c < 12; ++c) d.data<float>()[5 * 24 + c] = 1.f;
  const SparsityReport broken = check_24(d);
  EXPECT_FALSE(broken.rows_24);
  EXPECT_EQ(broken.bad_row, 5);
  EXPECT_EQ(broken.bad_row_group, 2);
  EXPECT_FALSE(check_24(test::randn(6, 8, 1)).cols_24);  // 6 rows: not divisible by 4
}

TEST(NonFinitePolicy, ErrorNamesThePositionAndPropagateStoresNaN) {
  Tensor x = test::randn(8, 8, 101);
  x.data<float>()[3 * 8 + 6] = NAN;
  expect_error([&] { prune_magnitude(x); }, ErrorKind::kNonFinite, "row 3, column 6");
  expect_error([&] { prune_mvue(x, 1); }, ErrorKind::kNonFinite, "row 3, column 6");
  expect_error([&] { prune_transposable(x); }, ErrorKind::kNonFinite, "row 3, column 6");
  expect_error([&] { sste_scale(x); }, ErrorKind::kNonFinite, "row 3, column 6");
  x.data<float>()[3 * 8 + 6] = INFINITY;
  expect_error([&] { prune_soft_threshold(x); }, ErrorKind::kNonFinite, "inf");
  CompressOptions o;
  o.non_finite = NonFinite::kPropagate;
  for (const Sparse24Matrix& s : {prune_magnitude(x, o), prune_mvue(x, 3, o), prune_soft_threshold(x, 1.f, o)}) {
    EXPECT_EQ(s.mask.code(3, 1) >> 2, 2);  // the Inf (position 2 of group 1) is kept
    EXPECT_TRUE(std::isnan(s.values.data<float>()[3 * 4 + 2]));
    EXPECT_TRUE(std::isnan(s.values.data<float>()[3 * 4 + 3]));
    EXPECT_FALSE(std::isnan(s.values.data<float>()[3 * 4 + 0]));  // other groups untouched
  }
  o.dtype = DType::kI8;
  o.scale = 1.f;
  expect_error([&] { prune_magnitude(x, o); }, ErrorKind::kValue, "int8 has no NaN");
}

TEST(TransformErrors, NameTheProblem) {
  const Tensor x = test::randn(8, 6, 1);
  expect_error([&] { prune_magnitude(x); }, ErrorKind::kShape, "not divisible by 4");
  const Tensor y = test::randn(8, 8, 1);
  CompressOptions o;
  o.dtype = DType::kI8;
  expect_error([&] { prune_magnitude(y, o); }, ErrorKind::kValue, "explicit scale");
  o.scale = -1.f;
  expect_error([&] { prune_magnitude(y, o); }, ErrorKind::kValue, "scale must be finite and > 0");
  o = {};
  o.dtype = DType::kU8;
  expect_error([&] { prune_magnitude(y, o); }, ErrorKind::kDType, "uint8");
  Tensor i8 = Tensor::matrix(4, 4, DType::kI8);
  expect_error([&] { prune_magnitude(i8); }, ErrorKind::kDType, "fp32, fp16 or bf16");
  expect_error([&] { prune_transposable(test::randn(6, 8, 1)); }, ErrorKind::kShape, "rows, not divisible by 4");
  const Mask24 m = prune_magnitude(test::randn(4, 8, 1)).mask;
  expect_error([&] { prune_with_mask(y, m); }, ErrorKind::kShape, "mask is 4 x 8");
  expect_error([&] { prune_soft_threshold(y, NAN); }, ErrorKind::kValue, "beta");
}

TEST(TransformErrors, CudaTensorInACpuOnlyBuild) {
  if (built_with_cuda()) GTEST_SKIP() << "a CUDA build: tests/gpu covers CUDA tensors";
  const Tensor y = test::randn(8, 8, 1);
  TensorView gpu = y.view();
  gpu.device = Device::kCUDA;
  expect_error([&] { prune_magnitude(gpu); }, ErrorKind::kDevice, "no CUDA backend");
  expect_error([&] { Tensor::matrix(4, 4, DType::kF32, Layout::kRowMajor, Device::kCUDA); }, ErrorKind::kDevice,
               "no CUDA backend");
}

}  // namespace
}  // namespace sparse24
