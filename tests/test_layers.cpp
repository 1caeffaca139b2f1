// The sparse linear layer (sparse24/layers.h): every mode against definitions computed in double
// (forward, finite-difference gradients), the MVUE weight gradient's expectation, the FST mask
// cadence and once-per-step compression, the dense switch, S-STE's frozen beta, FP8 storage,
// statistics and memory, save/load round trips and every error path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "sparse24/layers.h"
#include "sparse24/optim.h"
#include "test_util.h"

namespace sparse24 {
namespace {

using test::expect_error;

using Mat = std::vector<double>;  // row-major, dimensions passed alongside

// The papers' recipe: all three GEMMs 2:4 (the weight gradient on MVUE24), unlike the default.
LinearConfig config(SparseMode mode, int64_t in, int64_t out, uint64_t seed = 1) {
  LinearConfig c;
  c.in = in;
  c.out = out;
  c.mode = mode;
  c.seed = seed;
  c.sparse.weight_grad = true;
  return c;
}

Mat to_mat(const TensorView& v) {
  Mat m(size_t(v.rows() * v.cols()));
  for (int64_t i = 0; i < v.rows(); ++i)
    for (int64_t j = 0; j < v.cols(); ++j) m[size_t(i * v.cols() + j)] = test::get(v, i, j);
  return m;
}

Mat bias_of(const SparseLinear& l) {
  Mat b(size_t(l.config().out), 0.0);
  if (l.has_bias())
    for (int64_t j = 0; j < l.config().out; ++j) b[size_t(j)] = static_cast<const float*>(l.bias().data)[j];
  return b;
}

// S-STE's forward weight beta * S(W), in double from the definition (ALGORITHMS.md): keep the
// two largest |w| of each group (ties: lower index), shrink them by the larger dropped |w|.
Mat sste_weight_ref(const Mat& w, int64_t out, int64_t in, double beta) {
  Mat s(w.size(), 0.0);
  for (int64_t r = 0; r < out; ++r)
    for (int64_t g = 0; g < in / 4; ++g) {
      int idx[4] = {0, 1, 2, 3};
      const double* x = &w[size_t(r * in + 4 * g)];
      std::stable_sort(idx, idx + 4, [&](int a, int b) { return std::fabs(x[a]) > std::fabs(x[b]); });
      const double t = std::max(std::fabs(x[idx[2]]), std::fabs(x[idx[3]]));
      for (int k = 0; k < 2; ++k) {
        const double v = x[idx[k]];
        s[size_t(r * in + 4 * g + idx[k])] = (v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0)) * (std::fabs(v) - t) * beta;
      }
    }
  return s;
}

// W * mask.
Mat masked_ref(const Mat& w, const Mask24& m) {
  Mat s(w.size(), 0.0);
  for (int64_t r = 0; r < m.rows(); ++r)
    for (int64_t c = 0; c < m.cols(); ++c)
      if (m.kept(r, c)) s[size_t(r * m.cols() + c)] = w[size_t(r * m.cols() + c)];
  return s;
}

// The forward weight of a layer from its definition, in double.
Mat weff_ref(const SparseLinear& l) {
  const Mat w = to_mat(l.weight());
  if (l.is_dense()) return w;
  if (l.config().mode == SparseMode::kFst) return masked_ref(w, l.mask());
  return sste_weight_ref(w, l.config().out, l.config().in, l.beta());
}

// y = x Weff^T + b in double.
Mat linear_ref(const Mat& x, const Mat& weff, const Mat& b, int64_t n, int64_t in, int64_t out) {
  Mat y(size_t(n * out));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < out; ++j) {
      double acc = b[size_t(j)];
      for (int64_t k = 0; k < in; ++k) acc += x[size_t(i * in + k)] * weff[size_t(j * in + k)];
      y[size_t(i * out + j)] = acc;
    }
  return y;
}

// L = sum(G * y) in double.
double loss_ref(const Mat& x, const Mat& weff, const Mat& b, const Mat& g, int64_t n, int64_t in, int64_t out) {
  const Mat y = linear_ref(x, weff, b, n, in, out);
  double l = 0.0;
  for (size_t i = 0; i < y.size(); ++i) l += g[i] * y[i];
  return l;
}

void expect_near_mat(const Mat& want, const TensorView& got, double tol, const char* what) {
  ASSERT_EQ(int64_t(want.size()), got.rows() * got.cols()) << what;
  for (int64_t i = 0; i < got.rows(); ++i)
    for (int64_t j = 0; j < got.cols(); ++j)
      ASSERT_NEAR(test::get(got, i, j), want[size_t(i * got.cols() + j)], tol)
          << what << " at (" << i << ", " << j << ")";
}

bool same_bits(const TensorView& a, const TensorView& b) {
  if (a.numel() != b.numel() || a.dtype != b.dtype) return false;
  return std::memcmp(a.data, b.data, size_t(a.numel()) * size_t(dtype_size(a.dtype))) == 0;
}

// Central finite differences of L = sum(G * y) from the definition, with respect to x, to the
// forward weight (straight-through: the gradient the layer applies to its dense master W) and to
// the bias, against the layer's dx, dW (weight-gradient GEMM dense: the exact dY^T X) and db.
void check_gradients_fd(SparseMode mode) {
  const int64_t n = 16, in = 12, out = 8;
  LinearConfig c = config(mode, in, out, 3);
  c.sparse.weight_grad = false;
  SparseLinear layer(c);
  // A non-zero bias so that the bias enters the definition.
  for (int64_t j = 0; j < out; ++j) static_cast<float*>(layer.bias().data)[j] = 0.01f * float(j - 3);
  layer.begin_step(0);
  const Tensor x = test::randn(n, in, 11), g = test::randn(n, out, 12);
  const Tensor y = layer.forward(x);
  Tensor dx = Tensor::matrix(n, in, DType::kF32);
  layer.backward(x, g, &dx.view(), 0);

  const Mat xm = to_mat(x), gm = to_mat(g), weff = weff_ref(layer);
  Mat b(size_t(out), 0.0);
  for (int64_t j = 0; j < out; ++j) b[size_t(j)] = static_cast<const float*>(layer.bias().data)[j];
  expect_near_mat(linear_ref(xm, weff, b, n, in, out), y, 1e-5, "forward");

  const double h = 1e-3;
  auto fd = [&](Mat& v, size_t i, const std::function<double()>& loss) {
    const double keep = v[i];
    v[i] = keep + h;
    const double lp = loss();
    v[i] = keep - h;
    const double lm = loss();
    v[i] = keep;
    return (lp - lm) / (2 * h);
  };
  Mat xv = xm, wv = weff, bv = b;
  auto loss = [&] { return loss_ref(xv, wv, bv, gm, n, in, out); };
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < in; ++k)
      ASSERT_NEAR(test::get(dx, i, k), fd(xv, size_t(i * in + k), loss), 1e-4) << "dx " << i << "," << k;
  for (int64_t j = 0; j < out; ++j)
    for (int64_t k = 0; k < in; ++k)
      ASSERT_NEAR(test::get(layer.weight_grad(), j, k), fd(wv, size_t(j * in + k), loss), 1e-4)
          << "dW " << j << "," << k;
  for (int64_t j = 0; j < out; ++j)
    ASSERT_NEAR(static_cast<const float*>(layer.bias_grad().data)[j], fd(bv, size_t(j), loss), 1e-4) << "db " << j;
}

