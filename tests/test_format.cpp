// The 2:4 format: group codes, Mask24, the canonical layout byte for byte, round trips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "test_util.h"

namespace sparse24 {
namespace {

TEST(Format, SixValidGroupCodes) {
  int valid = 0;
  for (int c = 0; c < 16; ++c) valid += is_valid_group_code(uint8_t(c));
  EXPECT_EQ(valid, 6);
  for (int i0 = 0; i0 < 4; ++i0)
    for (int i1 = i0 + 1; i1 < 4; ++i1) {
      const uint8_t c = group_code(i0, i1);
      EXPECT_TRUE(is_valid_group_code(c));
      EXPECT_EQ(group_code_bits(c), (1 << i0) | (1 << i1));
    }
}

// The worked example of docs/FORMAT.md.
TEST(Format, CanonicalLayoutWorkedExample) {
  float w[2][12] = {{0, 3, 0, -1, 5, 0, 2, 0, 0, 0, 7, 8},
                    {1, 2, 0, 0, 0, 0, 0, 0, -4, 0, 0, 6}};
  const TensorView v = TensorView::matrix(&w[0][0], DType::kF32, 2, 12);
  const Sparse24Matrix s = prune_magnitude(v);
  const float* values = s.values.data<float>();
  const float expect_values[12] = {3, -1, 5, 2, 7, 8, 1, 2, 0, 0, -4, 6};
  for (int i = 0; i < 12; ++i) EXPECT_EQ(values[i], expect_values[i]) << i;
  ASSERT_EQ(s.mask.row_bytes(), 2);
  const uint8_t* meta = s.mask.codes().data<uint8_t>();
  // Row 0: group 0 keeps (1,3) = 0xD, group 1 (0,2) = 0x8, group 2 (2,3) = 0xE.
  EXPECT_EQ(meta[0], 0x8D);
  EXPECT_EQ(meta[1], 0x0E);  // odd group count: the high nibble stays 0
  // Row 1: group 0 (0,1) = 0x4; group 1 all zero: ties, lowest indices (0,1) = 0x4; group 2 (0,3) = 0xC.
  EXPECT_EQ(meta[2], 0x44);
  EXPECT_EQ(meta[3], 0x0C);
}

TEST(Format, MaskFromDenseRoundTrip) {
  for (auto [rows, cols] : test::sweep_shapes()) {
    const Tensor x = test::randn(rows, cols, uint64_t(rows * 1000 + cols));
    const Sparse24Matrix s = prune_magnitude(x);
    const Tensor dense = s.mask.to_dense();
    const Mask24 back = Mask24::from_dense(dense);
    EXPECT_TRUE(back == s.mask) << rows << "x" << cols;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(dense.data<uint8_t>()[r * cols + c], s.mask.kept(r, c) ? 1 : 0);
  }
}

TEST(Format, MaskFromDenseRejectsBadGroupsNamingRowAndGroup) {
  for (int ones : {0, 1, 3, 4}) {
    Tensor m = Tensor::matrix(3, 8, DType::kF32);
    for (int64_t i = 0; i < 24; ++i) m.data<float>()[i] = (i % 4) < 2 ? 1.f : 0.f;
    for (int c = 0; c < 4; ++c) m.data<float>()[2 * 8 + 4 + c] = c < ones ? 1.f : 0.f;  // row 2, group 1
    try {
      Mask24::from_dense(m);
      FAIL() << "no error for " << ones << " ones";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidMask);
      EXPECT_NE(std::string(e.what()).find("row 2, group 1"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("keeps " + std::to_string(ones)), std::string::npos) << e.what();
    }
  }
  Tensor bad = Tensor::matrix(2, 6, DType::kF32);
  EXPECT_THROW(Mask24::from_dense(bad), Error);
}

TEST(Format, CompressDecompressRoundTripsExactly) {
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (auto [rows, cols] : test::sweep_shapes()) {
      const Tensor x = test::convert(test::randn(rows, cols, 7), dt);
      const Sparse24Matrix s = prune_magnitude(x);
      const Tensor dense = decompress(s, dt);
      // The dense form is 2:4 and compresses back to the same bytes.
      const Sparse24Matrix again = prune_with_mask(dense, s.mask);
      EXPECT_EQ(std::memcmp(again.values.data<uint8_t>(), s.values.data<uint8_t>(),
                            size_t(rows * cols / 2 * dtype_size(dt))), 0);
      EXPECT_TRUE(again.mask == s.mask);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          EXPECT_EQ(test::get(dense, r, c), s.mask.kept(r, c) ? test::get(x, r, c) : 0.0);
    }
  }
}

TEST(Format, TransposedMask) {
  const Tensor w = test::randn(8, 12, 3);
  const Transposable24 t = prune_transposable(w);
  EXPECT_TRUE(t.mask.transposed() == t.wt.mask);
  // Every row keeps columns 0 and 1: column 0 then keeps 4 of 4 rows, so no transpose exists.
  Tensor m = Tensor::matrix(4, 4, DType::kU8);
  for (int i = 0; i < 16; ++i) m.data<uint8_t>()[i] = (i % 4) < 2;
  try {
    Mask24::from_dense(m).transposed();
    FAIL() << "a non-transposable mask was transposed";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidMask);
  }
}

