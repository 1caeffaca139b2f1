// MVUE24: Philox known answers, determinism, exactly two kept, unbiasedness and inclusion
// probabilities checked statistically against the formula computed in double.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "test_util.h"

namespace sparse24 {
namespace {

TEST(Philox, KnownAnswers) {
  // Known-answer vectors of Philox4x32-10 (Salmon et al., Random123).
  struct Kat { uint32_t ctr[4], key[2], out[4]; };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}, {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}};
  for (const Kat& k : kats) {
    const Philox4 r = philox4x32_10({{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}}, k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.v[i], k.out[i]) << i;
  }
  EXPECT_EQ(philox_uniform(0u), 0.f);
  EXPECT_LT(philox_uniform(~0u), 1.f);
}

// Inclusion probabilities p_i of algorithms.md, in double.
void inclusion(const double x[4], double p[4]) {
  double a[4], s = 0;
  for (int i = 0; i < 4; ++i) s += (a[i] = std::fabs(x[i]) + double(kMvueEps));
  for (int i = 0; i < 4; ++i) {
    p[i] = a[i] / s;
    for (int j = 0; j < 4; ++j)
      if (j != i) p[i] += (a[j] / s) * a[i] / (s - a[j]);
  }
}

TEST(Mvue, KeepsTwoAndScalesByInverseInclusionProbability) {
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16})
    for (auto [rows, cols] : test::sweep_shapes()) {
      const Tensor x = test::convert(test::randn(rows, cols, 3), dt);
      const Sparse24Matrix s = prune_mvue(x, 12345);
      // Stored in the input dtype: half an ulp of rounding (bf16 keeps 8 significant bits).
      const double tol = dt == DType::kF32 ? 1e-6 : dt == DType::kF16 ? 1e-3 : 4e-3;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < cols / 4; ++g) {
          const uint8_t code = s.mask.code(r, g);
          ASSERT_TRUE(is_valid_group_code(code));
          double v[4], p[4];
          for (int i = 0; i < 4; ++i) v[i] = test::get(x, r, 4 * g + i);
          inclusion(v, p);
          const int i0 = code & 3, i1 = code >> 2;
          EXPECT_NEAR(test::get(s.values, r, 2 * g), v[i0] / p[i0], tol * std::fabs(v[i0] / p[i0]) + 1e-6);
          EXPECT_NEAR(test::get(s.values, r, 2 * g + 1), v[i1] / p[i1], tol * std::fabs(v[i1] / p[i1]) + 1e-6);
        }
    }
}

TEST(Mvue, DeterministicPerSeedAndIndependentOfLayout) {
  const Tensor x = test::randn(32, 48, 5);
  const Tensor xc = test::convert(x, DType::kF32, Layout::kColMajor);
  const Sparse24Matrix a = prune_mvue(x, 7), b = prune_mvue(x, 7), c = prune_mvue(xc, 7), d = prune_mvue(x, 8);
  EXPECT_TRUE(a.mask == b.mask);
  EXPECT_TRUE(a.mask == c.mask);
  EXPECT_EQ(std::memcmp(a.values.data<float>(), c.values.data<float>(), 32 * 24 * 4), 0);
  EXPECT_FALSE(a.mask == d.mask);
  // Counter = row * groups + group: a 2 x 8 matrix and the 1 x 16 matrix of the same values in
  // row-major order number their groups alike, so they make the same draws.
  const Tensor y = test::randn(2, 8, 6);
  const Sparse24Matrix e = prune_mvue(y, 99);
  const Sparse24Matrix f = prune_mvue(TensorView::matrix(y.data<float>(), DType::kF32, 1, 16), 99);
  for (int64_t g = 0; g < 4; ++g) EXPECT_EQ(e.mask.code(g / 2, g % 2), f.mask.code(0, g));
  // A 64-bit seed uses both key words.
  EXPECT_FALSE(prune_mvue(x, 1).mask == prune_mvue(x, 1 + (uint64_t(1) << 32)).mask);
}