// The layer's sparse dW is exactly mm(prune_mvue(dY^T, seed), X), a random estimate; its mean
// over many draws approaches the exact dY^T X within a statistical bound. The draws go through the
// layer in batches: a batch of C copies of the tokens gives the sum of C independent draws in one
// backward (MVUE's groups of 4 tokens never straddle two copies, and every group has its own
// random numbers), so few calls give thousands of draws.
void check_mvue_unbiased(SparseMode mode) {
  const int64_t n = 16, in = 12, out = 8;
  SparseLinear layer(config(mode, in, out, 5));
  layer.begin_step(0);
  const Tensor x = test::randn(n, in, 21), g = test::randn(n, out, 22);
  (void)layer.forward(x);
  // Exact dY^T X in double.
  Mat exact(size_t(out * in), 0.0);
  for (int64_t j = 0; j < out; ++j)
    for (int64_t k = 0; k < in; ++k)
      for (int64_t i = 0; i < n; ++i) exact[size_t(j * in + k)] += test::get(g, i, j) * test::get(x, i, k);

  // One draw: the formula, bit for bit, and not the exact gradient.
  layer.backward(x, g, nullptr, 1000);
  const Tensor want = mm(prune_mvue(g.view().t(), 1000), x, DType::kF32);
  ASSERT_TRUE(same_bits(want, layer.weight_grad())) << "dW is not MVUE24(dY^T) X";
  int differs = 0;
  for (size_t i = 0; i < exact.size(); ++i)
    differs += std::fabs(test::get(layer.weight_grad(), int64_t(i) / in, int64_t(i) % in) - exact[i]) > 1e-3;
  EXPECT_GT(differs, int(exact.size()) / 2);

  const int kBatches = 40, kCopies = 50;  // 2000 draws
  Tensor xs = Tensor::matrix(kCopies * n, in, DType::kF32), gs = Tensor::matrix(kCopies * n, out, DType::kF32);
  for (int c = 0; c < kCopies; ++c) {
    std::memcpy(xs.data<float>() + c * n * in, x.data<float>(), size_t(n * in) * 4);
    std::memcpy(gs.data<float>() + c * n * out, g.data<float>(), size_t(n * out) * 4);
  }
  Mat sum(exact.size(), 0.0), sum2(exact.size(), 0.0);
  for (int b = 0; b < kBatches; ++b) {
    layer.zero_grad();
    layer.backward(xs, gs, nullptr, uint64_t(2000 + b));
    const float* dw = static_cast<const float*>(layer.weight_grad().data);
    for (size_t i = 0; i < exact.size(); ++i) {
      const double mean = double(dw[i]) / kCopies;  // the mean of this batch's draws
      sum[i] += mean;
      sum2[i] += mean * mean;
    }
  }
  for (size_t i = 0; i < exact.size(); ++i) {
    const double mean = sum[i] / kBatches;
    const double var = std::max(0.0, (sum2[i] / kBatches - mean * mean) * kBatches / (kBatches - 1));
    const double se = std::sqrt(var / kBatches);
    EXPECT_GT(se, 0.0) << "entry " << i;
    EXPECT_NEAR(mean, exact[i], 5 * se + 1e-4) << "entry " << i << " (se " << se << ")";
  }
}

// One optimizer step of a layer on a fixed batch: begin_step, forward, backward, AdamW.
void train_step(SparseLinear& layer, AdamW& opt, int64_t step, const Tensor& x, const Tensor& g) {
  layer.begin_step(step);
  (void)layer.forward(x);
  layer.backward(x, g, nullptr, uint64_t(77 + step));
  opt.step(1e-2f);
  opt.zero_grad();
}

// ---- Configuration and initialisation ------------------------------------------------------

TEST(LayersConfig, InvalidConfigsThrow) {
  expect_error([] { SparseLinear l(config(SparseMode::kDense, 0, 4)); }, ErrorKind::kShape, ">= 1");
  expect_error([] { SparseLinear l(config(SparseMode::kFst, 12, 10)); }, ErrorKind::kShape, "4x4 blocks");
  expect_error([] { SparseLinear l(config(SparseMode::kFst, 10, 12)); }, ErrorKind::kShape, "divisible by 4");
  expect_error([] { SparseLinear l(config(SparseMode::kSste, 10, 12)); }, ErrorKind::kShape, "along in");
  SparseLinear ok(config(SparseMode::kSste, 12, 10));  // S-STE needs only in % 4
  SparseLinear dense(config(SparseMode::kDense, 3, 5));
  LinearConfig c = config(SparseMode::kFst, 8, 8);
  c.mask_freq = 0;
  expect_error([&] { SparseLinear l(c); }, ErrorKind::kValue, "mask_freq");
  c = config(SparseMode::kFst, 8, 8);
  c.decay_alpha = -1.f;
  expect_error([&] { SparseLinear l(c); }, ErrorKind::kValue, "decay_alpha");
  c.decay_alpha = NAN;
  expect_error([&] { SparseLinear l(c); }, ErrorKind::kValue, "decay_alpha");
  c = config(SparseMode::kSste, 8, 8);
  for (DType bad : {DType::kF8E5M2, DType::kI8, DType::kU8, DType::kI32}) {
    c.weight_dtype = bad;
    expect_error([&] { SparseLinear l(c); }, ErrorKind::kDType, "weight_dtype");
  }
  c = config(SparseMode(7), 8, 8);
  expect_error([&] { SparseLinear l(c); }, ErrorKind::kValue, "unknown mode");
  c = config(SparseMode::kFst, 16, 16);  // CUDA's GEMMs run in 16 or 8 bits: fp32 is refused
  c.device = Device::kCUDA;
  c.weight_dtype = DType::kF32;
  expect_error([&] { SparseLinear l(c); }, ErrorKind::kDType, "must be fp16, bf16 or e4m3");
  c.weight_dtype = DType::kF8E4M3;  // the FP8 2:4 GEMMs need K % 32 == 0
  expect_error([&] { SparseLinear l(c); }, ErrorKind::kShape, "multiples of 32");
}

