// Every CUDA transform against the CPU reference: random inputs of many shapes, dtypes and layouts;
// masks, metadata and values compared byte for byte (both backends run rules24.h's code without
// FMA contraction; only a NaN's sign and payload may differ after arithmetic, ALGORITHMS.md). Every output is poisoned (0xFF) when allocated, so an element a kernel
// forgets to write shows. Without a GPU every test reports itself skipped.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <tuple>

#include "gpu/gpu_test.h"
#include "test_util.h"

namespace sparse24 {
namespace {

class Cuda : public test::GpuTest {};

// Byte-for-byte equality of two compressed matrices (the GPU one is copied back first).
void expect_same(const Sparse24Matrix& cpu, const Sparse24Matrix& gpu_dev, const std::string& what) {
  const Sparse24Matrix gpu = gpu_dev.to(Device::kCPU);
  ASSERT_EQ(cpu.rows, gpu.rows) << what;
  ASSERT_EQ(cpu.cols, gpu.cols) << what;
  ASSERT_EQ(cpu.dtype, gpu.dtype) << what;
  EXPECT_EQ(cpu.scale, gpu.scale) << what;
  const size_t meta = size_t(cpu.rows * cpu.mask.row_bytes());
  const uint8_t* a = cpu.mask.codes().data<uint8_t>();
  const uint8_t* b = gpu.mask.codes().data<uint8_t>();
  for (size_t i = 0; i < meta; ++i)
    if (a[i] != b[i]) {
      ADD_FAILURE() << what << ": metadata byte " << i << " (row " << i / size_t(cpu.mask.row_bytes()) << ") cpu 0x"
                    << std::hex << int(a[i]) << " gpu 0x" << int(b[i]);
      return;
    }
  const size_t bytes = size_t(cpu.rows * cpu.cols / 2 * dtype_size(cpu.dtype));
  const uint8_t* va = cpu.values.data<uint8_t>();
  const uint8_t* vb = gpu.values.data<uint8_t>();
  for (size_t i = 0; i < bytes; ++i)
    if (va[i] != vb[i]) {
      const size_t e = i / size_t(dtype_size(cpu.dtype));
      ADD_FAILURE() << what << ": value " << e << " (row " << e / size_t(cpu.cols / 2) << ", slot "
                    << e % size_t(cpu.cols / 2) << ") differs: cpu " << test::get(cpu.values, int64_t(e / size_t(cpu.cols / 2)), int64_t(e % size_t(cpu.cols / 2)))
                    << " gpu " << test::get(gpu.values, int64_t(e / size_t(cpu.cols / 2)), int64_t(e % size_t(cpu.cols / 2)));
      return;
    }
}

std::vector<std::pair<int64_t, int64_t>> gpu_shapes() {
  std::vector<std::pair<int64_t, int64_t>> s = test::sweep_shapes();
  for (auto p : std::vector<std::pair<int64_t, int64_t>>{{33, 68}, {64, 4}, {100, 1004}, {768, 256}, {260, 3072}})
    s.push_back(p);
  return s;
}

struct Storage {
  DType dtype;
  float scale;
  Overflow overflow;
};
const Storage kStorages[] = {{DType::kF32, 1.f, Overflow::kPyTorch},   {DType::kF16, 1.f, Overflow::kPyTorch},
                             {DType::kBF16, 1.f, Overflow::kPyTorch},  {DType::kF8E4M3, 0.01f, Overflow::kSaturate},
                             {DType::kF8E5M2, 0.001f, Overflow::kPyTorch}, {DType::kI8, 0.02f, Overflow::kPyTorch}};

TEST_F(Cuda, GroupTransformsMatchTheCpu) {
  int cases = 0;
  for (auto [rows, cols] : gpu_shapes())
    for (DType in_dt : {DType::kF32, DType::kF16, DType::kBF16})
      for (Layout layout : {Layout::kRowMajor, Layout::kColMajor}) {
        const Tensor x = test::convert(test::randn(rows, cols, uint64_t(rows * 7 + cols)), in_dt, layout);
        const Tensor xd = x.to(Device::kCUDA);
        const Mask24 mask = prune_magnitude(test::randn(rows, cols, 3)).mask;
        const Mask24 mask_d = mask.to(Device::kCUDA);
        for (const Storage& st : kStorages) {
          CompressOptions o;
          o.dtype = st.dtype;
          o.scale = st.scale;
          o.overflow = st.overflow;
          const std::string tag = x.view().describe() + " -> " + dtype_name(st.dtype);
          expect_same(prune_magnitude(x, o), prune_magnitude(xd, o), "magnitude " + tag);
          expect_same(prune_with_mask(x, mask, o), prune_with_mask(xd, mask_d, o), "mask " + tag);
          expect_same(prune_mvue(x, 1234567, o), prune_mvue(xd, 1234567, o), "mvue " + tag);
          expect_same(prune_soft_threshold(x, 0.8f, o), prune_soft_threshold(xd, 0.8f, o), "soft " + tag);
          ++cases;
          if (HasFailure()) return;
        }
      }
  EXPECT_GT(cases, 0);
}

TEST_F(Cuda, LargeColumnMajorGradientMvue) {
  // dY is tokens x features row-major; MVUE runs on dY^T, a column-major view (no copy).
  const Tensor dy = test::convert(test::randn(4096, 768, 9), DType::kF16);
  const TensorView dyt = dy.view().t();
  const Tensor dy_d = dy.to(Device::kCUDA);
  CompressOptions o;
  o.non_finite = NonFinite::kPropagate;
  expect_same(prune_mvue(dyt, 77, o), prune_mvue(dy_d.view().t(), 77, o), "mvue dY^T");
}

// Shapes off the 64-row tiles (64 x 64 for fp32 input, 64 x 128 for 16-bit input, whose threads
// hold two blocks side by side; TallTilesOfAGivenMaskMatchTheCpu has the 128-row ones): an odd
// number of groups per row leaves a thread's second block outside the matrix; {20, 200} and
// {64, 136} end row-major 16-bit tiles inside a tile's width.
TEST_F(Cuda, TransposableMatchesTheCpu) {
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{
           {4, 4}, {8, 12}, {36, 20}, {64, 64}, {68, 132}, {132, 44}, {20, 200}, {64, 136}, {256, 768}, {1000, 1004}})
    for (DType in_dt : {DType::kF32, DType::kF16, DType::kBF16})
      for (Layout layout : {Layout::kRowMajor, Layout::kColMajor})
        for (const Storage& st : kStorages)
          for (bool ties : {false, true}) {
            const Tensor src = ties ? test::rand_ints(rows, cols, 2, 5) : test::randn(rows, cols, 5);
            const Tensor w = test::convert(src, in_dt, layout);
            const Tensor wd = w.to(Device::kCUDA);
            CompressOptions o;
            o.dtype = st.dtype;
            o.scale = st.scale;
            o.overflow = st.overflow;
            const std::string tag = w.view().describe() + " -> " + dtype_name(st.dtype) + (ties ? " ties" : "");
            const Transposable24 c = prune_transposable(w, o), g = prune_transposable(wd, o);
            expect_same(c.w, g.w, "transposable W " + tag);
            expect_same(c.wt, g.wt, "transposable W^T " + tag);
            // The given-mask path: the CPU's mask applied on the GPU.
            const Transposable24 gm = compress_transposable(wd, c.mask.to(Device::kCUDA), o);
            expect_same(c.w, gm.w, "compress_transposable W " + tag);
            expect_same(c.wt, gm.wt, "compress_transposable W^T " + tag);
            if (HasFailure()) return;
          }
}

// Weights so large that pattern sums overflow to +Inf (the search must break ties among Inf
// scores as the CPU does), and a given mask over 16-bit weights holding NaN under kPropagate.
TEST_F(Cuda, TransposableEdgesMatchTheCpu) {
  Tensor big = test::randn(64, 96, 41);
  for (int64_t i = 0; i < big.numel(); ++i)  // finite, |w| up to 3e38: sums of 8 overflow
    big.data<float>()[i] = std::fmax(-3e38f, std::fmin(3e38f, big.data<float>()[i] * 1e38f));
  CompressOptions o;
  o.dtype = DType::kF32;
  const Transposable24 c = prune_transposable(big, o), g = prune_transposable(big.to(Device::kCUDA), o);
  expect_same(c.w, g.w, "transposable W, sums overflow");
  expect_same(c.wt, g.wt, "transposable W^T, sums overflow");
  Tensor w = test::randn(64, 96, 42);
  w.data<float>()[10 * 96 + 33] = NAN;
  w.data<float>()[50 * 96 + 95] = -INFINITY;
  const Mask24 mask = prune_transposable(test::randn(64, 96, 43)).mask;
  CompressOptions prop;
  prop.non_finite = NonFinite::kPropagate;
  for (DType dt : {DType::kF16, DType::kBF16}) {
    const Tensor x = test::convert(w, dt);
    const Transposable24 cm = compress_transposable(x, mask, prop);
    const Transposable24 gm = compress_transposable(x.to(Device::kCUDA), mask.to(Device::kCUDA), prop);
    expect_same(cm.w, gm.w, std::string("given mask W, NaN, ") + dtype_name(dt));
    expect_same(cm.wt, gm.wt, std::string("given mask W^T, NaN, ") + dtype_name(dt));
  }
}

// The sm90 metadata (the canonical bytes permuted for CUTLASS's Hopper sparse GEMM), written by
// the kernels beside the canonical metadata: byte for byte the CPU's, padding included.
void expect_same_hw(const Sparse24Matrix& cpu, const Sparse24Matrix& gpu, const std::string& what) {
  ASSERT_TRUE(cpu.hw_meta.defined() && gpu.hw_meta.defined()) << what;
  const Tensor back = gpu.hw_meta.to(Device::kCPU);
  ASSERT_EQ(back.numel(), cpu.hw_meta.numel()) << what;
  for (int64_t i = 0; i < back.numel(); ++i)
    if (back.data<uint8_t>()[i] != cpu.hw_meta.data<uint8_t>()[i]) {
      ADD_FAILURE() << what << ": sm90 metadata byte " << i << " cpu 0x" << std::hex << int(cpu.hw_meta.data<uint8_t>()[i])
                    << " gpu 0x" << int(back.data<uint8_t>()[i]);
      return;
    }
}

TEST_F(Cuda, Sm90MetadataMatchesTheCpu) {
  for (MetaLayout layout : {MetaLayout::kSm90K64, MetaLayout::kSm90K128})
    for (DType dt : {DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kI8})
      for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{64, 64}, {96, 128}, {128, 352}, {260, 3072}}) {
        CompressOptions o;
        o.dtype = dt;
        o.scale = 0.01f;
        o.layout = layout;
        o.overflow = Overflow::kSaturate;
        const std::string tag = std::to_string(rows) + "x" + std::to_string(cols) + " " + dtype_name(dt) + " " +
                                meta_layout_name(layout);
        for (Layout in_layout : {Layout::kRowMajor, Layout::kColMajor}) {
          const Tensor x = test::convert(test::randn(rows, cols, 8), DType::kF16, in_layout);
          const Tensor xd = x.to(Device::kCUDA);
          expect_same_hw(prune_magnitude(x, o), prune_magnitude(xd, o), "magnitude " + tag);
          expect_same_hw(prune_mvue(x, 9, o), prune_mvue(xd, 9, o), "mvue " + tag);
        }
        if (rows % 32 == 0)
          for (DType in_dt : {DType::kF32, DType::kF16}) {  // one block per thread, two per thread
            const Tensor w = test::convert(test::randn(rows, cols, 10), in_dt);
            const Transposable24 c = prune_transposable(w, o), g = prune_transposable(w.to(Device::kCUDA), o);
            expect_same_hw(c.w, g.w, "transposable W " + tag + " from " + dtype_name(in_dt));
            expect_same_hw(c.wt, g.wt, "transposable W^T " + tag + " from " + dtype_name(in_dt));
          }
        if (HasFailure()) return;
      }
}