TEST(Format, DecompressScaledStorage) {
  const Tensor x = test::randn(4, 8, 11);
  CompressOptions o;
  o.dtype = DType::kI8;
  o.scale = 0.02f;
  const Sparse24Matrix s = prune_magnitude(x, o);
  const Tensor d = decompress(s);
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 8; ++c)
      if (s.mask.kept(r, c)) {
        const float q = std::nearbyint(std::clamp(x.data<float>()[r * 8 + c] / 0.02f, -128.f, 127.f));
        EXPECT_EQ(d.data<float>()[r * 8 + c], q * 0.02f);
      }
}

}  // namespace
}  // namespace sparse24

namespace sparse24 {
namespace {

// The sm90 metadata layout (docs/research/cutlass-sm90-sparse-layout.md): a permutation of the
// canonical bytes into a zero-padded buffer.
TEST(FormatSm90, OffsetsArePermutationsIntoTheBuffer) {
  for (MetaLayout layout : {MetaLayout::kSm90K64, MetaLayout::kSm90K128})
    for (DType dt : {DType::kF16, DType::kF8E4M3})
      for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{64, 64}, {100, 128}, {200, 352}, {1, 32}}) {
        const Sm90Meta g = sm90_meta(layout, rows, cols, dt);
        std::vector<int> hits(size_t(g.bytes()), 0);
        for (int64_t m = 0; m < rows; ++m)
          for (int64_t b = 0; b < cols / 8; ++b) {
            const int64_t o = g.offset(m, b);
            ASSERT_TRUE(o >= 0 && o < g.bytes()) << m << "," << b;
            ++hits[size_t(o)];
          }
        for (int h : hits) ASSERT_LE(h, 1);  // no two bytes share an address
      }
}

TEST(FormatSm90, KnownOffsets) {
  // 16-bit values, atom 128 (N = atom / 32 = 4), M padded to 128.
  const Sm90Meta h = sm90_meta(MetaLayout::kSm90K128, 100, 256, DType::kBF16);
  EXPECT_EQ(h.m_padded, 128);
  EXPECT_EQ(h.k_padded, 256);
  EXPECT_EQ(h.bytes(), 128 * 32);
  EXPECT_EQ(h.offset(0, 0), 0);
  EXPECT_EQ(h.offset(0, 1), 1);        // columns 8..15: the other byte of the first 16-bit word
  EXPECT_EQ(h.offset(8, 0), 2);        // row 8
  EXPECT_EQ(h.offset(0, 4), 4);        // columns 32..39
  EXPECT_EQ(h.offset(1, 0), 16);       // row 1: 4 N
  EXPECT_EQ(h.offset(0, 2), 128);      // columns 16..23: 32 N
  EXPECT_EQ(h.offset(16, 0), 256);     // row 16: 64 N
  EXPECT_EQ(h.offset(64, 0), 1024);    // row 64: 256 N
  EXPECT_EQ(h.offset(0, 16), 128 * 16);  // column 128: the second K atom's slab
  // 8-bit values: rows of atom_k / 8 bytes, one slab per atom.
  const Sm90Meta e = sm90_meta(MetaLayout::kSm90K64, 70, 128, DType::kF8E5M2);
  EXPECT_EQ(e.m_padded, 128);
  EXPECT_EQ(e.offset(3, 5), 3 * 8 + 5);
  EXPECT_EQ(e.offset(3, 9), 128 * 8 + 3 * 8 + 1);
}