TEST(LayersInit, Gpt2InitIsDeterministic) {
  SparseLinear a(config(SparseMode::kFst, 64, 32, 9)), b(config(SparseMode::kFst, 64, 32, 9));
  SparseLinear c(config(SparseMode::kFst, 64, 32, 10));
  EXPECT_TRUE(same_bits(a.weight(), b.weight()));
  EXPECT_FALSE(same_bits(a.weight(), c.weight()));
  double sum = 0, sum2 = 0;
  const float* w = static_cast<const float*>(a.weight().data);
  for (int64_t i = 0; i < 64 * 32; ++i) {
    sum += w[i];
    sum2 += double(w[i]) * w[i];
  }
  const double mean = sum / 2048, sd = std::sqrt(sum2 / 2048 - mean * mean);
  EXPECT_NEAR(sd, 0.02, 0.002);
  EXPECT_NEAR(mean, 0.0, 0.002);
  for (int64_t j = 0; j < 32; ++j) {
    EXPECT_EQ(static_cast<const float*>(a.bias().data)[j], 0.f);
    EXPECT_EQ(static_cast<const float*>(a.bias_grad().data)[j], 0.f);
  }
  // init(seed) again reproduces the weights and resets the mask.
  a.begin_step(0);
  ASSERT_TRUE(a.mask().defined());
  a.init(10);
  EXPECT_TRUE(same_bits(a.weight(), c.weight()));
  EXPECT_FALSE(a.mask().defined());
  EXPECT_EQ(a.stats().mask_updates, 0);
}

// ---- Gradients -----------------------------------------------------------------------------

TEST(LayersDense, GradientsMatchFiniteDifferences) { check_gradients_fd(SparseMode::kDense); }
TEST(LayersFst, GradientsMatchFiniteDifferences) { check_gradients_fd(SparseMode::kFst); }
TEST(LayersSste, GradientsMatchFiniteDifferences) { check_gradients_fd(SparseMode::kSste); }
TEST(LayersFst, MvueWeightGradIsUnbiased) { check_mvue_unbiased(SparseMode::kFst); }
TEST(LayersSste, MvueWeightGradIsUnbiased) { check_mvue_unbiased(SparseMode::kSste); }

TEST(LayersFst, ForwardEqualsDenseLayerUnderTheMask) {
  const int64_t n = 20, in = 16, out = 12;
  SparseLinear fst(config(SparseMode::kFst, in, out, 4));
  for (int64_t j = 0; j < out; ++j) static_cast<float*>(fst.bias().data)[j] = 0.1f * float(j);
  fst.begin_step(0);
  const Mask24& mask = fst.mask();
  ASSERT_TRUE(mask.defined());
  EXPECT_TRUE(mask == prune_transposable(fst.weight()).mask);
  // A dense layer whose weight is W * mask: the same outputs, bit for bit (fp32 storage, the
  // pruned entries add +-0 in the same summation order).
  SparseLinear dense(config(SparseMode::kDense, in, out));
  Tensor wm = Tensor::copy_of(fst.weight(), Device::kCPU);
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c)
      if (!mask.kept(r, c)) *wm.view().at<float>(r, c) = 0.f;
  const TensorView fst_bias = fst.bias();
  dense.set_weights(wm, &fst_bias);
  const Tensor x = test::randn(n, in, 8);
  const Tensor ys = fst.forward(x), yd = dense.forward(x);
  EXPECT_TRUE(same_bits(ys, yd));
  expect_near_mat(linear_ref(to_mat(x), to_mat(wm), to_mat(TensorView::matrix(fst.bias().data, DType::kF32, 1, out)),
                             n, in, out), ys, 1e-5, "forward");
  // dX under the same mask, bit for bit: (W^T)_s is the transpose of W_s.
  const Tensor g = test::randn(n, out, 9);
  Tensor dxs = Tensor::matrix(n, in, DType::kF32), dxd = Tensor::matrix(n, in, DType::kF32);
  fst.backward(x, g, &dxs.view(), 1);
  dense.backward(x, g, &dxd.view(), 1);
  EXPECT_TRUE(same_bits(dxs, dxd));
}

// The default weight gradient is dense and exact: dW = dY^T X, with no MVUE and so no N % 4 rule.
TEST(LayersGemmChoice, DefaultWeightGradientIsDenseAndExact) {
  for (SparseMode mode : {SparseMode::kFst, SparseMode::kSste}) {
    LinearConfig c;
    c.in = 8;
    c.out = 12;
    c.mode = mode;
    EXPECT_TRUE(c.sparse.forward && c.sparse.input_grad && !c.sparse.weight_grad);
    SparseLinear l(c);
    l.begin_step(0);
    const Tensor x = test::randn(6, 8, 1), dy = test::randn(6, 12, 2);  // 6 tokens: not a multiple of 4
    l.backward(x, dy, nullptr, 0);
    for (int64_t o = 0; o < 12; ++o)
      for (int64_t i = 0; i < 8; ++i) {
        double want = 0.0;
        for (int64_t n = 0; n < 6; ++n) want += test::get(dy, n, o) * test::get(x, n, i);
        EXPECT_NEAR(test::get(l.weight_grad(), o, i), want, 1e-5) << sparse_mode_name(mode) << " " << o << "," << i;
      }
  }
}

TEST(LayersGemmChoice, DenseGemmsGiveTheSparseValues) {
  // Per GEMM, the dense product on the decompressed weight equals the 2:4 product bit for bit;
  // the dense weight gradient is the exact dY^T X instead of MVUE's estimate.
  for (SparseMode mode : {SparseMode::kFst, SparseMode::kSste}) {
    const int64_t n = 12, in = 16, out = 8;
    LinearConfig cs = config(mode, in, out, 6), cd = cs;
    cd.sparse.forward = cd.sparse.input_grad = cd.sparse.weight_grad = false;
    SparseLinear ls(cs), ld(cd);
    ls.begin_step(0);
    ld.begin_step(0);
    const Tensor x = test::randn(n, in, 1), g = test::randn(n, out, 2);
    EXPECT_TRUE(same_bits(ls.forward(x), ld.forward(x))) << sparse_mode_name(mode);
    Tensor dxs = Tensor::matrix(n, in, DType::kF32), dxd = Tensor::matrix(n, in, DType::kF32);
    ls.backward(x, g, &dxs.view(), 3);
    ld.backward(x, g, &dxd.view(), 3);
    EXPECT_TRUE(same_bits(dxs, dxd)) << sparse_mode_name(mode);
    EXPECT_FALSE(same_bits(ls.weight_grad(), ld.weight_grad()));
    const Tensor exact = mm(prune_mvue(g.view().t(), 3), x, DType::kF32);
    EXPECT_TRUE(same_bits(ls.weight_grad(), exact));
    // Dense dW: dY^T X in fp32.
    Mat want(size_t(out * in), 0.0);
    for (int64_t j = 0; j < out; ++j)
      for (int64_t k = 0; k < in; ++k)
        for (int64_t i = 0; i < n; ++i) want[size_t(j * in + k)] += test::get(g, i, j) * test::get(x, i, k);
    expect_near_mat(want, ld.weight_grad(), 1e-5, "dense dW");
    // Dense dW needs no N % 4.
    const Tensor x6 = test::randn(6, in, 4), g6 = test::randn(6, out, 5);
    ld.backward(x6, g6, nullptr, 0);
    expect_error([&] { ls.backward(x6, g6, nullptr, 0); }, ErrorKind::kShape, "N must be divisible by 4");
  }
}

