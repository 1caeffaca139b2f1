// The sparse linear layer on CUDA against the same layer on the CPU: every mode and GEMM choice,
// fp16 and bf16, forward, backward (dX, dW, db) and an optimizer step, the masks exactly and the
// values within the rounding of a 16-bit output; statistics, the memory held, save on one device
// and load on the other, the errors of bad calls; converting copies. Without a GPU every test
// reports itself skipped.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>

#include "gpu/gpu_test.h"
#include "test_util.h"

namespace sparse24 {
namespace {

class CudaLayers : public test::GpuTest {};

Tensor host(const TensorView& v) { return Tensor::copy_of(v, Device::kCPU); }

// |got - want| <= rel * |want| + abs_scale * bound[i][j] for every element (bound: the sum of
// absolute products behind each element, so the tolerance follows the magnitudes summed).
void expect_close(const TensorView& got_any, const Tensor& want, const Tensor& bound, double rel,
                  double abs_scale, const std::string& what) {
  const Tensor got = host(got_any);
  ASSERT_EQ(got.rows(), want.rows()) << what;
  ASSERT_EQ(got.cols(), want.cols()) << what;
  for (int64_t i = 0; i < want.rows(); ++i)
    for (int64_t j = 0; j < want.cols(); ++j) {
      const double g = test::get(got, i, j), w = test::get(want, i, j);
      const double tol = rel * std::fabs(w) + abs_scale * test::get(bound, i, j);
      if (!(std::fabs(g - w) <= tol)) {
        ADD_FAILURE() << what << ": element (" << i << ", " << j << ") cuda " << g << " cpu " << w
                      << " tolerance " << tol;
        return;
      }
    }
}

// |A| |B| (fp32 CPU matrices of any dtype and layout): the bound of expect_close.
Tensor abs_product(const TensorView& a, const TensorView& b) {
  Tensor out = Tensor::matrix(a.rows(), b.cols(), DType::kF32);
  for (int64_t i = 0; i < a.rows(); ++i)
    for (int64_t j = 0; j < b.cols(); ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < a.cols(); ++k) acc += std::fabs(test::get(a, i, k)) * std::fabs(test::get(b, k, j));
      *out.view().at<float>(i, j) = float(acc);
    }
  return out;
}

void expect_same_mask(const Mask24& gpu, const Mask24& cpu, const std::string& what) {
  ASSERT_TRUE(gpu.defined() && cpu.defined()) << what;
  const Mask24 g = gpu.to(Device::kCPU);
  ASSERT_EQ(g.rows(), cpu.rows()) << what;
  EXPECT_EQ(std::memcmp(g.codes().data<uint8_t>(), cpu.codes().data<uint8_t>(), size_t(cpu.rows() * cpu.row_bytes())), 0)
      << what;
}

// A layer config with the fields every test sets; each test changes what else it needs.
LinearConfig layer_config(SparseMode mode, int64_t in, int64_t out, DType dt, Device device) {
  LinearConfig c;
  c.in = in;
  c.out = out;
  c.mode = mode;
  c.weight_dtype = dt;
  c.device = device;
  return c;
}

struct Case {
  SparseMode mode;
  GemmChoice sparse;
  const char* name;
};

// A B + bias (fp32 CPU matrices of any dtype and layout; bias: null or b.cols() values).
Tensor product(const TensorView& a, const TensorView& b, const float* bias = nullptr) {
  Tensor out = Tensor::matrix(a.rows(), b.cols(), DType::kF32);
  for (int64_t i = 0; i < a.rows(); ++i)
    for (int64_t j = 0; j < b.cols(); ++j) {
      double acc = bias ? bias[j] : 0.0;
      for (int64_t k = 0; k < a.cols(); ++k) acc += test::get(a, i, k) * test::get(b, k, j);
      *out.view().at<float>(i, j) = float(acc);
    }
  return out;
}

// The weight a layer's forward multiplies by, decompressed on the CPU from its masters (and, for
// FST, its mask): W, W * mask, or beta S(W).
Tensor forward_weight(const SparseLinear& l, const Tensor& masters, const Mask24& mask) {
  switch (l.config().mode) {
    case SparseMode::kDense: return masters;
    case SparseMode::kFst: return decompress(prune_with_mask(masters, mask), DType::kF32);
    case SparseMode::kSste: return decompress(prune_soft_threshold(masters, float(l.beta())), DType::kF32);
  }
  return {};
}

// m as an FP8 GEMM reads it (the CPU layer's simulation): quantized to `dt` with its per-tensor
// scale, decoded, times the scale; fp32 row-major.
Tensor fp8_round_trip(const TensorView& m, DType dt) {
  const float scale = fp8_scale(finite_amax(m), dt);
  Tensor q = Tensor::matrix(m.rows(), m.cols(), dt);
  quantize_into(q, m, scale);
  Tensor out = test::convert(q, DType::kF32);
  for (int64_t i = 0; i < out.numel(); ++i) out.data<float>()[i] *= scale;
  return out;
}

// CPU and CUDA layers built from one config (so one initialisation) agree through a micro-batch
// and an optimizer step; then the CUDA layer's next step computes with its updated masters.
// dt: the weights' dtype; with e4m3 (FP8 GEMMs) the activations are bf16.
void run_case(const Case& cs, DType dt, int64_t n, int64_t in, int64_t out) {
  const std::string what = std::string(cs.name) + " " + dtype_name(dt) + " N=" + std::to_string(n) +
                           " in=" + std::to_string(in) + " out=" + std::to_string(out);
  LinearConfig c = layer_config(cs.mode, in, out, dt, Device::kCPU);
  c.sparse = cs.sparse;
  c.mask_freq = 1;  // FST selects a new mask at step 1 too
  c.seed = 11;
  SparseLinear cpu(c);
  c.device = Device::kCUDA;
  SparseLinear gpu(c);
  AdamWConfig oc;
  oc.weight_decay = 0.1f;
  AdamW opt_cpu(oc), opt_gpu(oc);
  cpu.add_parameters(opt_cpu);
  gpu.add_parameters(opt_gpu);
  const bool fp8 = dt == DType::kF8E4M3;
  const DType adt = fp8 ? DType::kBF16 : dt;  // the activations'
  const double r16 = adt == DType::kF16 ? 1.0 / 1024 : 1.0 / 128;  // two ulps of a 16-bit output

  // Step 0 on both devices.
  const Tensor x = test::convert(test::randn(n, in, 100), adt);
  const Tensor dy = test::convert(test::randn(n, out, 200), adt);
  const Tensor x_gpu = x.to(Device::kCUDA), dy_gpu = dy.to(Device::kCUDA);
  cpu.begin_step(0);
  gpu.begin_step(0);
  if (cs.mode == SparseMode::kFst) expect_same_mask(gpu.mask(), cpu.mask(), what + ": mask");
  const Tensor y_cpu = cpu.forward(x);
  const Tensor y_gpu = gpu.forward(x_gpu);
  EXPECT_EQ(y_gpu.dtype(), adt) << what;
  if (cs.mode == SparseMode::kSste) expect_same_mask(gpu.mask(), cpu.mask(), what + ": S-STE mask");
  const Tensor w_eff = forward_weight(cpu, host(cpu.weight()), cpu.mask());
  expect_close(y_gpu, y_cpu, abs_product(x, w_eff.view().t()), r16, 1e-4 + r16 / 4, what + ": y");

  Tensor dx_cpu = Tensor::matrix(n, in, DType::kF32);
  Tensor dx_gpu = Tensor::matrix(n, in, adt, Layout::kRowMajor, Device::kCUDA);
  cpu.backward(x, dy, &dx_cpu.view(), 7);
  gpu.backward(x_gpu, dy_gpu, &dx_gpu.view(), 7);
  expect_close(dx_gpu, dx_cpu, abs_product(dy, w_eff), r16, 1e-4 + r16 / 4, what + ": dx");
  // dW: the CPU keeps MVUE's values in fp32, CUDA rounds them to the compute dtype; the bound is
  // |S| |X| with S the sparse dY^T (MVUE's draws are the same on both devices).
  Tensor s_dyt;
  if (cs.mode != SparseMode::kDense && cs.sparse.weight_grad) {
    CompressOptions o;
    o.dtype = DType::kF32;
    o.non_finite = NonFinite::kPropagate;
    s_dyt = decompress(prune_mvue(dy.view().t(), 7, o), DType::kF32);
  } else {
    s_dyt = test::convert(dy.view().t(), DType::kF32);
  }
  expect_close(gpu.weight_grad(), host(cpu.weight_grad()), abs_product(s_dyt, x), 1e-5, r16 / 2, what + ": dW");
  Tensor ones = Tensor::matrix(1, n, DType::kF32);
  for (int64_t i = 0; i < n; ++i) ones.data<float>()[i] = 1.f;
  const Tensor db_gpu = host(gpu.bias_grad()), db_cpu = host(cpu.bias_grad());
  expect_close(TensorView::matrix(db_gpu.view().data, DType::kF32, 1, out),
               Tensor::copy_of(TensorView::matrix(db_cpu.view().data, DType::kF32, 1, out), Device::kCPU),
               abs_product(ones, dy), 1e-6, 1e-6, what + ": db");
  const LayerStats sc = cpu.stats(), sg = gpu.stats();
  EXPECT_EQ(sg.mask_updates, sc.mask_updates) << what;
  EXPECT_DOUBLE_EQ(sg.kept_fraction, sc.kept_fraction) << what;
  EXPECT_NEAR(sg.nonzero_fraction, sc.nonzero_fraction, 1e-12) << what;
  EXPECT_NEAR(sg.pruned_norm, sc.pruned_norm, 1e-6 * (1.0 + sc.pruned_norm)) << what;

  // The optimizer step: the gradients agree up to the tolerances above, so the masters stay
  // within about 2 lr (an Adam step moves a weight by at most about lr; a gradient near 0 may
  // differ in sign between the devices).
  opt_cpu.step(1e-3f);
  opt_gpu.step(1e-3f);
  Tensor w_bound = Tensor::matrix(out, in, DType::kF32);
  for (int64_t i = 0; i < w_bound.numel(); ++i) w_bound.data<float>()[i] = 1.f;
  expect_close(gpu.weight(), host(cpu.weight()), w_bound, 0.0, 2.1e-3, what + ": masters after the step");

  // Step 1 on CUDA: its GEMMs read weights prepared from the updated masters (FST: with a new
  // mask, selected from them as the CPU would select it).
  gpu.begin_step(1);
  const Tensor x1 = test::convert(test::randn(n, in, 101), adt);
  const Tensor y1 = gpu.forward(x1.to(Device::kCUDA));
  const Tensor masters = host(gpu.weight()), bias = host(gpu.bias());
  if (cs.mode == SparseMode::kFst) expect_same_mask(gpu.mask(), prune_transposable(masters).mask, what + ": step 1 mask");
  if (cs.mode == SparseMode::kSste)
    expect_same_mask(gpu.mask(), prune_soft_threshold(masters, float(gpu.beta())).mask, what + ": step 1 S-STE mask");
  // Weights and bias as the GPU stores them (rounded to the compute dtype; FP8: x and the weight
  // quantized as the FP8 GEMM reads them) give the reference.
  const Mask24 mask = cs.mode == SparseMode::kDense ? Mask24{} : gpu.mask().to(Device::kCPU);
  const Tensor w_step1 = forward_weight(gpu, masters, mask);
  const bool fp8_gemm = fp8 && cs.mode != SparseMode::kDense;
  const Tensor w1 = fp8_gemm ? fp8_round_trip(w_step1, dt) : test::convert(test::convert(w_step1, adt), DType::kF32);
  const Tensor x1_read = fp8_gemm ? fp8_round_trip(x1, dt) : x1;
  const Tensor b1 = test::convert(test::convert(TensorView::matrix(bias.view().data, DType::kF32, 1, out), adt), DType::kF32);
  expect_close(y1, product(x1_read, w1.view().t(), b1.data<float>()), abs_product(x1, w1.view().t()), r16,
               1e-4 + r16 / 4, what + ": step 1 y");
}

const Case kCases[] = {
    {SparseMode::kDense, {}, "dense"},
    {SparseMode::kFst, {true, true, true}, "fst"},
    {SparseMode::kFst, {true, true, false}, "fst, dense dW"},
    {SparseMode::kFst, {false, false, false}, "fst, all GEMMs dense"},
    {SparseMode::kSste, {true, true, true}, "sste"},
    {SparseMode::kSste, {true, true, false}, "sste, dense dW"},
    {SparseMode::kSste, {false, false, false}, "sste, all GEMMs dense"},
};

TEST_F(CudaLayers, EveryModeMatchesTheCpu) {
  for (const Case& cs : kCases)
    for (DType dt : {DType::kF16, DType::kBF16}) run_case(cs, dt, 64, 64, 128);
}

// e4m3 weights: S-STE's FP8 recipe (e4m3 x and weights, e5m2 dY and MVUE(dY^T)) in both sparse
// modes, every GEMM choice, against the CPU's simulation of it; a dense layer ignores it (bf16).
TEST_F(CudaLayers, Fp8GemmsMatchTheCpuSimulation) {
  for (const Case& cs : kCases) run_case(cs, DType::kF8E4M3, 64, 64, 128);
  for (const Case& cs : {kCases[1], kCases[2], kCases[4], kCases[5]}) run_case(cs, DType::kF8E4M3, 96, 96, 160);
  for (const Case& cs : {kCases[2], kCases[5]}) run_case(cs, DType::kF8E4M3, 48, 224, 32);
}

// FP8: the backward quantizes the x it is given (x changed in place after the forward gives the
// new x's gradient), and token counts the FP8 GEMMs cannot take get errors that say why.
TEST_F(CudaLayers, Fp8BackwardReadsItsOwnInputAndChecksTokens) {
  for (SparseMode mode : {SparseMode::kFst, SparseMode::kSste}) {
    LinearConfig c = layer_config(mode, 64, 96, DType::kF8E4M3, Device::kCUDA);
    c.seed = 5;
    SparseLinear a(c), b(c);
    Tensor x = test::convert(test::randn(48, 64, 6), DType::kBF16).to(Device::kCUDA);
    const Tensor x2 = test::convert(test::randn(48, 64, 8), DType::kBF16).to(Device::kCUDA);
    const Tensor dy = test::convert(test::randn(48, 96, 7), DType::kBF16).to(Device::kCUDA);
    a.begin_step(0);
    b.begin_step(0);
    const Tensor ya = a.forward(x);
    copy_into(x, x2);  // in place, between a's forward and backward
    a.backward(x, dy, nullptr, 1);
    const Tensor yb = b.forward(x2);
    b.backward(x2, dy, nullptr, 1);
    const Tensor ga = host(a.weight_grad()), gb = host(b.weight_grad());
    EXPECT_EQ(std::memcmp(ga.data<float>(), gb.data<float>(), size_t(ga.numel()) * 4), 0) << sparse_mode_name(mode);

    const Tensor x40 = test::convert(test::randn(40, 64, 9), DType::kBF16).to(Device::kCUDA);
    const Tensor dy40 = test::convert(test::randn(40, 96, 10), DType::kBF16).to(Device::kCUDA);
    test::expect_error([&] { a.backward(x40, dy40, nullptr, 1); }, ErrorKind::kShape, "multiple of 16");
    c.sparse.weight_grad = true;
    SparseLinear s(c);
    s.begin_step(0);
    const Tensor x48 = test::convert(test::randn(48, 64, 11), DType::kBF16).to(Device::kCUDA);
    const Tensor dy48 = test::convert(test::randn(48, 96, 12), DType::kBF16).to(Device::kCUDA);
    test::expect_error([&] { s.backward(x48, dy48, nullptr, 1); }, ErrorKind::kShape, "divisible by 32");
  }
}

// A layer belongs to the GPU it was made on: calls while another GPU is current say so (needs
// two GPUs; skipped otherwise).
TEST_F(CudaLayers, CallsOnAnotherGpuSayWhich) {
  if (list_gpus().size() < 2) GTEST_SKIP() << "needs two GPUs";
  SparseLinear l(layer_config(SparseMode::kFst, 64, 64, DType::kBF16, Device::kCUDA));
  const int home = current_gpu();
  ASSERT_EQ(cudaSetDevice(home == 0 ? 1 : 0), cudaSuccess);
  test::expect_error([&] { l.begin_step(0); }, ErrorKind::kDevice, "cudaSetDevice(");
  ASSERT_EQ(cudaSetDevice(home), cudaSuccess);
  l.begin_step(0);
}

// Shapes that are no tile multiple (the GEMMs' tiles are 128 or 256 wide), in fp16.
TEST_F(CudaLayers, ShapesOffTheTiles) {
  for (const Case& cs : {kCases[0], kCases[1], kCases[4]}) {
    run_case(cs, DType::kF16, 48, 96, 80);
    run_case(cs, DType::kF16, 144, 208, 48);
    run_case(cs, DType::kF16, 32, 16, 272);
  }
  // A token count off 16: fine while the weight gradient is dense (the default).
  for (const Case& cs : {kCases[2], kCases[5]}) run_case(cs, DType::kF16, 50, 64, 128);
}

TEST_F(CudaLayers, DenseSwitchMatchesTheCpu) {
  for (SparseMode mode : {SparseMode::kFst, SparseMode::kSste})
    for (DenseSwitch how : {DenseSwitch::kApplyMask, DenseSwitch::kKeepWeights}) {
      const std::string what = std::string(sparse_mode_name(mode)) +
                               (how == DenseSwitch::kApplyMask ? ", apply mask" : ", keep weights");
      LinearConfig c = layer_config(mode, 64, 32, DType::kF16, Device::kCPU);
      c.dense_from_step = 1;
      c.dense_switch = how;
      SparseLinear cpu(c);
      c.device = Device::kCUDA;
      SparseLinear gpu(c);
      cpu.begin_step(0);
      gpu.begin_step(0);
      cpu.begin_step(1);
      gpu.begin_step(1);
      ASSERT_TRUE(gpu.is_dense());
      // The masters became the sparse forward weight (or kept their values) on both devices, bit
      // for bit.
      const Tensor wg = host(gpu.weight()), wc = host(cpu.weight());
      EXPECT_EQ(std::memcmp(wg.data<float>(), wc.data<float>(), size_t(wc.numel()) * 4), 0) << what;
      const Tensor x = test::convert(test::randn(32, 64, 3), DType::kF16);
      const Tensor dy = test::convert(test::randn(32, 32, 4), DType::kF16);
      const Tensor y = gpu.forward(x.to(Device::kCUDA));
      // The CPU's dense GEMMs read the fp32 masters, CUDA's a 16-bit copy: the weights' rounding.
      expect_close(y, cpu.forward(x), abs_product(x, wc.view().t()), 1.0 / 1024, 1e-4 + 1.0 / 4096,
                   what + ": y after the switch");
      Tensor dx_cpu = Tensor::matrix(32, 64, DType::kF32);
      Tensor dx_gpu = Tensor::matrix(32, 64, DType::kF16, Layout::kRowMajor, Device::kCUDA);
      cpu.backward(x, dy, &dx_cpu.view(), 1);
      gpu.backward(x.to(Device::kCUDA), dy.to(Device::kCUDA), &dx_gpu.view(), 1);
      expect_close(dx_gpu, dx_cpu, abs_product(dy, wc), 1.0 / 1024, 1e-4 + 1.0 / 4096, what + ": dx after the switch");
      expect_close(gpu.weight_grad(), host(cpu.weight_grad()), abs_product(test::convert(dy.view().t(), DType::kF32), x),
                   1e-5, 1.0 / 2048, what + ": dW after the switch");
    }
}

TEST_F(CudaLayers, SaveOnOneDeviceLoadOnTheOther) {
  SparseLinear gpu(layer_config(SparseMode::kFst, 32, 48, DType::kBF16, Device::kCUDA));
  gpu.begin_step(0);
  std::stringstream ss;
  gpu.save(ss);
  SparseLinear cpu = SparseLinear::load(ss, Device::kCPU);
  EXPECT_EQ(cpu.config().device, Device::kCPU);
  const Tensor wg = host(gpu.weight()), wc = host(cpu.weight());
  EXPECT_EQ(std::memcmp(wg.data<float>(), wc.data<float>(), size_t(wc.numel()) * 4), 0);
  expect_same_mask(gpu.mask(), cpu.mask(), "loaded mask");
  // And back onto the GPU, ready to run a forward at once (as a loaded CPU layer is).
  std::stringstream ss2;
  cpu.save(ss2);
  SparseLinear again = SparseLinear::load(ss2, Device::kCUDA);
  expect_same_mask(again.mask(), cpu.mask(), "reloaded mask");
  const Tensor x = test::convert(test::randn(16, 32, 4), DType::kBF16);
  expect_close(again.forward(x.to(Device::kCUDA)), cpu.forward(x),
               abs_product(x, decompress(prune_with_mask(wc, cpu.mask()), DType::kF32).view().t()), 1.0 / 128,
               1e-3, "forward after loading");
}

// FST at GPT-2 proportions holds its compressed W and W^T (1 byte per parameter each in 16
// bits), their two sm90 metadata copies and one canonical mask shared by W and the optimizer:
// at most 2.5 bytes per parameter beyond the fp32 masters and gradients (the target).
TEST_F(CudaLayers, FstHoldsAtMostTwoAndAHalfBytesPerParameter) {
  LinearConfig c = layer_config(SparseMode::kFst, 256, 1024, DType::kF16, Device::kCUDA);
  c.bias = false;
  SparseLinear l(c);
  l.begin_step(0);
  const double params = double(c.in * c.out);
  const double per_param = double(l.extra_bytes()) / params;
  EXPECT_GE(per_param, 2.0);  // the two compressed copies alone
  EXPECT_LE(per_param, 2.5);
  l.begin_step(1);  // a step without a mask selection shares the mask too
  EXPECT_DOUBLE_EQ(double(l.extra_bytes()) / params, per_param);
}

TEST_F(CudaLayers, BadCallsGetClearErrors) {
  LinearConfig c = layer_config(SparseMode::kFst, 32, 32, DType::kF16, Device::kCUDA);
  c.sparse.weight_grad = true;
  SparseLinear l(c);
  const Tensor x = Tensor::matrix(8, 32, DType::kF16, Layout::kRowMajor, Device::kCUDA);
  test::expect_error([&] { (void)l.forward(x); }, ErrorKind::kValue, "call begin_step");
  l.begin_step(0);
  const Tensor x_cpu = Tensor::matrix(8, 32, DType::kF16);
  test::expect_error([&] { (void)l.forward(x_cpu); }, ErrorKind::kDevice, "the layer runs on cuda");
  const Tensor x_bf16 = Tensor::matrix(8, 32, DType::kBF16, Layout::kRowMajor, Device::kCUDA);
  test::expect_error([&] { (void)l.forward(x_bf16); }, ErrorKind::kDType, "compute dtype fp16");
  const Tensor y = l.forward(x);
  Tensor dx_f32 = Tensor::matrix(8, 32, DType::kF32, Layout::kRowMajor, Device::kCUDA);
  test::expect_error([&] { l.backward(x, y, &dx_f32.view(), 0); }, ErrorKind::kDType, "compute dtype fp16");
  // 8 tokens: the 2:4 weight gradient's K must be a multiple of 16 on CUDA.
  test::expect_error([&] { l.backward(x, y, nullptr, 0); }, ErrorKind::kShape, "divisible by 16 on CUDA");
  c.in = 40;  // the 2:4 GEMMs' K and rows: multiples of 16
  test::expect_error([&] { SparseLinear bad(c); }, ErrorKind::kShape, "multiples of 16");
  // recompress (or a load) before the first begin_step leaves FST without a mask: no forward.
  c.in = 32;
  SparseLinear fresh(c);
  fresh.recompress();
  test::expect_error([&] { (void)fresh.forward(x); }, ErrorKind::kValue, "call begin_step");
  std::stringstream ss;
  fresh.save(ss);
  SparseLinear loaded = SparseLinear::load(ss, Device::kCUDA);
  test::expect_error([&] { (void)loaded.forward(x); }, ErrorKind::kValue, "call begin_step");
  // A CPU layer in fp32 loads onto CUDA only with a compute dtype.
  LinearConfig cc = c;
  cc.device = Device::kCPU;
  cc.weight_dtype = DType::kF32;
  SparseLinear cpu_layer(cc);
  std::stringstream s32;
  cpu_layer.save(s32);
  const std::string bytes = s32.str();
  std::stringstream a(bytes), b(bytes);
  test::expect_error([&] { (void)SparseLinear::load(a, Device::kCUDA); }, ErrorKind::kIO, "weight_dtype");
  EXPECT_EQ(SparseLinear::load(b, Device::kCUDA, DType::kBF16).config().weight_dtype, DType::kBF16);
}

// copy_into converts between float dtypes on the GPU exactly as on the CPU.
TEST_F(CudaLayers, ConvertingCopyMatchesTheCpu) {
  const Tensor src = test::randn(37, 53, 9);
  const Tensor src_gpu = src.to(Device::kCUDA);
  for (DType dt : {DType::kF16, DType::kBF16}) {
    Tensor d = Tensor::matrix(37, 53, dt, Layout::kRowMajor, Device::kCUDA);
    copy_into(d, src_gpu);
    Tensor back = Tensor::matrix(37, 53, DType::kF32, Layout::kRowMajor, Device::kCUDA);
    copy_into(back, d);
    const Tensor want = test::convert(src, dt), dh = host(d), bh = host(back);
    for (int64_t i = 0; i < 37; ++i)
      for (int64_t j = 0; j < 53; ++j) {
        ASSERT_EQ(test::get(dh, i, j), test::get(want, i, j)) << dtype_name(dt);
        ASSERT_EQ(test::get(bh, i, j), test::get(want, i, j)) << dtype_name(dt);
      }
  }
  Tensor col = Tensor::matrix(37, 53, DType::kF16, Layout::kColMajor, Device::kCUDA);
  test::expect_error([&] { copy_into(col, src_gpu); }, ErrorKind::kDevice, "one layout");
}

}  // namespace
}  // namespace sparse24