TEST(Mvue, KeptValuesMatchTheFormulaOnBothSidesOfTheNormalRange) {
  // Below S = 2^100 the rule multiplies by correctly rounded reciprocals, above it (fp32 values
  // of ~1e30 and more) it divides: either way x_i / p_i up to a few ulps. Reference in long
  // double with T_j summed directly (S - a_j would cancel).
  const float groups[3][4] = {{3, -1, 0.5f, 0}, {1, 1, 1, 1}, {-7, 2, 0, 0.25f}};
  for (int e : {-20, 0, 40, 96, 98, 99, 100, 101, 104, 110, 120})
    for (const auto& g : groups) {
      float x[4];
      for (int i = 0; i < 4; ++i) x[i] = std::ldexp(g[i], e);
      long double a[4], s = 0;
      for (int i = 0; i < 4; ++i) s += (a[i] = std::fabs((long double)x[i]) + kMvueEps);
      for (uint64_t seed = 0; seed < 40; ++seed) {
        const Sparse24Matrix m = prune_mvue(TensorView::matrix(x, DType::kF32, 1, 4), seed);
        const uint8_t code = m.mask.code(0, 0);
        ASSERT_TRUE(is_valid_group_code(code));
        for (int k = 0; k < 2; ++k) {
          const int i = k == 0 ? (code & 3) : (code >> 2);
          long double p = a[i] / s;
          for (int j = 0; j < 4; ++j) {
            long double t = 0;
            for (int l = 0; l < 4; ++l) t += l == j ? 0 : a[l];
            if (j != i) p += (a[j] / s) * a[i] / t;
          }
          const double ref = double(x[i] / p), got = m.values.data<float>()[k];
          EXPECT_NEAR(got, ref, 1e-6 * std::fabs(ref)) << "scale 2^" << e << ", position " << i;
        }
      }
    }
}

TEST(Mvue, AllZeroGroupStaysZero) {
  float z[8] = {0, 0, 0, 0, 1, 0, 0, 0};
  for (uint64_t seed = 0; seed < 50; ++seed) {
    const Tensor d = decompress(prune_mvue(TensorView::matrix(z, DType::kF32, 1, 8), seed));
    for (int i = 0; i < 4; ++i) EXPECT_EQ(d.data<float>()[i], 0.f);
  }
}

TEST(Mvue, UnbiasedWithTheRightKeepFrequencies) {
  // Groups chosen to stress the estimator: equal values, one dominant, zeros, tiny, negative.
  const float rows[4][16] = {
      {1, 1, 1, 1, 10, 0.1f, 0.1f, 0.1f, 0, 0, 3, -3, 1e-3f, 2, -5, 0.5f},
      {-1, 2, -3, 4, 0, 0, 0, 7, 0.25f, 0.25f, 0.5f, 1, 100, 1, 1, 1},
      {1e-6f, 1e-6f, 1, 1, -2, 0.5f, 0, -0.5f, 3, 2, 1, 0, 0.9f, -0.8f, 0.7f, -0.6f},
      {5, 5, 0, 0, 1, 2, 3, 4, -1, -1, -1, 2, 0.01f, 0.02f, 0.03f, 0.04f}};
  const TensorView x = TensorView::matrix(const_cast<float*>(&rows[0][0]), DType::kF32, 4, 16);
  const int kSeeds = 20000;
  std::vector<double> sum(64, 0.0), kept(64, 0.0);
  for (int seed = 0; seed < kSeeds; ++seed) {
    const Sparse24Matrix s = prune_mvue(x, uint64_t(seed) * 2654435761u);
    const Tensor d = decompress(s);
    for (int i = 0; i < 64; ++i) {
      sum[size_t(i)] += d.data<float>()[i];
      kept[size_t(i)] += s.mask.kept(i / 16, i % 16);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int g = 0; g < 4; ++g) {
      double v[4], p[4];
      for (int i = 0; i < 4; ++i) v[i] = rows[r][4 * g + i];
      inclusion(v, p);
      for (int i = 0; i < 4; ++i) {
        const size_t k = size_t(16 * r + 4 * g + i);
        const double freq = kept[k] / kSeeds, mean = sum[k] / kSeeds;
        EXPECT_NEAR(freq, p[i], 5 * std::sqrt(p[i] * (1 - p[i]) / kSeeds) + 1e-9) << "row " << r << " col " << 4 * g + i;
        const double sd = std::fabs(v[i]) * std::sqrt((1 / p[i] - 1) / kSeeds);
        EXPECT_NEAR(mean, v[i], 5 * sd + 1e-5 * std::fabs(v[i])) << "row " << r << " col " << 4 * g + i;
      }
    }
}

}  // namespace
}  // namespace sparse24