TEST(LayersFst, GradientAccumulationAddsMicroSteps) {
  LinearConfig c = config(SparseMode::kFst, 8, 8, 2);
  SparseLinear l(c);
  l.begin_step(0);
  const Tensor x1 = test::randn(8, 8, 1), g1 = test::randn(8, 8, 2);
  const Tensor x2 = test::randn(8, 8, 3), g2 = test::randn(8, 8, 4);
  l.backward(x1, g1, nullptr, 10);
  const Tensor dw1 = Tensor::copy_of(l.weight_grad(), Device::kCPU);
  const Tensor db1 = Tensor::copy_of(l.bias_grad(), Device::kCPU);
  l.zero_grad();
  l.backward(x2, g2, nullptr, 11);
  const Tensor dw2 = Tensor::copy_of(l.weight_grad(), Device::kCPU);
  l.zero_grad();
  l.backward(x1, g1, nullptr, 10);
  l.backward(x2, g2, nullptr, 11);
  for (int64_t i = 0; i < 64; ++i)
    EXPECT_EQ(static_cast<const float*>(l.weight_grad().data)[i], dw1.data<float>()[i] + dw2.data<float>()[i]);
  float db2[8] = {};
  for (int64_t j = 0; j < 8; ++j)
    for (int64_t i = 0; i < 8; ++i) db2[j] += float(test::get(g2, i, j));
  for (int64_t j = 0; j < 8; ++j)
    EXPECT_NEAR(static_cast<const float*>(l.bias_grad().data)[j], db1.data<float>()[j] + db2[j], 1e-5);
}

// ---- FST's mask cadence and compression ----------------------------------------------------

TEST(LayersFst, MaskIsReselectedEveryMaskFreqSteps) {
  LinearConfig c = config(SparseMode::kFst, 16, 16, 3);
  c.mask_freq = 3;
  SparseLinear l(c);
  Mask24 prev;
  int64_t updates = 0;
  for (int64_t step = 0; step < 10; ++step) {
    // Move W between steps (as training would), enough to change the best mask.
    const Tensor noise = test::randn(16, 16, uint64_t(100 + step));
    float* w = static_cast<float*>(l.weight().data);
    for (int64_t i = 0; i < 256; ++i) w[i] += 0.02f * noise.data<float>()[i];
    const Mask24 best = prune_transposable(l.weight()).mask;
    l.begin_step(step);
    const LayerStats st = l.stats();
    if (step % 3 == 0) {
      ++updates;
      EXPECT_TRUE(l.mask() == best) << "step " << step;
      EXPECT_EQ(st.last_mask_update_step, step);
      EXPECT_EQ(st.steps_since_mask_update, 0);
      if (prev.defined()) {
        EXPECT_FALSE(l.mask() == prev) << "step " << step;
        EXPECT_EQ(st.flip_rate, flip_rate(prev, best));
        EXPECT_GT(st.flip_rate, 0.0);
      } else {
        EXPECT_TRUE(std::isnan(st.flip_rate));
      }
      prev = best;
    } else {
      EXPECT_TRUE(l.mask() == prev) << "step " << step;  // kept between updates
      EXPECT_FALSE(l.mask() == best) << "step " << step;  // although W's best mask moved
      EXPECT_EQ(st.steps_since_mask_update, step % 3);
    }
    EXPECT_EQ(st.mask_updates, updates);
    EXPECT_EQ(st.step, step);
    // Every step compresses the current W with the current mask.
    const Tensor x = test::randn(8, 16, 5);
    expect_near_mat(linear_ref(to_mat(x), masked_ref(to_mat(l.weight()), l.mask()), Mat(16, 0.0), 8, 16, 16),
                    l.forward(x), 1e-5, "forward");
  }
}

TEST(LayersFst, CompressesOncePerStepForAllMicroSteps) {
  SparseLinear l(config(SparseMode::kFst, 12, 8, 4));
  l.begin_step(0);
  const Tensor x = test::randn(8, 12, 1);
  const Tensor y0 = l.forward(x);
  // The optimizer (or anything) changing W between micro-steps does not change this step's
  // compressed weight: micro-steps reuse it.
  float* w = static_cast<float*>(l.weight().data);
  for (int64_t i = 0; i < 96; ++i) w[i] *= 2.f;
  EXPECT_TRUE(same_bits(l.forward(x), y0));
  l.begin_step(1);  // not a mask step: same mask, new values
  const Tensor y1 = l.forward(x);
  for (int64_t i = 0; i < 8 * 8; ++i) EXPECT_EQ(y1.data<float>()[i], 2.f * y0.data<float>()[i]);
}

TEST(LayersFst, ForwardNeedsBeginStep) {
  SparseLinear l(config(SparseMode::kFst, 8, 8));
  const Tensor x = test::randn(4, 8, 1);
  expect_error([&] { (void)l.forward(x); }, ErrorKind::kValue, "call begin_step");
  expect_error([&] { l.backward(x, test::randn(4, 8, 2), nullptr, 0); }, ErrorKind::kValue, "begin_step");
  expect_error([&] { l.begin_step(-1); }, ErrorKind::kValue, "step must be >= 0");
  // Dense and S-STE need no begin_step.
  SparseLinear s(config(SparseMode::kSste, 8, 8)), d(config(SparseMode::kDense, 8, 8));
  (void)s.forward(x);
  (void)d.forward(x);
}

TEST(LayersFst, HalfPrecisionWeightStorage) {
  for (DType dt : {DType::kF16, DType::kBF16}) {
    LinearConfig c = config(SparseMode::kFst, 16, 8, 5);
    c.weight_dtype = dt;
    SparseLinear l(c);
    l.begin_step(0);
    // The reference: W * mask rounded to the storage dtype.
    Mat w = masked_ref(to_mat(l.weight()), l.mask());
    for (double& v : w) v = dt == DType::kF16 ? f16_to_f32(f32_to_f16(float(v))) : bf16_to_f32(f32_to_bf16(float(v)));
    const Tensor x = test::randn(8, 16, 2);
    expect_near_mat(linear_ref(to_mat(x), w, Mat(8, 0.0), 8, 16, 8), l.forward(x), 1e-5, dtype_name(dt));
    // Half the bytes of the fp32 values.
    LinearConfig c32 = c;
    c32.weight_dtype = DType::kF32;
    SparseLinear l32(c32);
    l32.begin_step(0);
    EXPECT_EQ(l32.extra_bytes() - l.extra_bytes(), size_t(2 * (16 * 8 / 2) * 2));
  }
}

