// The exact transposable mask: the 90 patterns, the choice against brute force (ties included),
// and the compressed W and W^T.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>

#include "test_util.h"

namespace sparse24 {
namespace {

// All 4x4 0/1 matrices (bit 4r + c) with two ones in every row and every column, by brute force.
std::vector<uint16_t> brute_force_patterns() {
  std::vector<uint16_t> out;
  for (uint32_t m = 0; m < 65536; ++m) {
    bool ok = true;
    for (int r = 0; r < 4 && ok; ++r) ok = __builtin_popcount((m >> (4 * r)) & 0xF) == 2;
    for (int c = 0; c < 4 && ok; ++c) {
      int n = 0;
      for (int r = 0; r < 4; ++r) n += (m >> (4 * r + c)) & 1;
      ok = n == 2;
    }
    if (ok) out.push_back(uint16_t(m));
  }
  return out;
}

TEST(Transposable, NinetyPatternsEqualBruteForce) {
  const std::vector<uint16_t> brute = brute_force_patterns();
  ASSERT_EQ(brute.size(), 90u);
  const uint16_t* ours = transposable_patterns();
  std::set<uint16_t> a(brute.begin(), brute.end()), b(ours, ours + kNumTransposablePatterns);
  EXPECT_EQ(b.size(), 90u);
  EXPECT_EQ(a, b);
}

// The documented rule, written independently: each row's kept pair has an index in the order
// (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); score = (s0 + s1) + (s2 + s3) in float; the maximum wins,
// ties to the pattern whose tuple of pair indices is lexicographically smallest.
int pair_index(int bits) {
  const int order[6] = {0x3, 0x5, 0x9, 0x6, 0xA, 0xC};
  for (int i = 0; i < 6; ++i)
    if (order[i] == bits) return i;
  return -1;
}

uint16_t brute_force_choice(const std::vector<uint16_t>& patterns, const float absw[16]) {
  uint16_t best = 0;
  float best_score = -1.f;
  int best_key = 1 << 30;
  for (uint16_t m : patterns) {
    float row_sum[4];
    int key = 0;
    for (int r = 0; r < 4; ++r) {
      float s = 0.f;
      bool first = true;
      for (int c = 0; c < 4; ++c)
        if ((m >> (4 * r + c)) & 1) {
          s = first ? absw[4 * r + c] : s + absw[4 * r + c];
          first = false;
        }
      row_sum[r] = s;
      key = key * 6 + pair_index((m >> (4 * r)) & 0xF);
    }
    const float score = (row_sum[0] + row_sum[1]) + (row_sum[2] + row_sum[3]);
    if (score > best_score || (score == best_score && key < best_key)) {
      best = m;
      best_score = score;
      best_key = key;
    }
  }
  return best;
}

TEST(Transposable, ChoiceEqualsBruteForceTiesIncluded) {
  const std::vector<uint16_t> patterns = brute_force_patterns();
  for (int trial = 0; trial < 3; ++trial) {
    // trial 0: continuous values; 1: integers in [-2, 2] (many ties); 2: all equal magnitudes.
    const int64_t rows = 32, cols = 48;
    Tensor w = trial == 0 ? test::randn(rows, cols, 17) : test::rand_ints(rows, cols, 2, 18);
    if (trial == 2)
      for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = (i % 3) ? 1.f : -1.f;
    const Transposable24 t = prune_transposable(w);
    for (int64_t bi = 0; bi < rows / 4; ++bi)
      for (int64_t bj = 0; bj < cols / 4; ++bj) {
        float absw[16];
        uint16_t got = 0;
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4; ++c) {
            absw[4 * r + c] = std::fabs(w.data<float>()[(4 * bi + r) * cols + 4 * bj + c]);
            if (t.mask.kept(4 * bi + r, 4 * bj + c)) got = uint16_t(got | (1u << (4 * r + c)));
          }
        ASSERT_EQ(got, brute_force_choice(patterns, absw)) << "trial " << trial << " block " << bi << "," << bj;
      }
  }
}

TEST(Transposable, ChosenScoreIsMaximalInDouble) {
  const std::vector<uint16_t> patterns = brute_force_patterns();
  const Tensor w = test::randn(64, 64, 23);
  const Transposable24 t = prune_transposable(w);
  for (int64_t bi = 0; bi < 16; ++bi)
    for (int64_t bj = 0; bj < 16; ++bj) {
      double best = 0, got = 0;
      for (uint16_t m : patterns) {
        double s = 0;
        for (int k = 0; k < 16; ++k)
          if ((m >> k) & 1) s += std::fabs(double(w.data<float>()[(4 * bi + k / 4) * 64 + 4 * bj + k % 4]));
        best = std::max(best, s);
      }
      for (int k = 0; k < 16; ++k)
        if (t.mask.kept(4 * bi + k / 4, 4 * bj + k % 4)) got += std::fabs(double(w.data<float>()[(4 * bi + k / 4) * 64 + 4 * bj + k % 4]));
      EXPECT_NEAR(got, best, 1e-5 * best);
    }
}

TEST(Transposable, CompressesWAndWTransposeConsistently) {
  for (DType in_dt : {DType::kF32, DType::kF16, DType::kBF16})
    for (Layout layout : {Layout::kRowMajor, Layout::kColMajor})
      for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{4, 4}, {8, 12}, {36, 20}, {20, 132}, {64, 64}}) {
        const Tensor w = test::convert(test::randn(rows, cols, 29), in_dt, layout);
        CompressOptions o;
        o.dtype = DType::kF16;
        const Transposable24 t = prune_transposable(w, o);
        const SparsityReport rep = check_24(decompress(t.w));
        EXPECT_TRUE(rep.transposable());
        EXPECT_TRUE(t.wt.mask == t.mask.transposed());
        // W^T compressed equals compressing the transposed view with the transposed mask.
        const Sparse24Matrix ref = prune_with_mask(w.view().t(), t.wt.mask, o);
        EXPECT_EQ(std::memcmp(ref.values.data<uint16_t>(), t.wt.values.data<uint16_t>(), size_t(rows * cols)), 0);
        const Tensor dw = decompress(t.w), dwt = decompress(t.wt);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(dw.data<float>()[r * cols + c], dwt.data<float>()[c * rows + r]);
      }
}

