// The FP8 casts on CUDA against the CPU (tensor.h: finite_amax, quantize_into; format.h:
// to_sm90_meta, to_storage): every byte equal, over many shapes, dtypes and layouts, with NaN,
// Inf and out-of-range values mixed in. Without a GPU every test reports itself skipped.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "gpu/gpu_test.h"
#include "test_util.h"

namespace sparse24 {
namespace {

class CudaCast : public test::GpuTest {};

Tensor host(const TensorView& v) { return Tensor::copy_of(v, Device::kCPU); }

// N(0, 4) values with a few specials: a large finite value, +-Inf, NaN (when rows * cols allows).
Tensor test_values(int64_t rows, int64_t cols, uint64_t seed) {
  Tensor x = test::randn(rows, cols, seed);
  float* p = x.data<float>();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) p[i] *= 2.f;
  if (n > 8) {
    p[n / 3] = 3e5f;
    p[n / 2] = std::numeric_limits<float>::infinity();
    p[n / 5] = -std::numeric_limits<float>::infinity();
    p[n - 1] = std::nanf("");
  }
  return x;
}

// A view of `t` (CUDA, row-major) padded: rows of cols + pad elements, the last pad unused.
TensorView padded(const Tensor& storage, int64_t rows, int64_t cols) {
  TensorView v = storage.view();
  v.shape[0] = rows;
  v.shape[1] = cols;
  v.strides[0] = storage.cols();
  v.strides[1] = 1;
  return v;
}

TEST_F(CudaCast, AmaxAndQuantizeMatchTheCpuBitForBit) {
  auto shapes = test::sweep_shapes();
  shapes.push_back({1, 1});
  shapes.push_back({37, 129});
  shapes.push_back({1000, 777});
  shapes.push_back({2048, 96});
  int checked = 0;
  for (auto [rows, cols] : shapes)
    for (DType src_dt : {DType::kF32, DType::kF16, DType::kBF16})
      for (Layout src_layout : {Layout::kRowMajor, Layout::kColMajor}) {
        const Tensor x = test::convert(test_values(rows, cols, uint64_t(rows * 1000 + cols)), src_dt, src_layout);
        const Tensor xg = x.to(Device::kCUDA);
        const std::string what = std::to_string(rows) + "x" + std::to_string(cols) + " " + xg.view().describe();
        EXPECT_EQ(finite_amax(xg), finite_amax(x)) << what;
        const float scale = fp8_scale(finite_amax(x), DType::kF8E4M3);
        for (DType dt : {DType::kF8E4M3, DType::kF8E5M2})
          for (Layout dst_layout : {Layout::kRowMajor, Layout::kColMajor}) {
            Tensor want = Tensor::matrix(rows, cols, dt, dst_layout);
            quantize_into(want, x, scale);
            Tensor got = Tensor::matrix(rows, cols, dt, dst_layout, Device::kCUDA);
            quantize_into(got, xg, scale);
            const Tensor g = host(got);
            ASSERT_EQ(std::memcmp(g.data<uint8_t>(), want.data<uint8_t>(), size_t(rows * cols)), 0)
                << what << " -> " << got.view().describe();
            // Both layouts from one pass (the layer's operand and its transpose).
            Tensor both = Tensor::matrix(rows, cols, dt, dst_layout, Device::kCUDA);
            Tensor other = Tensor::matrix(rows, cols, dt,
                                          dst_layout == Layout::kRowMajor ? Layout::kColMajor : Layout::kRowMajor,
                                          Device::kCUDA);
            quantize_into(both, xg, scale, &other.view());
            Tensor other_want = Tensor::matrix(rows, cols, dt, other.view().is_row_major() ? Layout::kRowMajor
                                                                                          : Layout::kColMajor);
            quantize_into(other_want, x, scale);
            const Tensor b = host(both), o = host(other);
            ASSERT_EQ(std::memcmp(b.data<uint8_t>(), want.data<uint8_t>(), size_t(rows * cols)), 0) << what << " (pair)";
            ASSERT_EQ(std::memcmp(o.data<uint8_t>(), other_want.data<uint8_t>(), size_t(rows * cols)), 0)
                << what << " (pair, second)";
            ++checked;
          }
      }
  EXPECT_EQ(checked, int(shapes.size()) * 3 * 2 * 2 * 2);
}

TEST_F(CudaCast, StridedViewsWithGapsMatchTheCpu) {
  // Row-major views whose rows are longer than the matrix (a sub-matrix): neither side is one
  // dense run, so the tile path handles both.
  const int64_t rows = 70, cols = 50, pad = 14;
  const Tensor x = test::convert(test_values(rows, cols + pad, 5), DType::kBF16);
  const Tensor xg = x.to(Device::kCUDA);
  const TensorView src_cpu = padded(x, rows, cols), src_gpu = padded(xg, rows, cols);
  EXPECT_EQ(finite_amax(src_gpu), finite_amax(src_cpu));
  Tensor want = Tensor::matrix(rows, cols + pad, DType::kF8E5M2);
  std::memset(want.data<uint8_t>(), 0xFF, size_t(want.numel()));  // the gaps keep the poison
  quantize_into(padded(want, rows, cols), src_cpu, 0.5f);
  Tensor got = Tensor::matrix(rows, cols + pad, DType::kF8E5M2, Layout::kRowMajor, Device::kCUDA);
  quantize_into(padded(got, rows, cols), src_gpu, 0.5f);
  const Tensor g = host(got);
  EXPECT_EQ(std::memcmp(g.data<uint8_t>(), want.data<uint8_t>(), size_t(want.numel())), 0);
}

TEST_F(CudaCast, Sm90MetadataAndFp8StorageOfCudaMatricesMatchTheCpu) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 128}, {96, 224}, {200, 64}, {16, 512}}) {
    const Tensor w = test::randn(rows, cols, uint64_t(rows + cols));
    CompressOptions o;
    o.dtype = DType::kF32;
    const Sparse24Matrix s = prune_magnitude(w, o);
    const Sparse24Matrix sg = prune_magnitude(w.to(Device::kCUDA), o);
    for (DType dt : {DType::kF8E4M3, DType::kF8E5M2}) {
      const std::string what = std::to_string(rows) + "x" + std::to_string(cols) + " " + dtype_name(dt);
      const Sparse24Matrix want = to_storage(s, dt, MetaLayout::kSm90K128);
      const Sparse24Matrix got = to_storage(sg, dt, MetaLayout::kSm90K128);
      EXPECT_EQ(got.scale, want.scale) << what;
      const Tensor gv = host(got.values), gm = host(got.hw_meta);
      EXPECT_EQ(std::memcmp(gv.data<uint8_t>(), want.values.data<uint8_t>(), size_t(want.values.numel())), 0) << what;
      ASSERT_EQ(gm.numel(), want.hw_meta.numel()) << what;
      EXPECT_EQ(std::memcmp(gm.data<uint8_t>(), want.hw_meta.data<uint8_t>(), size_t(gm.numel())), 0) << what;
    }
    const Tensor hw16 = host(to_sm90_meta(sg.mask, MetaLayout::kSm90K64, DType::kF16));
    const Tensor want16 = to_sm90_meta(s.mask, MetaLayout::kSm90K64, DType::kF16);
    EXPECT_EQ(std::memcmp(hw16.data<uint8_t>(), want16.data<uint8_t>(), size_t(want16.numel())), 0);
  }
}

}  // namespace
}  // namespace sparse24