TEST(LayersFst, OverflowInTheGradientReachesTheLossScaler) {
  // An Inf in dY (an fp16 overflow) must not throw in MVUE: it propagates into dW as NaN, and
  // the loss scaler skips the step.
  SparseLinear l(config(SparseMode::kFst, 8, 8));
  l.begin_step(0);
  const Tensor x = test::randn(8, 8, 1);
  Tensor g = test::randn(8, 8, 2);
  g.data<float>()[13] = INFINITY;
  Tensor dx = Tensor::matrix(8, 8, DType::kF32);
  l.backward(x, g, &dx.view(), 0);
  LossScaler scaler;
  EXPECT_FALSE(scaler.unscale_and_check({l.weight_grad(), l.bias_grad(), dx}));
  EXPECT_EQ(scaler.scale(), 32768.f);
}

// ---- The dense switch ----------------------------------------------------------------------

TEST(LayersDenseSwitch, FstKeepsTheDecayedWeights) {
  const int64_t n = 8, in = 16, out = 8;
  LinearConfig c = config(SparseMode::kFst, in, out, 7);
  c.decay_alpha = 0.05f;
  SparseLinear l(c);
  AdamW opt;
  l.add_parameters(opt);
  const Tensor x = test::randn(n, in, 1), g = test::randn(n, out, 2);
  for (int64_t s = 0; s < 3; ++s) train_step(l, opt, s, x, g);
  l.begin_step(3);
  const Tensor y_sparse = l.forward(x);
  ASSERT_TRUE(l.decay_mask()->defined());
  EXPECT_GT(l.stats().pruned_norm, 0.0);  // the pruned masters are not zero
  EXPECT_GT(l.extra_bytes(), 0u);

  l.switch_to_dense();
  EXPECT_TRUE(l.is_dense());
  EXPECT_FALSE(l.decay_mask()->defined());  // the fused masked decay stops
  EXPECT_FALSE(l.mask().defined());
  EXPECT_EQ(l.extra_bytes(), 0u);
  const LayerStats st = l.stats();
  EXPECT_TRUE(st.dense);
  EXPECT_EQ(st.kept_fraction, 1.0);
  EXPECT_EQ(st.nonzero_fraction, 1.0);
  // Dense GEMMs on the master W, pruned entries included.
  const Tensor y = l.forward(x);
  expect_near_mat(linear_ref(to_mat(x), to_mat(l.weight()), bias_of(l), n, in, out), y, 1e-5, "dense forward");
  EXPECT_FALSE(same_bits(y, y_sparse));
  // Exact dW, no N % 4 rule, begin_step no longer selects masks.
  const Tensor x6 = test::randn(6, in, 3), g6 = test::randn(6, out, 4);
  l.zero_grad();
  l.backward(x6, g6, nullptr, 0);
  l.begin_step(40);
  EXPECT_FALSE(l.mask().defined());
  l.switch_to_dense();  // idempotent
}

TEST(LayersDenseSwitch, ApplyMaskIsContinuous) {
  for (SparseMode mode : {SparseMode::kFst, SparseMode::kSste}) {
    LinearConfig c = config(mode, 16, 8, 8);
    SparseLinear l(c);
    AdamW opt;
    l.add_parameters(opt);
    const Tensor x = test::randn(8, 16, 1), g = test::randn(8, 8, 2);
    for (int64_t s = 0; s < 2; ++s) train_step(l, opt, s, x, g);
    l.begin_step(2);
    const Tensor before = l.forward(x);
    l.switch_to_dense(DenseSwitch::kApplyMask);
    EXPECT_TRUE(same_bits(l.forward(x), before)) << sparse_mode_name(mode);
    EXPECT_LE(l.stats().nonzero_fraction, 0.5);
  }
}

TEST(LayersDenseSwitch, SwitchesAtTheChosenStep) {
  for (SparseMode mode : {SparseMode::kFst, SparseMode::kSste, SparseMode::kDense}) {
    LinearConfig c = config(mode, 8, 8, 9);
    c.dense_from_step = 5;
    c.mask_freq = 2;
    SparseLinear l(c);
    const Tensor x = test::randn(4, 8, 1);
    for (int64_t s = 0; s < 8; ++s) {
      l.begin_step(s);
      (void)l.forward(x);
      EXPECT_EQ(l.is_dense(), mode == SparseMode::kDense || s >= 5) << sparse_mode_name(mode) << " step " << s;
      EXPECT_EQ(l.stats().kept_fraction, l.is_dense() ? 1.0 : 0.5);
    }
    if (mode == SparseMode::kFst) {
      EXPECT_EQ(l.stats().mask_updates, 3);  // steps 0, 2, 4
    }
  }
}

// ---- S-STE ---------------------------------------------------------------------------------

TEST(LayersSste, BetaIsFrozenAtInitialisation) {
  const int64_t n = 8, in = 16, out = 12;
  SparseLinear l(config(SparseMode::kSste, in, out, 10));
  const double beta0 = sste_scale(l.weight());
  EXPECT_EQ(l.beta(), beta0);
  EXPECT_EQ(l.stats().beta, beta0);
  EXPECT_GT(beta0, 1.0);  // S shrinks the kept weights; beta restores their scale
  // Changing W (training) does not change beta; the forward uses the new S(W) with the old beta.
  float* w = static_cast<float*>(l.weight().data);
  const Tensor noise = test::randn(out, in, 3);
  for (int64_t i = 0; i < out * in; ++i) w[i] = 1.5f * w[i] + 0.01f * noise.data<float>()[i];
  ASSERT_NE(sste_scale(l.weight()), beta0);
  const Tensor x = test::randn(n, in, 4);
  const Tensor y = l.forward(x);
  EXPECT_EQ(l.beta(), beta0);
  expect_near_mat(linear_ref(to_mat(x), sste_weight_ref(to_mat(l.weight()), out, in, beta0), bias_of(l), n, in, out),
                  y, 1e-5, "forward");
  EXPECT_TRUE(l.mask() == prune_magnitude(l.weight()).mask);
  // Saved with the layer: the loaded beta is the frozen one, not sste_scale of the loaded W.
  std::stringstream ss;
  l.save(ss);
  SparseLinear back = SparseLinear::load(ss);
  EXPECT_EQ(back.beta(), beta0);
  EXPECT_TRUE(same_bits(back.forward(x), y));
  // set_weights / init re-initialise, and only then is beta recomputed.
  l.init(11);
  EXPECT_EQ(l.beta(), sste_scale(l.weight()));
}

