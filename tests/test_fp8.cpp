// The FP8 casts of FP8 GEMM operands (tensor.h: finite_amax, fp8_scale, quantize_into; format.h:
// to_storage): the element rule, layouts, and the errors of bad calls.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "test_util.h"

namespace sparse24 {
namespace {

using test::expect_error;

constexpr float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::nanf("");

TEST(Fp8Cast, ElementRuleSaturatesFiniteValuesAndKeepsOverflowVisible) {
  // Finite values beyond the range saturate; +-Inf stays non-finite (e4m3 has no Inf: NaN).
  EXPECT_EQ(quantize_f32<e4m3_t>(1000.f, 1.f).bits, 0x7E);   // 448
  EXPECT_EQ(quantize_f32<e4m3_t>(-1000.f, 1.f).bits, 0xFE);  // -448
  EXPECT_EQ(quantize_f32<e4m3_t>(kInf, 1.f).bits, 0x7F);     // NaN
  EXPECT_EQ(quantize_f32<e4m3_t>(-kInf, 1.f).bits, 0xFF);
  EXPECT_EQ(quantize_f32<e4m3_t>(kNaN, 1.f).bits, 0x7F);
  EXPECT_EQ(quantize_f32<e5m2_t>(1e6f, 1.f).bits, 0x7B);     // 57344
  EXPECT_EQ(quantize_f32<e5m2_t>(kInf, 1.f).bits, 0x7C);     // Inf
  EXPECT_EQ(quantize_f32<e5m2_t>(-kInf, 1.f).bits, 0xFC);
  EXPECT_EQ(quantize_f32<e5m2_t>(kNaN, 1.f).bits & 0x7F, 0x7E);
  // The scale divides first: 300 / 2 = 150 rounds to 144 (e4m3 steps by 16 in [128, 256)).
  EXPECT_EQ(e4m3_to_f32(quantize_f32<e4m3_t>(300.f, 2.f).bits), 144.f);
  // A finite value whose quotient overflows float still saturates.
  EXPECT_EQ(quantize_f32<e4m3_t>(3e38f, 1e-3f).bits, 0x7E);
}

// docs/DTYPES.md's example.
TEST(Fp8Cast, DocExample) {
  Tensor x = Tensor::matrix(1, 4, DType::kF32);
  const float in[4] = {3.f, -600.f, kInf, kNaN};
  std::memcpy(x.data<float>(), in, sizeof in);
  EXPECT_EQ(finite_amax(x), 600.f);
  const float scale = fp8_scale(600.f, DType::kF8E4M3);
  EXPECT_EQ(scale, 600.f / 448.f);
  Tensor q = Tensor::matrix(1, 4, DType::kF8E4M3);
  quantize_into(q, x, scale);
  const uint8_t want[4] = {0x41, 0xFE, 0x7F, 0x7F};
  EXPECT_EQ(std::memcmp(q.data<uint8_t>(), want, 4), 0);
  EXPECT_EQ(e4m3_to_f32(0x41), 2.25f);
}

TEST(Fp8Cast, AmaxIgnoresNonFiniteValuesAndScaleMapsItToTheMax) {
  Tensor x = test::randn(5, 12, 1);
  x.data<float>()[7] = -9.5f;
  x.data<float>()[3] = kNaN;
  x.data<float>()[30] = -kInf;
  EXPECT_EQ(finite_amax(x), 9.5f);
  EXPECT_EQ(finite_amax(test::convert(x, DType::kBF16, Layout::kColMajor)), 9.5f);
  EXPECT_EQ(fp8_scale(448.f, DType::kF8E4M3), 1.f);
  EXPECT_EQ(fp8_scale(57344.f * 4, DType::kF8E5M2), 4.f);
  EXPECT_EQ(fp8_scale(0.f, DType::kF8E4M3), 1.f);  // an all-zero tensor
  EXPECT_EQ(fp8_scale(kInf, DType::kF8E4M3), 1.f);
  Tensor nan_only = Tensor::matrix(1, 2, DType::kF32);
  nan_only.data<float>()[0] = kNaN;
  nan_only.data<float>()[1] = kInf;
  EXPECT_EQ(finite_amax(nan_only), 0.f);
  expect_error([] { fp8_scale(1.f, DType::kF16); }, ErrorKind::kDType, "not an fp8 dtype");
}

TEST(Fp8Cast, QuantizeIntoAnyLayoutFollowsTheElementRule) {
  Tensor x = test::randn(6, 10, 2);
  x.data<float>()[4] = 5000.f;  // saturates
  x.data<float>()[11] = kInf;
  x.data<float>()[12] = kNaN;
  const float scale = 0.75f;
  for (DType dt : {DType::kF8E4M3, DType::kF8E5M2})
    for (DType src_dt : {DType::kF32, DType::kF16, DType::kBF16})
      for (Layout src_layout : {Layout::kRowMajor, Layout::kColMajor})
        for (Layout dst_layout : {Layout::kRowMajor, Layout::kColMajor}) {
          const Tensor src = test::convert(x, src_dt, src_layout);
          Tensor dst = Tensor::matrix(6, 10, dt, dst_layout);
          quantize_into(dst, src, scale);
          for (int64_t i = 0; i < 6; ++i)
            for (int64_t j = 0; j < 10; ++j) {
              const float v = float(test::get(src, i, j));
              const uint8_t want = dt == DType::kF8E4M3 ? quantize_f32<e4m3_t>(v, scale).bits
                                                        : quantize_f32<e5m2_t>(v, scale).bits;
              ASSERT_EQ(*dst.view().at<uint8_t>(i, j), want) << dtype_name(dt) << " (" << i << ", " << j << ")";
            }
        }
}

TEST(Fp8Cast, SecondDestinationGetsTheSameCodes) {
  const Tensor x = test::convert(test::randn(7, 12, 9), DType::kBF16);
  Tensor rows = Tensor::matrix(7, 12, DType::kF8E5M2), cols = Tensor::matrix(12, 7, DType::kF8E5M2);
  const TensorView cols_t = cols.view().t();
  quantize_into(rows, x, 0.01f, &cols_t);
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t j = 0; j < 12; ++j) {
      EXPECT_EQ(*rows.view().at<uint8_t>(i, j), quantize_f32<e5m2_t>(float(test::get(x, i, j)), 0.01f).bits);
      EXPECT_EQ(*cols.view().at<uint8_t>(j, i), *rows.view().at<uint8_t>(i, j));
    }
  Tensor wrong_dtype = Tensor::matrix(7, 12, DType::kF8E4M3), wrong_shape = Tensor::matrix(12, 7, DType::kF8E5M2);
  test::expect_error([&] { quantize_into(rows, x, 1.f, &wrong_dtype.view()); }, ErrorKind::kDType, "dst's dtype");
  test::expect_error([&] { quantize_into(rows, x, 1.f, &wrong_shape.view()); }, ErrorKind::kShape, "dst's shape");
}

TEST(Fp8Cast, BadCallsSayWhy) {
  const Tensor x = test::randn(4, 8, 3);
  Tensor q = Tensor::matrix(4, 8, DType::kF8E4M3);
  Tensor wrong_shape = Tensor::matrix(8, 4, DType::kF8E4M3);
  Tensor f16 = Tensor::matrix(4, 8, DType::kF16);
  expect_error([&] { quantize_into(wrong_shape, x, 1.f); }, ErrorKind::kShape, "one shape");
  expect_error([&] { quantize_into(f16, x, 1.f); }, ErrorKind::kDType, "must be e4m3 or e5m2");
  expect_error([&] { quantize_into(q, q, 1.f); }, ErrorKind::kDType, "must be fp32, fp16 or bf16");
  expect_error([&] { quantize_into(q, x, 0.f); }, ErrorKind::kValue, "scale must be finite and > 0");
  expect_error([&] { quantize_into(q, x, kNaN); }, ErrorKind::kValue, "scale must be finite and > 0");
  expect_error([&] { finite_amax(q); }, ErrorKind::kDType, "must be fp32, fp16 or bf16");
}

TEST(Fp8Cast, ToStorageQuantizesValuesWithTheirOwnScale) {
  const Tensor w = test::randn(32, 64, 4);
  const Sparse24Matrix s = prune_magnitude(w, [] {
    CompressOptions o;
    o.dtype = DType::kF32;
    return o;
  }());
  for (DType dt : {DType::kF8E4M3, DType::kF8E5M2}) {
    const Sparse24Matrix q = to_storage(s, dt, MetaLayout::kSm90K128);
    EXPECT_EQ(q.dtype, dt);
    EXPECT_EQ(q.scale, fp8_scale(finite_amax(s.values), dt));
    EXPECT_EQ(q.mask.codes().data<uint8_t>(), s.mask.codes().data<uint8_t>());  // the same mask
    Tensor want = Tensor::matrix(s.values.rows(), s.values.cols(), dt);
    quantize_into(want, s.values, q.scale);
    EXPECT_EQ(std::memcmp(q.values.data<uint8_t>(), want.data<uint8_t>(), size_t(want.numel())), 0);
    const Tensor hw = to_sm90_meta(s.mask, MetaLayout::kSm90K128, dt);
    ASSERT_EQ(q.hw_meta.numel(), hw.numel());
    EXPECT_EQ(std::memcmp(q.hw_meta.data<uint8_t>(), hw.data<uint8_t>(), size_t(hw.numel())), 0);
    // The largest kept magnitude lands on the format's largest finite value.
    EXPECT_NEAR(finite_amax(decompress(q, DType::kF32)), finite_amax(s.values), 1e-6 * finite_amax(s.values));
  }
  const Sparse24Matrix h = to_storage(s, DType::kBF16);
  EXPECT_EQ(h.scale, 1.f);
  const float v = float(test::get(s.values, 3, 5));
  EXPECT_EQ(test::get(h.values, 3, 5), double(to_f32(from_f32<bf16_t>(v, 1.f, Overflow::kPyTorch))));
  expect_error([&] { to_storage(to_storage(s, DType::kF8E4M3), DType::kF16); }, ErrorKind::kDType, "without a scale");
  expect_error([&] { to_storage(s, DType::kI8); }, ErrorKind::kDType, "cannot re-store");
}

}  // namespace
}  // namespace sparse24