// A given mask on matrices large enough for the 128-row tiles (at least 8 x 128 x 128 elements per
// SM on GPUs of up to 190 SMs). 6144 rows: W^T's values and metadata leave as 16-byte runs; 6268
// rows: a bottom tile of 124 rows (values one by one, metadata still in 16-byte runs) and an odd
// number of groups per row. Row-major input (straight to registers) and column-major (through
// the input tile: up to 68 KB of shared memory per block), every storage type, the sm90
// metadata, a NaN under kPropagate and under kError, and a mask block that is not transposable.
TEST_F(Cuda, TallTilesOfAGivenMaskMatchTheCpu) {
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{6144, 4224}, {6268, 4228}}) {
    const Tensor finite_src = test::randn(rows, cols, 44);  // for int8 storage, which has no NaN
    Tensor src = test::randn(rows, cols, 44);
    src.data<float>()[1000 * cols + 77] = NAN;
    const Mask24 mask = prune_transposable(test::randn(rows, cols, 45)).mask;
    const Mask24 mask_d = mask.to(Device::kCUDA);
    const bool full = rows == 6144;
    for (DType in_dt : {DType::kF32, DType::kF16, DType::kBF16})
      for (Layout layout : {Layout::kRowMajor, Layout::kColMajor})
        for (const Storage& st : kStorages) {
          if (!full && st.dtype != DType::kF16 && st.dtype != DType::kF32) continue;
          if (full && layout == Layout::kColMajor && (in_dt != DType::kF16 || st.dtype != DType::kF16)) continue;
          const bool nan = st.dtype != DType::kI8;
          const Tensor w = test::convert(nan ? src : finite_src, in_dt, layout);
          CompressOptions o;
          o.dtype = st.dtype;
          o.scale = st.scale;
          o.overflow = st.overflow;
          o.non_finite = nan ? NonFinite::kPropagate : NonFinite::kError;
          const std::string tag = w.view().describe() + " -> " + dtype_name(st.dtype);
          const Transposable24 c = compress_transposable(w, mask, o);
          const Transposable24 g = compress_transposable(w.to(Device::kCUDA), mask_d, o);
          expect_same(c.w, g.w, "tall tiles W " + tag);
          expect_same(c.wt, g.wt, "tall tiles W^T " + tag);
          if (HasFailure()) return;
        }
    const Tensor w16 = test::convert(src, DType::kF16);
    if (full) {  // the sm90 layouts need both dimensions divisible by 16
      CompressOptions sm90;
      sm90.dtype = DType::kF16;
      sm90.layout = MetaLayout::kSm90K64;
      sm90.non_finite = NonFinite::kPropagate;
      const Transposable24 c = compress_transposable(w16, mask, sm90);
      const Transposable24 g = compress_transposable(w16.to(Device::kCUDA), mask_d, sm90);
      expect_same_hw(c.w, g.w, "tall tiles sm90 W");
      expect_same_hw(c.wt, g.wt, "tall tiles sm90 W^T");
    }
    // The errors: the same message as the CPU's (but for the device named), naming the first bad
    // position.
    auto message = [](auto&& call) {
      try {
        call();
      } catch (const Error& e) {
        std::string m = e.what();
        const size_t at = m.find(", cuda]");
        if (at != std::string::npos) m.replace(at, 7, ", cpu]");
        return m;
      }
      return std::string("no error");
    };
    const std::string nan_cpu = message([&] { compress_transposable(w16, mask); });
    EXPECT_NE(nan_cpu.find("1000"), std::string::npos) << nan_cpu;
    EXPECT_EQ(message([&] { compress_transposable(w16.to(Device::kCUDA), mask_d); }), nan_cpu);
    const Mask24& bad = mask;  // its last use: one block broken in place (a valid code mirrored)
    const uint8_t code = bad.code(3000, 500);
    bad.set_code(3000, 500, uint8_t((code >> 2) | (code & 3) << 2));
    const Tensor finite = test::convert(test::randn(rows, cols, 46), DType::kF16);
    const std::string bad_cpu = message([&] { compress_transposable(finite, bad); });
    EXPECT_NE(bad_cpu, "no error");
    EXPECT_EQ(message([&] { compress_transposable(finite.to(Device::kCUDA), bad.to(Device::kCUDA)); }), bad_cpu);
    if (HasFailure()) return;
  }
}