// set_weights with weights S-STE cannot scale (all zero, NaN) throws and leaves the layer as it
// was: weights, beta and the output all unchanged.
TEST(LayersSste, RefusedSetWeightsChangesNothing) {
  const int64_t in = 16, out = 12;
  SparseLinear l(config(SparseMode::kSste, in, out, 10));
  const Tensor x = test::randn(4, in, 4);
  const Tensor y = l.forward(x);
  const Tensor w0 = Tensor::copy_of(l.weight(), Device::kCPU);
  const double beta0 = l.beta();
  Tensor zeros = Tensor::matrix(out, in, DType::kF32);
  fill_zeros(zeros);
  Tensor nan = Tensor::copy_of(w0.view(), Device::kCPU);
  nan.data<float>()[5] = NAN;
  for (const Tensor* w : {&zeros, &nan}) {
    EXPECT_THROW(l.set_weights(w->view()), Error);
    EXPECT_TRUE(same_bits(Tensor::copy_of(l.weight(), Device::kCPU), w0));
    EXPECT_EQ(l.beta(), beta0);
    EXPECT_TRUE(same_bits(l.forward(x), y));
  }
}

TEST(LayersSste, SoftThresholdIsRecomputedEveryForward) {
  SparseLinear l(config(SparseMode::kSste, 8, 8, 12));
  const Tensor x = test::randn(4, 8, 1);
  const Tensor y0 = l.forward(x);
  float* w = static_cast<float*>(l.weight().data);
  for (int64_t i = 0; i < 64; ++i) w[i] = -w[i];
  const Tensor y1 = l.forward(x);  // no begin_step needed: S(W) follows W at once
  for (int64_t i = 0; i < 32; ++i) EXPECT_NEAR(y1.data<float>()[i], -y0.data<float>()[i], 1e-7);
}

TEST(LayersSste, FlipRateBetweenSteps) {
  SparseLinear l(config(SparseMode::kSste, 16, 8, 13));
  const Tensor x = test::randn(4, 16, 1);
  l.begin_step(0);
  (void)l.forward(x);
  EXPECT_TRUE(std::isnan(l.stats().flip_rate));
  const Mask24 m0 = l.mask();
  float* w = static_cast<float*>(l.weight().data);
  const Tensor noise = test::randn(8, 16, 2);
  for (int64_t i = 0; i < 128; ++i) w[i] += 0.02f * noise.data<float>()[i];
  l.begin_step(1);
  (void)l.forward(x);
  (void)l.forward(x);  // a second micro-step does not count again
  const LayerStats st = l.stats();
  EXPECT_EQ(st.mask_updates, 1);
  EXPECT_EQ(st.flip_rate, flip_rate(m0, l.mask()));
  EXPECT_GT(st.flip_rate, 0.0);
}

TEST(LayersSste, Fp8ForwardAndBackward) {
  const int64_t n = 16, in = 32, out = 16;
  LinearConfig c8 = config(SparseMode::kSste, in, out, 14), c32 = c8;
  c8.weight_dtype = DType::kF8E4M3;
  SparseLinear l8(c8), l32(c32);
  const Tensor x = test::randn(n, in, 1), g = test::randn(n, out, 2);
  const Tensor y8 = l8.forward(x), y32 = l32.forward(x);
  // The definition: e4m3(x) with scale amax(x)/448 times e4m3(beta S(W)) with scale amax/448.
  auto quant = [](Mat v) {
    double amax = 0;
    for (double e : v) amax = std::max(amax, std::fabs(e));
    const float scale = float(amax) / 448.f;
    for (double& e : v) e = double(e4m3_to_f32(f32_to_e4m3(float(e) / scale, Overflow::kSaturate)) * scale);
    return v;
  };
  Mat sw(size_t(out * in));
  {
    const Tensor s = decompress(prune_soft_threshold(l8.weight(), float(l8.beta())));
    sw = to_mat(s);
  }
  expect_near_mat(linear_ref(quant(to_mat(x)), quant(sw), bias_of(l8), n, in, out), y8, 1e-5, "fp8 forward");
  // Close to the fp32 layer (e4m3 keeps 3 mantissa bits).
  double err = 0, ref = 0;
  for (int64_t i = 0; i < n * out; ++i) {
    err += std::pow(double(y8.data<float>()[i]) - y32.data<float>()[i], 2);
    ref += std::pow(double(y32.data<float>()[i]), 2);
  }
  EXPECT_LT(std::sqrt(err / ref), 0.1);
  // Backward: e5m2 gradients, close to fp32.
  Tensor dx8 = Tensor::matrix(n, in, DType::kF32), dx32 = Tensor::matrix(n, in, DType::kF32);
  l8.backward(x, g, &dx8.view(), 5);
  l32.backward(x, g, &dx32.view(), 5);
  err = ref = 0;
  for (int64_t i = 0; i < n * in; ++i) {
    err += std::pow(double(dx8.data<float>()[i]) - dx32.data<float>()[i], 2);
    ref += std::pow(double(dx32.data<float>()[i]), 2);
  }
  EXPECT_LT(std::sqrt(err / ref), 0.2);
  err = ref = 0;
  const float* a = static_cast<const float*>(l8.weight_grad().data);
  const float* b = static_cast<const float*>(l32.weight_grad().data);
  for (int64_t i = 0; i < out * in; ++i) {
    err += std::pow(double(a[i]) - b[i], 2);
    ref += std::pow(double(b[i]), 2);
  }
  EXPECT_LT(std::sqrt(err / ref), 0.25);
  // A quarter of the fp32 values' bytes for the cached forward weight.
  EXPECT_LT(l8.extra_bytes(), l32.extra_bytes());
}

// ---- Statistics and memory -----------------------------------------------------------------