TEST(FormatSm90, TransformsWriteItBesideTheCanonicalMetadata) {
  const Tensor x = test::randn(96, 160, 4);
  CompressOptions o;
  o.dtype = DType::kF16;
  o.layout = MetaLayout::kSm90K64;
  const Sparse24Matrix s = prune_magnitude(x, o);
  ASSERT_TRUE(s.hw_meta.defined());
  EXPECT_EQ(s.layout, MetaLayout::kSm90K64);
  const Sm90Meta g = sm90_meta(o.layout, 96, 160, DType::kF16);
  ASSERT_EQ(s.hw_meta.numel(), g.bytes());
  std::vector<bool> used(size_t(g.bytes()), false);
  for (int64_t m = 0; m < 96; ++m)
    for (int64_t b = 0; b < 20; ++b) {
      EXPECT_EQ(s.hw_meta.data<uint8_t>()[g.offset(m, b)], s.mask.codes().data<uint8_t>()[m * s.mask.row_bytes() + b]);
      used[size_t(g.offset(m, b))] = true;
    }
  for (int64_t i = 0; i < g.bytes(); ++i)
    if (!used[size_t(i)]) {
      ASSERT_EQ(s.hw_meta.data<uint8_t>()[i], 0) << "padding byte " << i;
    }
  // Transposable: W and W^T both carry it.
  const Transposable24 t = prune_transposable(test::randn(64, 96, 5), o);
  EXPECT_TRUE(t.w.hw_meta.defined() && t.wt.hw_meta.defined());
  EXPECT_EQ(std::memcmp(t.wt.hw_meta.data<uint8_t>(), to_sm90_meta(t.wt.mask, o.layout, DType::kF16).data<uint8_t>(),
                        size_t(t.wt.hw_meta.numel())), 0);
  // Errors: fp32 values (CUTLASS's sparse fp32 is tf32 1:2), K not a multiple of 16.
  CompressOptions f = o;
  f.dtype = DType::kF32;
  test::expect_error([&] { prune_magnitude(x, f); }, ErrorKind::kDType, "16-bit or 8-bit");
  test::expect_error([&] { prune_magnitude(test::randn(8, 24, 1), o); }, ErrorKind::kShape, "divisible by 16");
}

// copy_into between float dtypes rounds to nearest even (test::convert), in any layout.
TEST(TensorCopy, ConvertsBetweenFloatDtypes) {
  const Tensor src = test::randn(7, 9, 1);
  for (DType dt : {DType::kF16, DType::kBF16}) {
    const Tensor expected = test::convert(src, dt);
    Tensor d = Tensor::matrix(7, 9, dt, Layout::kColMajor);
    copy_into(d, src);
    Tensor back = Tensor::matrix(7, 9, DType::kF32);
    copy_into(back, d);  // widening is exact
    for (int64_t i = 0; i < 7; ++i)
      for (int64_t j = 0; j < 9; ++j) {
        EXPECT_EQ(test::get(d, i, j), test::get(expected, i, j)) << dtype_name(dt) << " " << i << "," << j;
        EXPECT_EQ(test::get(back, i, j), test::get(expected, i, j)) << dtype_name(dt) << " " << i << "," << j;
      }
  }
  Tensor i8 = Tensor::matrix(7, 9, DType::kI8);
  test::expect_error([&] { copy_into(i8, src); }, ErrorKind::kDType, "not both float");
  Tensor small = Tensor::matrix(7, 8, DType::kF16);
  test::expect_error([&] { copy_into(small, src); }, ErrorKind::kShape, "copy from");
}