TEST_F(Cuda, ColumnMajorMvueEdgesMatchTheCpu) {
  // MVUE's column-major kernel (tiles of 256 (16-bit) or 128 (fp32) rows x 64 columns): row
  // counts off the tile, token counts with an odd number of groups or off the 64-column tile,
  // full tiles stored as 16-byte units and full tiles whose value rows do not start at 16-byte
  // boundaries (72 tokens), every input type, several storage types (paired 16-bit stores with
  // either overflow rule), NaN/Inf, kept values beyond fp16's range and huge values under
  // kPropagate, and the sm90 metadata beside the canonical one.
  for (auto [tokens, features] : std::vector<std::pair<int64_t, int64_t>>{
           {4, 8}, {12, 264}, {48, 520}, {60, 200}, {68, 520}, {132, 8}, {1028, 136}, {256, 264},
           {72, 264}, {512, 520}})
    for (DType in_dt : {DType::kF32, DType::kF16, DType::kBF16}) {
      Tensor dy = test::convert(test::randn(tokens, features, uint64_t(tokens * 31 + features)), DType::kF32);
      float* d = dy.data<float>();
      d[(tokens / 2) * features + 3] = NAN;              // a NaN group
      d[(tokens - 1) * features + features - 1] = INFINITY;  // the last group of the last row
      d[2 * features + 6] = 60000.f;                     // kept values beyond fp16's range
      d[3 * features + 6] = -50000.f;
      if (in_dt != DType::kF16) {  // sums beyond 2^100, the general path: divisions, overflow
        d[features + 4] = 1e31f;
        d[features + 5] = 3e38f;
      }
      const Tensor x = test::convert(dy, in_dt);
      const Tensor xd = x.to(Device::kCUDA);
      std::vector<Storage> storages(std::begin(kStorages), std::end(kStorages));
      storages.push_back({DType::kF16, 1.f, Overflow::kSaturate});  // the saturating paired stores
      storages.push_back({DType::kBF16, 1.f, Overflow::kSaturate});
      for (const Storage& st : storages) {
        if (st.dtype == DType::kI8) continue;  // int8 has no NaN: kPropagate is refused for it
        CompressOptions o;
        o.dtype = st.dtype;
        o.scale = st.scale;
        o.overflow = st.overflow;
        o.non_finite = NonFinite::kPropagate;
        const std::string tag = "mvue dY^T " + x.view().t().describe() + " -> " + dtype_name(st.dtype);
        expect_same(prune_mvue(x.view().t(), 4242, o), prune_mvue(xd.view().t(), 4242, o), tag);
        if (HasFailure()) return;
      }
      // A non-finite value under kError: the first one in row-major order of dY^T is reported.
      try {
        prune_mvue(xd.view().t(), 1);
        ADD_FAILURE() << "no error";
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kNonFinite);
      }
      if (tokens % 16 == 0) {
        for (MetaLayout layout : {MetaLayout::kSm90K64, MetaLayout::kSm90K128}) {
          CompressOptions o;
          o.dtype = DType::kF16;
          o.layout = layout;
          o.non_finite = NonFinite::kPropagate;
          expect_same_hw(prune_mvue(x.view().t(), 17, o), prune_mvue(xd.view().t(), 17, o),
                         "mvue dY^T sm90 " + x.view().t().describe() + " " + meta_layout_name(layout));
        }
      }
      if (HasFailure()) return;
    }
}

