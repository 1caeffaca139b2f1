// AdamW (against a scalar double reference; the fused masked decay against masked_decay + a
// plain step), clip_grad_norm, the loss scaler, their saved state and every error path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "sparse24/layers.h"
#include "sparse24/optim.h"
#include "test_util.h"

namespace sparse24 {
namespace {

using test::expect_error;

bool same_bits(const TensorView& a, const TensorView& b) {
  if (a.numel() != b.numel() || a.dtype != b.dtype) return false;
  return std::memcmp(a.data, b.data, size_t(a.numel()) * size_t(dtype_size(a.dtype))) == 0;
}

Tensor copy(const TensorView& v) { return Tensor::copy_of(v, Device::kCPU); }

void fill_randn(const Tensor& t, uint64_t seed) {
  const Tensor r = test::randn(1, t.numel(), seed);
  std::memcpy(t.view().data, r.data<float>(), size_t(t.numel()) * 4);
}

Tensor vec(int64_t n) { return Tensor::empty({n}, DType::kF32); }

// PyTorch's AdamW for one parameter, in double.
struct RefAdamW {
  std::vector<double> w, m, v;
  bool decay;
  void step(const std::vector<double>& g, double lr, int t, const AdamWConfig& c) {
    const double bc1 = 1 - std::pow(double(c.beta1), t), bc2 = 1 - std::pow(double(c.beta2), t);
    for (size_t i = 0; i < w.size(); ++i) {
      if (decay) w[i] *= 1 - lr * c.weight_decay;
      m[i] = c.beta1 * m[i] + (1 - double(c.beta1)) * g[i];
      v[i] = c.beta2 * v[i] + (1 - double(c.beta2)) * g[i] * g[i];
      const double denom = std::sqrt(v[i]) / std::sqrt(bc2) + c.eps;
      w[i] -= lr / bc1 * m[i] / denom;
    }
  }
};

TEST(OptimAdamW, MatchesScalarReference) {
  AdamWConfig c;
  c.weight_decay = 0.1f;
  AdamW opt(c);
  const Tensor w = test::randn(4, 8, 1), gw = Tensor::matrix(4, 8, DType::kF32);
  const Tensor b = vec(8), gb = vec(8);
  fill_randn(b, 2);
  EXPECT_EQ(opt.add(w, gw, true), 0u);
  EXPECT_EQ(opt.add(b, gb, false), 1u);
  RefAdamW rw{std::vector<double>(32), std::vector<double>(32, 0.0), std::vector<double>(32, 0.0), true};
  RefAdamW rb{std::vector<double>(8), std::vector<double>(8, 0.0), std::vector<double>(8, 0.0), false};
  for (int i = 0; i < 32; ++i) rw.w[size_t(i)] = w.data<float>()[i];
  for (int i = 0; i < 8; ++i) rb.w[size_t(i)] = b.data<float>()[i];
  for (int t = 1; t <= 6; ++t) {
    fill_randn(gw, uint64_t(10 + t));
    fill_randn(gb, uint64_t(20 + t));
    std::vector<double> g1(gw.data<float>(), gw.data<float>() + 32), g2(gb.data<float>(), gb.data<float>() + 8);
    const float lr = 1e-2f * float(t);  // a schedule
    opt.step(lr);
    rw.step(g1, lr, t, c);
    rb.step(g2, lr, t, c);
    for (int i = 0; i < 32; ++i) ASSERT_NEAR(w.data<float>()[i], rw.w[size_t(i)], 1e-6) << "t " << t << " w " << i;
    for (int i = 0; i < 8; ++i) ASSERT_NEAR(b.data<float>()[i], rb.w[size_t(i)], 1e-6) << "t " << t << " b " << i;
    for (int i = 0; i < 32; ++i) {
      ASSERT_NEAR(opt.exp_avg(0).data<float>()[i], rw.m[size_t(i)], 1e-6);
      ASSERT_NEAR(opt.exp_avg_sq(0).data<float>()[i], rw.v[size_t(i)], 1e-6);
    }
  }
  EXPECT_EQ(opt.steps(), 6);
  // step() without an argument uses the config's lr.
  AdamW d;
  const Tensor p = vec(1), g = vec(1);
  p.data<float>()[0] = 1.f;
  g.data<float>()[0] = 1.f;
  d.add(p, g, false);
  d.step();
  EXPECT_NEAR(p.data<float>()[0], 1.0 - 1.5e-4, 1e-7);  // the first Adam step moves by lr
}

TEST(OptimAdamW, FusedMaskedDecayEqualsUnfused) {
  const Tensor w0 = test::randn(8, 12, 3);
  const Mask24 mask = prune_transposable(w0).mask;
  const float alpha = 0.02f;
  const Tensor w_fused = copy(w0), g_fused = Tensor::matrix(8, 12, DType::kF32);
  const Tensor w_plain = copy(w0), g_plain = Tensor::matrix(8, 12, DType::kF32);
  const Tensor w_none = copy(w0), g_none = Tensor::matrix(8, 12, DType::kF32);
  AdamW fused, plain, none;
  fused.add(w_fused, g_fused, true, &mask, alpha);
  plain.add(w_plain, g_plain, true);
  none.add(w_none, g_none, true);
  for (int t = 1; t <= 5; ++t) {
    fill_randn(g_fused, uint64_t(t));
    fill_randn(g_plain, uint64_t(t));
    fill_randn(g_none, uint64_t(t));
    const Tensor g_before = copy(g_fused);
    masked_decay(g_plain, w_plain, mask, alpha);
    fused.step(1e-2f);
    plain.step(1e-2f);
    none.step(1e-2f);
    ASSERT_TRUE(same_bits(w_fused, w_plain)) << "step " << t;
    ASSERT_TRUE(same_bits(fused.exp_avg(0), plain.exp_avg(0)));
    ASSERT_TRUE(same_bits(fused.exp_avg_sq(0), plain.exp_avg_sq(0)));
    EXPECT_TRUE(same_bits(g_fused, g_before));  // the fused step leaves the gradient alone
  }
  // The decay acted only on pruned entries, pulling them towards 0 compared with no decay.
  int pruned_smaller = 0;
  for (int64_t r = 0; r < 8; ++r)
    for (int64_t c = 0; c < 12; ++c) {
      const float a = *w_fused.view().at<float>(r, c), b = *w_none.view().at<float>(r, c);
      if (mask.kept(r, c)) EXPECT_EQ(a, b);
      else pruned_smaller += std::fabs(a) < std::fabs(b);
    }
  EXPECT_GT(pruned_smaller, 8 * 12 / 2 * 3 / 4);
}

TEST(OptimAdamW, LiveMaskAndUndefinedMask) {
  // The optimizer reads the mask through its pointer at every step: replacing the mask object's
  // contents takes effect, and an undefined mask means no masked decay.
  const Tensor w0 = test::randn(8, 8, 4);
  Mask24 live;  // undefined: FST before its first mask
  const Tensor wa = copy(w0), ga = Tensor::matrix(8, 8, DType::kF32);
  const Tensor wb = copy(w0), gb = Tensor::matrix(8, 8, DType::kF32);
  AdamW a, b;
  a.add(wa, ga, true, &live, 0.5f);
  b.add(wb, gb, true);
  fill_randn(ga, 1);
  fill_randn(gb, 1);
  a.step(1e-2f);
  b.step(1e-2f);
  EXPECT_TRUE(same_bits(wa, wb));
  live = prune_magnitude(w0).mask;
  masked_decay(gb, wb, live, 0.5f);
  a.step(1e-2f);
  b.step(1e-2f);
  EXPECT_TRUE(same_bits(wa, wb));
  // The alpha can follow a schedule.
  a.set_masked_decay_alpha(0, 0.25f);
  fill_randn(ga, 2);
  fill_randn(gb, 2);  // masked_decay changed gb in place
  masked_decay(gb, wb, live, 0.25f);
  a.step(1e-2f);
  b.step(1e-2f);
  EXPECT_TRUE(same_bits(wa, wb));
  expect_error([&] { a.set_masked_decay_alpha(1, 0.1f); }, ErrorKind::kValue, "no parameter 1");
  expect_error([&] { b.set_masked_decay_alpha(0, 0.1f); }, ErrorKind::kValue, "without a masked-decay mask");
  expect_error([&] { a.set_masked_decay_alpha(0, NAN); }, ErrorKind::kValue, "alpha");
  // A mask of the wrong shape at step time.
  live = prune_magnitude(test::randn(8, 12, 1)).mask;
  expect_error([&] { a.step(1e-2f); }, ErrorKind::kShape, "the parameter is");
}

TEST(OptimAdamW, FstLayerRegistersLiveMaskedDecay) {
  LinearConfig c;
  c.in = 16;
  c.out = 8;
  c.mode = SparseMode::kFst;
  c.decay_alpha = 0.01f;
  // Layers in a vector that grows after registration: the moves keep the weight memory and the
  // mask object the optimizer points to.
  std::vector<SparseLinear> layers;
  layers.reserve(1);
  layers.emplace_back(c);
  AdamW opt;
  layers[0].add_parameters(opt);
  EXPECT_EQ(opt.size(), 2u);
  for (int i = 0; i < 8; ++i) layers.emplace_back(c);  // reallocates
  SparseLinear& layer = layers[0];
  EXPECT_EQ(opt.grads()[0].data, layer.weight_grad().data);
  layer.begin_step(0);
  // One step of the layer's optimizer equals masked_decay with the layer's mask + a plain step.
  const Tensor w_ref = copy(layer.weight()), g_ref = Tensor::matrix(8, 16, DType::kF32);
  const Tensor b_ref = copy(layer.bias()), gb_ref = vec(8);
  AdamW ref;
  ref.add(w_ref, g_ref, true);
  ref.add(b_ref, gb_ref, false);
  const Tensor x = test::randn(8, 16, 1), dy = test::randn(8, 8, 2);
  layer.backward(x, dy, nullptr, 3);
  std::memcpy(g_ref.data<float>(), layer.weight_grad().data, 8 * 16 * 4);
  std::memcpy(gb_ref.data<float>(), layer.bias_grad().data, 8 * 4);
  masked_decay(g_ref, w_ref, layer.mask(), 0.01f);
  opt.step(1e-3f);
  ref.step(1e-3f);
  EXPECT_TRUE(same_bits(layer.weight(), w_ref));
  EXPECT_TRUE(same_bits(layer.bias(), b_ref));
  opt.zero_grad();
  for (int64_t i = 0; i < 128; ++i) EXPECT_EQ(static_cast<const float*>(layer.weight_grad().data)[i], 0.f);
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(static_cast<const float*>(layer.bias_grad().data)[i], 0.f);
}

TEST(OptimAdamW, SaveLoadContinuesBitIdentically) {
  AdamWConfig c;
  c.lr = 3e-3f;
  c.beta2 = 0.99f;
  const Tensor w0 = test::randn(8, 8, 5);
  const Mask24 mask = prune_transposable(w0).mask;
  const Tensor wa = copy(w0), ga = Tensor::matrix(8, 8, DType::kF32), ba = vec(8), gba = vec(8);
  fill_randn(ba, 6);
  AdamW a(c);
  a.add(wa, ga, true, &mask, 0.01f);
  a.add(ba, gba, false);
  for (int t = 0; t < 3; ++t) {
    fill_randn(ga, uint64_t(t));
    fill_randn(gba, uint64_t(50 + t));
    a.step();
  }
  a.set_masked_decay_alpha(0, 0.03f);
  std::stringstream ss;
  a.save(ss);
  const Tensor wb = copy(wa), gb = Tensor::matrix(8, 8, DType::kF32), bb = copy(ba), gbb = vec(8);
  AdamW b;  // default config: load restores the saved one
  b.add(wb, gb, true, &mask, 0.01f);
  b.add(bb, gbb, false);
  b.load(ss);
  EXPECT_EQ(b.steps(), 3);
  EXPECT_EQ(b.config().lr, 3e-3f);
  EXPECT_EQ(b.config().beta2, 0.99f);
  for (int t = 3; t < 6; ++t) {
    fill_randn(ga, uint64_t(t));
    fill_randn(gb, uint64_t(t));
    fill_randn(gba, uint64_t(50 + t));
    fill_randn(gbb, uint64_t(50 + t));
    a.step();
    b.step();
    ASSERT_TRUE(same_bits(wa, wb)) << "step " << t;
    ASSERT_TRUE(same_bits(ba, bb)) << "step " << t;
  }
}

TEST(OptimAdamW, LoadErrors) {
  const Tensor w = test::randn(4, 4, 1), g = Tensor::matrix(4, 4, DType::kF32);
  AdamW a;
  a.add(w, g, true);
  a.step(1e-3f);
  std::stringstream ss;
  a.save(ss);
  const std::string full = ss.str();
  for (size_t len : {size_t(0), size_t(3), size_t(20), size_t(40), full.size() - 1}) {
    std::istringstream is(full.substr(0, len));
    AdamW b;
    const Tensor w2 = copy(w), g2 = copy(g);
    b.add(w2, g2, true);
    expect_error([&] { b.load(is); }, ErrorKind::kIO, "truncated");
    EXPECT_EQ(b.steps(), 0);  // nothing half-loaded
  }
  {
    std::istringstream is(full);
    AdamW b;  // no parameters registered
    expect_error([&] { b.load(is); }, ErrorKind::kIO, "holds 1 parameters, this optimizer has 0");
  }
  {
    std::istringstream is(full);
    AdamW b;
    const Tensor w2 = test::randn(4, 8, 1), g2 = Tensor::matrix(4, 8, DType::kF32);
    b.add(w2, g2, true);
    expect_error([&] { b.load(is); }, ErrorKind::kIO, "has 16 elements in the stream, 32 here");
  }
  {
    std::string bad = full;
    bad[0] = 'x';
    std::istringstream is(bad);
    AdamW b;
    expect_error([&] { b.load(is); }, ErrorKind::kIO, "bad magic");
  }
  // Values AdamW never writes: a NaN alpha, a negative second moment. The stream ends with the one
  // parameter's alpha, 16 first and 16 second moments, and the 8-byte end marker.
  auto with_float = [&](size_t at, float x) {
    std::string bad = full;
    std::memcpy(&bad[at], &x, sizeof x);
    return bad;
  };
  const size_t v_last = full.size() - 8 - 4, alpha = full.size() - 8 - 2 * 16 * 4 - 4;
  for (const auto& [bytes, words] : {std::pair{with_float(v_last, -1.f), "second moment at element 15 is -1"},
                                     std::pair{with_float(alpha, NAN), "masked-decay alpha is nan"}}) {
    std::istringstream is(bytes);
    AdamW b;
    const Tensor w2 = copy(w), g2 = copy(g);
    b.add(w2, g2, true);
    expect_error([&] { b.load(is); }, ErrorKind::kIO, words);
    EXPECT_EQ(b.steps(), 0);
  }
  {
    std::stringstream ls;
    LossScaler().save(ls);  // another kind of stream
    AdamW b;
    expect_error([&] { b.load(ls); }, ErrorKind::kIO, "bad magic");
  }
}

TEST(OptimAdamW, InvalidArguments) {
  AdamWConfig c;
  c.beta1 = 1.f;
  expect_error([&] { AdamW o(c); }, ErrorKind::kValue, "beta1");
  c = {};
  c.beta2 = -0.1f;
  expect_error([&] { AdamW o(c); }, ErrorKind::kValue, "beta2");
  c = {};
  c.eps = 0.f;
  expect_error([&] { AdamW o(c); }, ErrorKind::kValue, "eps");
  c = {};
  c.weight_decay = NAN;
  expect_error([&] { AdamW o(c); }, ErrorKind::kValue, "weight_decay");
  c = {};
  c.lr = -1.f;
  expect_error([&] { AdamW o(c); }, ErrorKind::kValue, "lr");

  AdamW opt;
  const Tensor w = test::randn(4, 8, 1), g = Tensor::matrix(4, 8, DType::kF32);
  const Tensor w16 = test::convert(w, DType::kF16);
  expect_error([&] { opt.add(w16, g, true); }, ErrorKind::kDType, "must be fp32");
  const Tensor g_bad = Tensor::matrix(8, 4, DType::kF32);
  expect_error([&] { opt.add(w, g_bad, true); }, ErrorKind::kShape, "differ in shape");
  const Tensor w_col = test::randn(4, 8, 1, Layout::kColMajor);
  expect_error([&] { opt.add(w_col, g, true); }, ErrorKind::kShape, "contiguous");
  TensorView w_gpu = w.view();
  w_gpu.device = Device::kCUDA;
  expect_error([&] { opt.add(w_gpu, g, true); }, ErrorKind::kDevice, "different devices");
  const Tensor b = vec(8), gb = vec(8);
  const Mask24 mask = prune_magnitude(w).mask;
  expect_error([&] { opt.add(b, gb, false, &mask, 0.1f); }, ErrorKind::kShape, "needs a matrix");
  expect_error([&] { opt.add(w, g, true, &mask, NAN); }, ErrorKind::kValue, "masked_decay_alpha");
  const Mask24 wrong = prune_magnitude(test::randn(4, 12, 1)).mask;
  expect_error([&] { opt.add(w, g, true, &wrong, 0.1f); }, ErrorKind::kShape, "masked-decay mask");
  opt.add(w, g, true, &mask, 0.1f);
  expect_error([&] { opt.add(w, g, true); }, ErrorKind::kValue, "already registered");
  expect_error([&] { opt.step(NAN); }, ErrorKind::kValue, "lr must be finite");
  expect_error([&] { (void)opt.exp_avg(3); }, ErrorKind::kValue, "no parameter 3");
}

// ---- Clipping ------------------------------------------------------------------------------

TEST(OptimClip, ScalesToTheGlobalNorm) {
  const Tensor a = vec(2), b = Tensor::matrix(1, 2, DType::kF32);
  a.data<float>()[0] = 3.f;
  a.data<float>()[1] = 0.f;
  b.data<float>()[0] = 0.f;
  b.data<float>()[1] = 4.f;
  // Below the limit: untouched, the norm returned.
  EXPECT_DOUBLE_EQ(clip_grad_norm({a, b}, 10.0), 5.0);
  EXPECT_EQ(a.data<float>()[0], 3.f);
  EXPECT_EQ(b.data<float>()[1], 4.f);
  // Above: scaled by max_norm / (norm + 1e-6), as PyTorch.
  EXPECT_DOUBLE_EQ(clip_grad_norm({a, b}, 1.0), 5.0);
  const float coef = float(1.0 / (5.0 + 1e-6));
  EXPECT_EQ(a.data<float>()[0], 3.f * coef);
  EXPECT_EQ(b.data<float>()[1], 4.f * coef);
  EXPECT_NEAR(clip_grad_norm({a, b}, 100.0), 1.0, 1e-6);
  // Many tensors of any float dtype and layout together.
  const Tensor x = test::randn(6, 8, 1), y16 = test::convert(test::randn(4, 4, 2), DType::kF16, Layout::kColMajor);
  const Tensor zb = test::convert(test::randn(3, 5, 3), DType::kBF16);
  double sum = 0;
  for (const Tensor* t : {&x, &y16, &zb})
    for (int64_t i = 0; i < t->rows(); ++i)
      for (int64_t j = 0; j < t->cols(); ++j) sum += std::pow(test::get(*t, i, j), 2);
  EXPECT_NEAR(clip_grad_norm({x, y16, zb}, 0.5), std::sqrt(sum), 1e-9 * std::sqrt(sum));
  EXPECT_NEAR(clip_grad_norm({x, y16, zb}, 100.0), 0.5, 5e-3);  // fp16/bf16 rounding
  // A non-finite norm: returned, gradients left alone for the scaler to skip the step.
  const Tensor bad = test::randn(2, 4, 4);
  bad.data<float>()[5] = INFINITY;
  const Tensor before = copy(bad);
  EXPECT_TRUE(std::isinf(clip_grad_norm({bad}, 1.0)));
  EXPECT_TRUE(same_bits(bad, before));
  bad.data<float>()[5] = NAN;
  EXPECT_TRUE(std::isnan(clip_grad_norm({bad}, 1.0)));
  EXPECT_EQ(clip_grad_norm({}, 1.0), 0.0);
}

TEST(OptimClip, Errors) {
  const Tensor g = test::randn(2, 4, 1);
  expect_error([&] { clip_grad_norm({g}, 0.0); }, ErrorKind::kValue, "max_norm");
  expect_error([&] { clip_grad_norm({g}, NAN); }, ErrorKind::kValue, "max_norm");
  const Tensor i8 = Tensor::matrix(2, 2, DType::kI8);
  expect_error([&] { clip_grad_norm({g, i8}, 1.0); }, ErrorKind::kDType, "gradient 1");
  TensorView scalar = g.view();
  scalar.rank = 0;
  expect_error([&] { clip_grad_norm({scalar}, 1.0); }, ErrorKind::kShape, "rank 1 to");
  TensorView gpu = g.view().t();  // a transposed (non-contiguous) view said to be on CUDA
  gpu.device = Device::kCUDA;
  expect_error([&] { clip_grad_norm({gpu}, 1.0); }, ErrorKind::kShape, "on CUDA must be contiguous");
  TensorView repeated = g.view();  // one element seen 4 times: it would be summed and scaled 4 times
  repeated.shape[1] = 4;
  repeated.strides[1] = 0;
  expect_error([&] { clip_grad_norm({repeated}, 1.0); }, ErrorKind::kShape, "stride 0 along dimension 1");
}

// ---- Loss scaling --------------------------------------------------------------------------

TEST(OptimLossScaler, SkipsOverflowsAndBacksOff) {
  LossScalerConfig c;
  c.init_scale = 1024.f;
  c.growth_interval = 3;
  LossScaler s(c);
  EXPECT_EQ(s.scale(), 1024.f);
  const Tensor g = test::randn(4, 4, 1), want = copy(g);
  const Tensor h = test::convert(test::randn(2, 4, 2), DType::kF16), hwant = copy(h);
  // Scaled gradients unscale exactly (power-of-two scale).
  for (int64_t i = 0; i < 16; ++i) g.data<float>()[i] *= 1024.f;
  for (int64_t i = 0; i < 8; ++i) {
    auto* p = h.data<f16_t>() + i;
    p->bits = f32_to_f16(f16_to_f32(p->bits) * 1024.f);
  }
  EXPECT_TRUE(s.unscale_and_check({g, h}));
  EXPECT_TRUE(same_bits(g, want));
  EXPECT_TRUE(same_bits(h, hwant));
  s.update();
  EXPECT_EQ(s.growth_tracker(), 1);
  EXPECT_EQ(s.scale(), 1024.f);
  // An injected Inf: skip the step, halve the scale, restart the growth count.
  g.data<float>()[3] = INFINITY;
  EXPECT_FALSE(s.unscale_and_check({g, h}));
  EXPECT_EQ(s.scale(), 512.f);
  EXPECT_EQ(s.growth_tracker(), 0);
  EXPECT_EQ(s.skipped_steps(), 1);
  s.update();  // after a failed check: nothing more
  EXPECT_EQ(s.scale(), 512.f);
  EXPECT_EQ(s.growth_tracker(), 0);
  // A NaN in a bf16 gradient.
  const Tensor nb = test::convert(test::randn(2, 4, 3), DType::kBF16);
  nb.data<bf16_t>()[2].bits = 0x7FC0;
  EXPECT_FALSE(s.unscale_and_check({want, nb}));
  EXPECT_EQ(s.scale(), 256.f);
  EXPECT_EQ(s.skipped_steps(), 2);
  s.update();
  // growth_interval good steps in a row: the scale doubles.
  for (int i = 0; i < 3; ++i) {
    const Tensor ok = test::randn(2, 2, uint64_t(i));
    EXPECT_TRUE(s.unscale_and_check({ok}));
    s.update();
  }
  EXPECT_EQ(s.scale(), 512.f);
  EXPECT_EQ(s.growth_tracker(), 0);
  expect_error([&] { s.update(); }, ErrorKind::kValue, "call unscale_and_check");
}

// Backing off never reaches a scale of 0 (the next unscale would divide by it): it stops at the
// smallest normal float.
TEST(OptimLossScaler, BackoffStopsAtTheSmallestNormal) {
  LossScalerConfig c;
  c.init_scale = 1e-37f;
  LossScaler s(c);
  const Tensor bad = test::randn(2, 2, 1);
  for (int i = 0; i < 200; ++i) {
    bad.data<float>()[0] = NAN;
    EXPECT_FALSE(s.unscale_and_check({bad}));
    s.update();
  }
  EXPECT_EQ(s.scale(), std::numeric_limits<float>::min());
  const Tensor ok = test::randn(2, 2, 2);
  EXPECT_TRUE(s.unscale_and_check({ok}));
}

TEST(OptimLossScaler, ConfigErrorsAndSavedState) {
  LossScalerConfig c;
  c.init_scale = 0.f;
  expect_error([&] { LossScaler s(c); }, ErrorKind::kValue, "init_scale");
  c = {};
  c.growth_factor = 1.f;
  expect_error([&] { LossScaler s(c); }, ErrorKind::kValue, "growth_factor");
  c = {};
  c.backoff_factor = 1.f;
  expect_error([&] { LossScaler s(c); }, ErrorKind::kValue, "backoff_factor");
  c = {};
  c.growth_interval = 0;
  expect_error([&] { LossScaler s(c); }, ErrorKind::kValue, "growth_interval");

  c = {};
  c.growth_interval = 2;
  LossScaler a(c);
  const Tensor bad = test::randn(2, 2, 1);
  bad.data<float>()[0] = NAN;
  EXPECT_FALSE(a.unscale_and_check({bad}));
  a.update();
  const Tensor ok = test::randn(2, 2, 2);
  EXPECT_TRUE(a.unscale_and_check({ok}));
  a.update();
  std::stringstream ss;
  a.save(ss);
  LossScaler b;
  b.load(ss);
  EXPECT_EQ(b.scale(), a.scale());
  EXPECT_EQ(b.growth_tracker(), 1);
  EXPECT_EQ(b.skipped_steps(), 1);
  EXPECT_EQ(b.config().growth_interval, 2);
  // One more good step grows both alike.
  const Tensor ok2 = test::randn(2, 2, 3), ok3 = copy(ok2);
  EXPECT_TRUE(a.unscale_and_check({ok2}));
  EXPECT_TRUE(b.unscale_and_check({ok3}));
  a.update();
  b.update();
  EXPECT_EQ(b.scale(), a.scale());
  EXPECT_EQ(a.scale(), 65536.f);
  const std::string full = ss.str();
  std::istringstream cut(full.substr(0, full.size() - 3));
  LossScaler d;
  expect_error([&] { d.load(cut); }, ErrorKind::kIO, "truncated");
  EXPECT_EQ(d.scale(), 65536.f);
}

}  // namespace
}  // namespace sparse24