TEST(LayersStats, MaskStatisticsAndExtraBytes) {
  const int64_t in = 64, out = 32;
  SparseLinear dense(config(SparseMode::kDense, in, out));
  EXPECT_EQ(dense.extra_bytes(), 0u);
  EXPECT_TRUE(dense.stats().dense);
  EXPECT_EQ(dense.stats().kept_fraction, 1.0);
  EXPECT_EQ(dense.decay_mask(), nullptr);

  SparseLinear fst(config(SparseMode::kFst, in, out));
  EXPECT_EQ(fst.extra_bytes(), 0u);  // nothing before the first step
  fst.begin_step(0);
  const LayerStats st = fst.stats();
  EXPECT_EQ(st.mode, SparseMode::kFst);
  EXPECT_FALSE(st.dense);
  EXPECT_EQ(st.kept_fraction, 0.5);
  EXPECT_EQ(st.nonzero_fraction, 0.5);
  double pruned = 0;
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c)
      if (!fst.mask().kept(r, c)) pruned += std::pow(test::get(fst.weight(), r, c), 2);
  EXPECT_NEAR(st.pruned_norm, std::sqrt(pruned), 1e-9);
  // Compressed W and W^T (fp32 values, half the entries each) plus metadata: 4 bits per group
  // of 4 for W, W^T and at most once more for the mask.
  const size_t values = 2 * size_t(out * in / 2) * 4, meta = size_t(out * in / 8);
  EXPECT_GE(fst.extra_bytes(), values + 2 * meta);
  EXPECT_LE(fst.extra_bytes(), values + 3 * meta);
  EXPECT_EQ(fst.decay_mask(), &fst.mask());  // the optimizer reads the live mask
  EXPECT_EQ(fst.decay_alpha(), 6e-5f);

  SparseLinear sste(config(SparseMode::kSste, in, out));
  const Tensor x = test::randn(4, in, 1);
  (void)sste.forward(x);
  const LayerStats ss = sste.stats();
  EXPECT_EQ(ss.kept_fraction, 0.5);
  EXPECT_LE(ss.nonzero_fraction, 0.5);  // the shrink zeroes a kept entry only on a tie
  EXPECT_GT(ss.nonzero_fraction, 0.45);
  EXPECT_GT(ss.pruned_norm, 0.0);
  EXPECT_EQ(sste.decay_mask(), nullptr);
  EXPECT_GE(sste.extra_bytes(), size_t(out * in / 2) * 4 + meta);
}

// ---- Dtypes and layouts --------------------------------------------------------------------

TEST(LayersIo, HalfPrecisionAndColumnMajorActivations) {
  for (SparseMode mode : {SparseMode::kDense, SparseMode::kFst, SparseMode::kSste}) {
    SparseLinear l(config(mode, 16, 8, 15));
    l.begin_step(0);
    const Tensor x32 = test::randn(8, 16, 1), g32 = test::randn(8, 8, 2);
    const Tensor x = test::convert(x32, DType::kF16, Layout::kColMajor);
    const Tensor g = test::convert(g32, DType::kBF16, Layout::kColMajor);
    Tensor y = Tensor::matrix(8, 8, DType::kBF16, Layout::kColMajor);
    l.forward(x, y);
    const Tensor yref = l.forward(test::convert(x, DType::kF32));
    for (int64_t i = 0; i < 8; ++i)
      for (int64_t j = 0; j < 8; ++j)
        EXPECT_NEAR(test::get(y, i, j), test::get(yref, i, j), 1e-2 * std::fabs(test::get(yref, i, j)) + 1e-6);
    Tensor dx = Tensor::matrix(8, 16, DType::kF16);
    l.backward(x, g, &dx.view(), 1);
    Tensor dx_ref = Tensor::matrix(8, 16, DType::kF32);
    l.backward(test::convert(x, DType::kF32), test::convert(g, DType::kF32), &dx_ref.view(), 1);
    for (int64_t i = 0; i < 8; ++i)
      for (int64_t j = 0; j < 16; ++j)
        EXPECT_NEAR(test::get(dx, i, j), test::get(dx_ref, i, j), 2e-3 * std::fabs(test::get(dx_ref, i, j)) + 1e-6);
  }
}

TEST(LayersIo, ErrorPaths) {
  SparseLinear l(config(SparseMode::kFst, 8, 12));
  l.begin_step(0);
  const Tensor x = test::randn(4, 8, 1);
  expect_error([&] { (void)l.forward(test::randn(4, 12, 1)); }, ErrorKind::kShape, "features, the layer's in is 8");
  Tensor y_bad = Tensor::matrix(4, 8, DType::kF32);
  expect_error([&] { l.forward(x, y_bad); }, ErrorKind::kShape, "y fp32[4 x 8");
  Tensor y_int = Tensor::matrix(4, 12, DType::kI32);
  expect_error([&] { l.forward(x, y_int); }, ErrorKind::kDType, "fp32, fp16 or bf16");
  Tensor x_int = Tensor::matrix(4, 8, DType::kI8);
  Tensor y = Tensor::matrix(4, 12, DType::kF32);
  expect_error([&] { l.forward(x_int, y); }, ErrorKind::kDType, "x int8");
  TensorView x_gpu = x.view();
  x_gpu.device = Device::kCUDA;
  expect_error([&] { l.forward(x_gpu, y); }, ErrorKind::kDevice, "the layer runs on cpu");
  const Tensor g = test::randn(4, 12, 2);
  Tensor dx_bad = Tensor::matrix(4, 12, DType::kF32);
  expect_error([&] { l.backward(x, g, &dx_bad.view(), 0); }, ErrorKind::kShape, "dx");
  expect_error([&] { l.backward(x, test::randn(4, 8, 2), nullptr, 0); }, ErrorKind::kShape, "dy");
  const Tensor x6 = test::randn(6, 8, 1), g6 = test::randn(6, 12, 2);
  expect_error([&] { l.backward(x6, g6, nullptr, 0); }, ErrorKind::kShape, "GemmChoice::weight_grad = false");
  expect_error([&] { l.set_weights(test::randn(8, 12, 1)); }, ErrorKind::kShape, "must be 12 x 8");
  LinearConfig nb = config(SparseMode::kDense, 8, 12);
  nb.bias = false;
  SparseLinear no_bias(nb);
  const Tensor b = test::randn(1, 12, 1);
  expect_error([&] { no_bias.set_weights(test::randn(12, 8, 1), &b.view()); }, ErrorKind::kShape, "no bias");
}

// ---- Save and load -------------------------------------------------------------------------