TEST_F(Cuda, NonTransposableMaskIsRejected) {
  const Tensor w = test::randn(8, 8, 1);
  const Mask24 rows_only = prune_magnitude(w).mask;  // 2:4 along rows, almost surely not columns
  ASSERT_THROW(rows_only.transposed(), Error);
  try {
    compress_transposable(w.to(Device::kCUDA), rows_only.to(Device::kCUDA));
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidMask) << e.what();
  }
}

// Malformed codes in a given mask: a valid code's mirror (its columns in the wrong order, so that
// every row and column still counts two) or a column kept twice, in two blocks. The GPU names the
// same first block as the CPU's check, from fp32 (a nibble per thread) and 16-bit input (two
// blocks per thread: low and high nibbles), row- and column-major.
TEST_F(Cuda, MalformedMaskCodesAreRejected) {
  const Tensor w = test::randn(64, 136, 3);
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16})
    for (Layout layout : {Layout::kRowMajor, Layout::kColMajor})
      for (int g : {20, 21})
        for (bool mirror : {true, false}) {
          const Mask24 bad = prune_transposable(w).mask;
          for (auto [r, gg] : {std::pair<int64_t, int64_t>{17, g}, {45, 3}}) {
            const uint8_t c = bad.code(r, gg);
            bad.set_code(r, gg, mirror ? uint8_t((c >> 2) | (c & 3) << 2) : uint8_t((c & 3) * 5));
          }
          const Tensor x = test::convert(w, dt, layout);
          const std::string tag = x.view().describe() + " group " + std::to_string(g) + (mirror ? " mirror" : " twice");
          std::string cpu, gpu;
          try {
            compress_transposable(x, bad);
          } catch (const Error& e) {
            cpu = e.what();
          }
          try {
            compress_transposable(x.to(Device::kCUDA), bad.to(Device::kCUDA));
          } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::kInvalidMask) << tag << ": " << e.what();
            gpu = e.what();
          }
          ASSERT_FALSE(cpu.empty()) << tag;
          EXPECT_EQ(gpu, cpu) << tag;
        }
}