// A matrix or mask whose fields disagree, or whose codes are not valid, is refused where it is
// read, not read past its buffers or mis-encoded (a fuzz of the API under AddressSanitizer).
TEST(Format, InconsistentMatricesAndMasksAreRefused) {
  const Tensor x = test::randn(4, 8, 1);
  Sparse24Matrix s = prune_magnitude(x);
  s.rows = 8;  // the values and mask hold 4 rows
  test::expect_error([&] { decompress(s); }, ErrorKind::kShape, "decompress: 2:4 fp32[8 x 8, scale 1, cpu] has values");
  s = prune_magnitude(x);
  s.values = Tensor::matrix(4, 4, DType::kF16);  // dtype says fp32
  test::expect_error([&] { decompress(s); }, ErrorKind::kDType, "holds values of dtype fp16");
  s = prune_magnitude(x);
  s.scale = std::nanf("");
  test::expect_error([&] { decompress(s); }, ErrorKind::kValue, "has scale nan");
  test::expect_error([&] { mm(s, x.view().t()); }, ErrorKind::kValue, "has scale nan");
  test::expect_error([&] { make_sparse24(4, 8, DType::kF16, -1.f, Device::kCPU); }, ErrorKind::kValue,
                     "scale must be finite and > 0, got -1");
  // Codes that are not one of the six: a mask from empty() before its codes are set, a code 0xF.
  const Mask24 blank = Mask24::empty(1, 8);
  fill_zeros(blank.codes());
  const Tensor row = test::randn(1, 8, 3);
  test::expect_error([&] { prune_with_mask(row, blank); }, ErrorKind::kInvalidMask,
                     "prune_with_mask: the mask's row 0, group 0 has code 0x0");
  s = prune_magnitude(x);
  s.mask.set_code(3, 1, 0xF);
  test::expect_error([&] { decompress(s); }, ErrorKind::kInvalidMask, "row 3, group 1 has code 0xf");
  const Mask24 wide = prune_magnitude(test::randn(4, 16, 2)).mask;  // sm90 fp16 metadata needs K % 16 == 0
  wide.set_code(3, 1, 0xF);
  test::expect_error([&] { to_sm90_meta(wide, MetaLayout::kSm90K64, DType::kF16); }, ErrorKind::kInvalidMask,
                     "to_sm90_meta: the mask's row 3, group 1 has code 0xf");
  // Shapes, dtypes and pointers.
  test::expect_error([&] { Mask24::empty(2, -4); }, ErrorKind::kShape, "2 x -4");
  CompressOptions bad_dtype;
  bad_dtype.dtype = DType(42);
  test::expect_error([&] { prune_magnitude(x, bad_dtype); }, ErrorKind::kDType, "");
  EXPECT_FALSE(is_value_dtype(DType(42)));
  test::expect_error([&] { parse_dtype(nullptr); }, ErrorKind::kDType, "a null name");
  const TensorView null_view = TensorView::matrix(nullptr, DType::kF32, 4, 8);
  test::expect_error([&] { check_24(null_view); }, ErrorKind::kValue, "null data pointer");
  test::expect_error([&] { finite_amax(null_view); }, ErrorKind::kValue, "null data pointer");
  test::expect_error([&] { Mask24::from_dense(null_view); }, ErrorKind::kValue, "null data pointer");
  EXPECT_TRUE(Mask24{} == Mask24{});
}

// Views whose fields cannot describe memory (a rank beyond kMaxRank, a negative dimension, more
// elements than int64 counts) are refused by numel(), which every operation's checks reach, not
// read out of bounds or overflowed (a fuzz of the API under UBSan).
TEST(TensorView, MalformedViewsAreRefused) {
  const Tensor x = test::randn(4, 8, 1);
  TensorView rank5 = x.view();
  rank5.rank = 5;
  test::expect_error([&] { (void)rank5.numel(); }, ErrorKind::kShape, "a view of rank 5 (0 to 4 supported)");
  EXPECT_FALSE(rank5.is_contiguous());
  EXPECT_EQ(rank5.describe(), "fp32[rank 5, cpu]");
  TensorView negative = x.view();
  negative.shape[1] = -8;
  test::expect_error([&] { (void)negative.numel(); }, ErrorKind::kShape, "has a negative dimension");
  TensorView huge = x.view();
  huge.shape[0] = int64_t(1) << 40;
  huge.shape[1] = int64_t(1) << 40;
  test::expect_error([&] { (void)huge.numel(); }, ErrorKind::kShape, "more elements than can be addressed");
  EXPECT_FALSE(huge.is_contiguous());
  huge.shape[0] = 4;
  huge.shape[1] = int64_t(1) << 60;  // 2^62 elements: their bytes overflow int64
  test::expect_error([&] { (void)huge.numel(); }, ErrorKind::kShape, "more elements than can be addressed");
  const Sparse24Matrix s = prune_magnitude(test::randn(8, 8, 2));
  huge.shape[0] = 8;  // s's k: the product's shapes agree, the operand's size does not
  test::expect_error([&] { mm(s, huge); }, ErrorKind::kShape, "too large");
  test::expect_error([&] { copy_into(x, rank5); }, ErrorKind::kShape, "rank 5");
}

// copy_into between overlapping views of one buffer copies what the source held.
TEST(TensorCopy, OverlappingViews) {
  const Tensor x = test::randn(8, 4, 2);
  const std::vector<float> before(x.data<float>(), x.data<float>() + 32);
  TensorView a = x.view(), b = x.view();
  a.shape[0] = b.shape[0] = 4;
  b.data = x.data<float>() + 8;  // rows 2..5, overlapping rows 0..3
  copy_into(b, a);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(x.data<float>()[8 + i], before[i]) << i;
}

}  // namespace
}  // namespace sparse24