TEST(LayersSaveLoad, RoundTripContinuesBitIdentically) {
  for (SparseMode mode : {SparseMode::kDense, SparseMode::kFst, SparseMode::kSste}) {
    LinearConfig c = config(mode, 16, 8, 16);
    c.mask_freq = 2;
    c.decay_alpha = 1e-3f;
    SparseLinear a(c);
    AdamW opt_a;
    a.add_parameters(opt_a);
    const Tensor x = test::randn(8, 16, 1), g = test::randn(8, 8, 2);
    for (int64_t s = 0; s < 3; ++s) train_step(a, opt_a, s, x, g);
    std::stringstream la, oa;
    a.save(la);
    opt_a.save(oa);

    // A fresh layer from the stream, and an existing layer restored in place.
    SparseLinear b = SparseLinear::load(la);
    AdamW opt_b;
    b.add_parameters(opt_b);
    opt_b.load(oa);
    LinearConfig other = c;
    other.seed = 99;
    SparseLinear d(other);
    AdamW opt_d;
    d.add_parameters(opt_d);
    la.seekg(0);
    oa.seekg(0);
    d.load_state(la);
    opt_d.load(oa);

    EXPECT_TRUE(same_bits(b.weight(), a.weight()));
    EXPECT_EQ(b.beta(), a.beta());
    // A loaded layer runs a forward at once (no begin_step: evaluation, sampling), with the
    // loaded masters under the loaded mask.
    expect_near_mat(linear_ref(to_mat(x), weff_ref(b), bias_of(b), 8, 16, 8), b.forward(x), 1e-5, "loaded forward");
    EXPECT_EQ(b.stats().mask_updates, a.stats().mask_updates);
    EXPECT_EQ(b.stats().step, 2);
    EXPECT_EQ(b.config().mask_freq, 2);
    for (int64_t s = 3; s < 7; ++s) {
      train_step(a, opt_a, s, x, g);
      train_step(b, opt_b, s, x, g);
      train_step(d, opt_d, s, x, g);
      ASSERT_TRUE(same_bits(a.weight(), b.weight())) << sparse_mode_name(mode) << " step " << s;
      ASSERT_TRUE(same_bits(a.weight(), d.weight())) << sparse_mode_name(mode) << " step " << s;
      ASSERT_TRUE(same_bits(a.bias(), b.bias()));
      if (mode != SparseMode::kDense) {
        ASSERT_TRUE(a.mask() == b.mask());
      }
      const LayerStats sa = a.stats(), sb = b.stats();
      EXPECT_EQ(sa.mask_updates, sb.mask_updates);
      EXPECT_TRUE(sa.flip_rate == sb.flip_rate || (std::isnan(sa.flip_rate) && std::isnan(sb.flip_rate)));
    }
    a.begin_step(7);
    b.begin_step(7);
    EXPECT_TRUE(same_bits(a.forward(x), b.forward(x)));
  }
}

TEST(LayersSaveLoad, DenseSwitchAndFp8ConfigSurvive) {
  LinearConfig c = config(SparseMode::kSste, 16, 8, 17);
  c.weight_dtype = DType::kF8E4M3;
  c.sparse.weight_grad = false;
  c.dense_from_step = 100;
  SparseLinear a(c);
  std::stringstream s1;
  a.save(s1);
  SparseLinear b = SparseLinear::load(s1);
  EXPECT_EQ(b.config().weight_dtype, DType::kF8E4M3);
  EXPECT_FALSE(b.config().sparse.weight_grad);
  EXPECT_EQ(b.config().dense_from_step, 100);
  const Tensor x = test::randn(4, 16, 1);
  EXPECT_TRUE(same_bits(a.forward(x), b.forward(x)));
  a.switch_to_dense();
  std::stringstream s2;
  a.save(s2);
  SparseLinear d = SparseLinear::load(s2);
  EXPECT_TRUE(d.is_dense());
  EXPECT_TRUE(same_bits(a.forward(x), d.forward(x)));
}

TEST(LayersSaveLoad, TruncatedCorruptAndMismatchedStreamsThrow) {
  LinearConfig c = config(SparseMode::kFst, 8, 8, 18);
  SparseLinear a(c);
  a.begin_step(0);
  std::stringstream ss;
  a.save(ss);
  const std::string full = ss.str();
  for (size_t len : {size_t(0), size_t(5), size_t(12), size_t(40), size_t(120), full.size() - 40, full.size() - 1}) {
    std::istringstream is(full.substr(0, len));
    expect_error([&] { (void)SparseLinear::load(is); }, ErrorKind::kIO, "truncated");
  }
  auto corrupt = [&](size_t at, char value) {
    std::string s = full;
    s[at] = value;
    return s;
  };
  {
    std::istringstream is(corrupt(0, 'X'));
    expect_error([&] { (void)SparseLinear::load(is); }, ErrorKind::kIO, "bad magic");
  }
  {
    std::istringstream is(corrupt(8, 9));  // version 9
    expect_error([&] { (void)SparseLinear::load(is); }, ErrorKind::kIO, "version 9");
  }
  {
    std::istringstream is(corrupt(full.size() - 1, 'X'));
    expect_error([&] { (void)SparseLinear::load(is); }, ErrorKind::kIO, "end marker");
  }
  {
    std::istringstream is(corrupt(12 + 17, 7));  // the mode byte (after magic, version, in, out, bias)
    expect_error([&] { (void)SparseLinear::load(is); }, ErrorKind::kIO, "invalid layer config");
  }
  {
    std::istringstream is(full);
    SparseLinear other(config(SparseMode::kFst, 8, 12));
    expect_error([&] { other.load_state(is); }, ErrorKind::kIO, "mismatched stream");
  }
  {
    std::istringstream is(full);
    SparseLinear other(config(SparseMode::kSste, 8, 8));
    expect_error([&] { other.load_state(is); }, ErrorKind::kIO, "this layer is sste");
  }
  {
    std::istringstream is("not a layer at all, but long enough to read a header");
    expect_error([&] { (void)SparseLinear::load(is); }, ErrorKind::kIO, "bad magic");
  }
}

// ---- Training ------------------------------------------------------------------------------

TEST(LayersTraining, EveryModeLearnsALinearMap) {
  // Fit y = x T^T with T a random dense map, from W ~ 0: the loss must drop well below its
  // start in every mode (the 2:4 modes cannot reach zero: T is dense).
  const int64_t n = 32, in = 16, out = 8;
  const Tensor t = test::randn(out, in, 1);
  const Tensor x = test::randn(n, in, 2);
  const Tensor target = [&] {
    SparseLinear ref(config(SparseMode::kDense, in, out));
    ref.set_weights(t);
    return ref.forward(x);
  }();
  for (SparseMode mode : {SparseMode::kDense, SparseMode::kFst, SparseMode::kSste}) {
    LinearConfig c = config(mode, in, out, 3);
    c.mask_freq = 5;
    SparseLinear l(c);
    AdamWConfig oc;
    oc.weight_decay = 0.f;
    AdamW opt(oc);
    l.add_parameters(opt);
    double first = 0, last = 0;
    for (int64_t s = 0; s < 150; ++s) {
      l.begin_step(s);
      const Tensor y = l.forward(x);
      Tensor dy = Tensor::matrix(n, out, DType::kF32);
      double loss = 0;
      for (int64_t i = 0; i < n * out; ++i) {
        const float d = y.data<float>()[i] - target.data<float>()[i];
        loss += double(d) * d / double(n);
        dy.data<float>()[i] = 2.f * d / float(n);
      }
      if (s == 0) first = loss;
      last = loss;
      l.backward(x, dy, nullptr, uint64_t(s));
      clip_grad_norm(opt.grads(), 10.0);
      opt.step(3e-2f);
      opt.zero_grad();
    }
    EXPECT_LT(last, (mode == SparseMode::kDense ? 0.01 : 0.6) * first) << sparse_mode_name(mode);
  }
}

}  // namespace
}  // namespace sparse24