// Invalid group codes in a mask (not one of the six) are named as the CPU names them by every
// call that reads a mask's codes as they are: prune_with_mask, decompress, to_sm90_meta.
TEST_F(Cuda, InvalidGroupCodesAreNamedLikeTheCpu) {
  const Tensor w = test::randn(96, 128, 5);
  for (auto [r, g, code] : {std::tuple<int64_t, int64_t, uint8_t>{0, 0, 0x0}, {37, 30, 0xF}, {95, 17, 0x5}}) {
    Sparse24Matrix s = prune_magnitude(w);
    s.mask.set_code(95, 31, 0xA);  // the last group: only the first invalid one is named
    s.mask.set_code(r, g, code);
    const Sparse24Matrix gpu = s.to(Device::kCUDA);
    auto message = [](auto fn) {
      try {
        fn();
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kInvalidMask) << e.what();
        return std::string(e.what());
      }
      return std::string("accepted");
    };
    const std::string want = message([&] { decompress(s); });
    EXPECT_NE(want.find("row " + std::to_string(r) + ", group " + std::to_string(g)), std::string::npos) << want;
    EXPECT_EQ(message([&] { decompress(gpu); }), want);
    const Tensor wg = w.to(Device::kCUDA);
    EXPECT_EQ(message([&] { prune_with_mask(wg, gpu.mask); }), message([&] { prune_with_mask(w, s.mask); }));
    EXPECT_EQ(message([&] { to_sm90_meta(gpu.mask, MetaLayout::kSm90K64, DType::kF16); }),
              message([&] { to_sm90_meta(s.mask, MetaLayout::kSm90K64, DType::kF16); }));
  }
}