TEST(Transposable, GivenMaskIsCheckedAndNonFiniteFollowsThePolicy) {
  Tensor w = test::randn(8, 8, 31);
  const Mask24 good = prune_transposable(w).mask;
  // A code with i0 > i1 (0x1: positions 1 and 0) is not a valid group code.
  Mask24 bad = Mask24::from_dense(good.to_dense());
  bad.set_code(5, 1, 0x1);
  test::expect_error([&] { compress_transposable(w, bad); }, ErrorKind::kInvalidMask, "block at row 4, column 4");
  // Valid codes, but a column of the block keeps three.
  Mask24 rows_only = prune_magnitude(test::rand_ints(8, 8, 9, 3)).mask;
  for (int r = 0; r < 8; ++r)
    for (int g = 0; g < 2; ++g) rows_only.set_code(r, g, group_code(0, 1));
  test::expect_error([&] { compress_transposable(w, rows_only); }, ErrorKind::kInvalidMask, "not transposable");
  w.data<float>()[2 * 8 + 3] = NAN;
  test::expect_error([&] { compress_transposable(w, good); }, ErrorKind::kNonFinite, "row 2, column 3");
  test::expect_error([&] { prune_transposable(w); }, ErrorKind::kNonFinite, "needs finite weights");
  CompressOptions o;
  o.non_finite = NonFinite::kPropagate;
  EXPECT_NO_THROW(compress_transposable(w, good, o));
}

// Under NonFinite::kPropagate a group holding NaN or Inf stores the canonical NaN in both kept
// slots, in W (groups along rows) and in W^T (groups along W's columns): exactly what
// prune_with_mask stores for W and for W^T under the same mask, whether the non-finite value is
// kept or pruned.
TEST(Transposable, PropagatedNonFiniteGroupsHoldNaN) {
  Tensor w = test::randn(8, 12, 31);
  const Mask24 mask = prune_transposable(w).mask;
  int planted = 0;
  for (int64_t c = 0; c < 12 && planted < 2; ++c)  // one kept and one pruned entry of row 1
    if (mask.kept(1, c) == (planted == 0)) {
      w.data<float>()[1 * 12 + c] = planted == 0 ? INFINITY : NAN;
      ++planted;
    }
  w.data<float>()[6 * 12 + 9] = -NAN;
  CompressOptions o;
  o.non_finite = NonFinite::kPropagate;
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3}) {
    SCOPED_TRACE(dtype_name(dt));
    o.dtype = dt;
    if (dt == DType::kF8E4M3) o.scale = 0.05f;
    const Transposable24 t = compress_transposable(w, mask, o);
    const Tensor wt = Tensor::copy_of(w.view().t(), Device::kCPU);
    const Sparse24Matrix want_w = prune_with_mask(w, mask, o), want_wt = prune_with_mask(wt, mask.transposed(), o);
    const size_t bytes = size_t(8 * 6 * dtype_size(dt));
    EXPECT_EQ(std::memcmp(t.w.values.view().data, want_w.values.view().data, bytes), 0);
    EXPECT_EQ(std::memcmp(t.wt.values.view().data, want_wt.values.view().data, bytes), 0);
  }
}

}  // namespace
}  // namespace sparse24