TEST_F(Cuda, SmallTransformsMatchTheCpu) {
  for (auto [rows, cols] : gpu_shapes()) {
    const Tensor w = test::randn(rows, cols, 11);
    const Tensor wd = w.to(Device::kCUDA);
    const double beta_cpu = sste_scale(w), beta_gpu = sste_scale(wd);
    EXPECT_NEAR(beta_gpu, beta_cpu, 1e-12 * std::fabs(beta_cpu)) << rows << "x" << cols;
    for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
      CompressOptions o;
      o.dtype = dt == DType::kF32 ? DType::kF8E4M3 : dt;
      o.scale = 0.01f;
      const Sparse24Matrix s = prune_magnitude(w, o);
      const Tensor a = decompress(s, dt), b = decompress(s.to(Device::kCUDA), dt).to(Device::kCPU);
      for (int64_t i = 0; i < rows * cols; ++i)
        if (std::memcmp(a.data<uint8_t>() + i * dtype_size(dt), b.data<uint8_t>() + i * dtype_size(dt), size_t(dtype_size(dt))) &&
            !(std::isnan(test::get(a, i / cols, i % cols)) && std::isnan(test::get(b, i / cols, i % cols)))) {
          ADD_FAILURE() << "decompress " << rows << "x" << cols << " " << dtype_name(s.dtype) << " -> " << dtype_name(dt)
                        << ": element " << i << " cpu " << test::get(a, i / cols, i % cols) << " gpu "
                        << test::get(b, i / cols, i % cols);
          break;
        }
    }
    // Masked decay, fp32 master weights and gradients.
    const Mask24 mask = prune_magnitude(w).mask;
    const Tensor grad = test::randn(rows, cols, 12);
    const Tensor grad_d = grad.to(Device::kCUDA);
    masked_decay(grad, w, mask, 6e-5f);
    masked_decay(grad_d, wd, mask.to(Device::kCUDA), 6e-5f);
    const Tensor back = grad_d.to(Device::kCPU);
    EXPECT_EQ(std::memcmp(grad.data<float>(), back.data<float>(), size_t(rows * cols * 4)), 0);
    const Mask24 other = prune_magnitude(test::randn(rows, cols, 13)).mask;
    EXPECT_EQ(flip_rate(mask, other), flip_rate(mask.to(Device::kCUDA), other.to(Device::kCUDA)));
  }
}

// The row-major group kernels take a fast path for bytes of 8 finite inputs and process_byte for
// the others, and move 32 bytes of input per thread (two metadata bytes for 16-bit inputs): rows
// of 130 bytes (not a multiple of a warp's 32 or 64), NaN/Inf in single bytes, ties, values at the
// fp16 overflow edges, a huge S-STE beta, both overflow modes. Masked decay's vector path gets
// 16-bit gradients and weights.
TEST_F(Cuda, RowKernelEdgesMatchTheCpu) {
  const int64_t rows = 24, cols = 1040;
  Tensor base = test::rand_ints(rows, cols, 3, 31);  // many ties
  float* p = base.data<float>();
  const Tensor noise = test::randn(rows, cols, 32);
  for (int64_t i = 0; i < rows * cols; i += 3) p[i] += noise.data<float>()[i];
  p[5 * cols + 17] = NAN;            // one byte of a thread's two
  p[7 * cols + 1039] = INFINITY;     // the last byte of a row
  p[9 * cols + 8] = -INFINITY;
  p[11 * cols + 260] = 65519.99f;    // fp16: rounds to 65504
  p[11 * cols + 261] = 65520.f;      // fp16: overflows (Inf, or 65504 saturated)
  p[11 * cols + 262] = -70000.f;
  p[13 * cols + 100] = 3e38f;
  CompressOptions o;
  o.non_finite = NonFinite::kPropagate;
  const Mask24 mask = prune_magnitude(test::randn(rows, cols, 33)).mask;
  for (DType in_dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    const Tensor x = test::convert(base, in_dt);
    const Tensor xd = x.to(Device::kCUDA);
    for (DType out_dt : {DType::kF16, DType::kBF16, DType::kF32, DType::kF8E4M3})
      for (Overflow ov : {Overflow::kPyTorch, Overflow::kSaturate}) {
        o.dtype = out_dt;
        o.overflow = ov;
        o.scale = out_dt == DType::kF8E4M3 ? 0.05f : 1.f;
        const std::string tag = std::string(dtype_name(in_dt)) + " -> " + dtype_name(out_dt) +
                                (ov == Overflow::kSaturate ? ", saturate" : "");
        expect_same(prune_magnitude(x, o), prune_magnitude(xd, o), "magnitude " + tag);
        expect_same(prune_with_mask(x, mask, o), prune_with_mask(xd, mask.to(Device::kCUDA), o), "mask " + tag);
        for (float beta : {0.7f, 1e38f})
          expect_same(prune_soft_threshold(x, beta, o), prune_soft_threshold(xd, beta, o),
                      "soft beta " + std::to_string(beta) + " " + tag);
        if (HasFailure()) return;
      }
  }
  const Tensor w = test::randn(rows, cols, 34);
  for (DType dt : {DType::kF16, DType::kBF16}) {
    const Tensor g = test::convert(test::randn(rows, cols, 35), dt), wt = test::convert(w, dt);
    const Tensor gd = g.to(Device::kCUDA);
    masked_decay(g, wt, mask, 1e-2f);
    masked_decay(gd, wt.to(Device::kCUDA), mask.to(Device::kCUDA), 1e-2f);
    const Tensor back = gd.to(Device::kCPU);
    EXPECT_EQ(std::memcmp(g.data<uint8_t>(), back.data<uint8_t>(), size_t(rows * cols * 2)), 0) << dtype_name(dt);
  }
}

TEST_F(Cuda, NonFiniteInputs) {
  Tensor x = test::randn(64, 64, 21);
  x.data<float>()[37 * 64 + 50] = NAN;
  x.data<float>()[40 * 64 + 3] = INFINITY;
  const Tensor xd = x.to(Device::kCUDA);
  for (auto fn : {+[](const TensorView& v) { prune_magnitude(v); }, +[](const TensorView& v) { prune_mvue(v, 1); },
                  +[](const TensorView& v) { prune_transposable(v); }, +[](const TensorView& v) { sste_scale(v); }}) {
    try {
      fn(xd);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kNonFinite);
      EXPECT_NE(std::string(e.what()).find("row 37, column 50"), std::string::npos) << e.what();
    }
  }
  // A given transposable mask: non-finite weights follow the policy.
  const Mask24 mask = prune_transposable(test::randn(64, 64, 22)).mask;
  try {
    compress_transposable(xd, mask.to(Device::kCUDA));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNonFinite);
    EXPECT_NE(std::string(e.what()).find("row 37, column 50"), std::string::npos) << e.what();
  }
  CompressOptions o;
  o.non_finite = NonFinite::kPropagate;
  const Transposable24 tc = compress_transposable(x, mask, o), tg = compress_transposable(xd, mask.to(Device::kCUDA), o);
  expect_same(tc.w, tg.w, "compress_transposable, propagate");
  expect_same(tc.wt, tg.wt, "compress_transposable W^T, propagate");
  expect_same(prune_magnitude(x, o), prune_magnitude(xd, o), "magnitude, propagate");
  expect_same(prune_mvue(x, 5, o), prune_mvue(xd, 5, o), "mvue, propagate");
}

}  // namespace
}  // namespace sparse24
