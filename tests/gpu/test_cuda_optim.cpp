// The optimizer on CUDA tensors against the same calls on CPU copies: AdamW's weights and both
// moments bit-identical after several steps, with and without weight decay and FST's masked
// decay (a transposable mask, replaced between steps as FST does), zero_grad, a save on one
// device loaded on the other; clip_grad_norm and the loss scaler. Without a GPU every test
// reports itself skipped.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <sstream>

#include "gpu/gpu_test.h"
#include "test_util.h"

namespace sparse24 {
namespace {

class CudaOptim : public test::GpuTest {};

// Byte equality of a CPU tensor and a CUDA one.
void expect_same_bytes(const Tensor& cpu, const Tensor& gpu_dev, const std::string& what) {
  const Tensor gpu = gpu_dev.to(Device::kCPU);
  ASSERT_EQ(cpu.numel(), gpu.numel()) << what;
  const float* a = cpu.data<float>();
  const float* b = gpu.data<float>();
  for (int64_t i = 0; i < cpu.numel(); ++i)
    if (std::memcmp(a + i, b + i, sizeof(float)) != 0) {
      ADD_FAILURE() << what << ": element " << i << " cpu " << a[i] << " gpu " << b[i];
      return;
    }
}

// One parameter set on both devices: a 96 x 200 weight (masked decay, decay), a bias (no decay).
struct Params {
  Tensor w, gw, b, gb;
};
Params on(Device d, const Params& src) {
  return {src.w.to(d), src.gw.to(d), src.b.to(d), src.gb.to(d)};
}

TEST_F(CudaOptim, AdamWMatchesTheCpuBitForBit) {
  Params cpu{test::randn(96, 200, 1), Tensor(), test::randn(1, 200, 2), Tensor()};
  cpu.gw = test::randn(96, 200, 3);
  cpu.gb = test::randn(1, 200, 4);
  Params gpu = on(Device::kCUDA, cpu);
  Mask24 mask_cpu = prune_transposable(test::randn(96, 200, 5)).mask;
  Mask24 mask_gpu = mask_cpu.to(Device::kCUDA);
  AdamWConfig c;
  c.weight_decay = 0.1f;
  AdamW a(c), g(c);
  a.add(cpu.w, cpu.gw, true, &mask_cpu, 2e-2f);
  a.add(cpu.b, cpu.gb, false);
  g.add(gpu.w, gpu.gw, true, &mask_gpu, 2e-2f);
  g.add(gpu.b, gpu.gb, false);
  for (int step = 0; step < 4; ++step) {
    if (step == 2) {  // FST re-selects the mask: the optimizer reads it through the pointer
      mask_cpu = prune_transposable(cpu.w).mask;
      mask_gpu = mask_cpu.to(Device::kCUDA);
    }
    a.step(1e-2f * float(step + 1));
    g.step(1e-2f * float(step + 1));
    const std::string what = "step " + std::to_string(step);
    expect_same_bytes(cpu.w, gpu.w, what + " weight");
    expect_same_bytes(cpu.b, gpu.b, what + " bias");
    expect_same_bytes(a.exp_avg(0), g.exp_avg(0), what + " m");
    expect_same_bytes(a.exp_avg_sq(0), g.exp_avg_sq(0), what + " v");
  }
  g.zero_grad();
  const Tensor zero = gpu.gw.to(Device::kCPU);
  for (int64_t i = 0; i < zero.numel(); ++i) ASSERT_EQ(zero.data<float>()[i], 0.f) << i;
}

TEST_F(CudaOptim, AdamWStateMovesBetweenDevices) {
  Params cpu{test::randn(32, 64, 1), test::randn(32, 64, 2), test::randn(1, 64, 3),
             test::randn(1, 64, 4)};
  Params gpu = on(Device::kCUDA, cpu);
  AdamW g;
  g.add(gpu.w, gpu.gw, true);
  g.add(gpu.b, gpu.gb, false);
  g.step(1e-2f);
  std::stringstream state;
  g.save(state);
  // The CPU optimizer loads the GPU's moments and continues exactly as the GPU does.
  Params cpu_after = on(Device::kCPU, gpu);
  AdamW a;
  a.add(cpu_after.w, cpu_after.gw, true);
  a.add(cpu_after.b, cpu_after.gb, false);
  a.load(state);
  EXPECT_EQ(a.steps(), 1);
  a.step(2e-2f);
  g.step(2e-2f);
  expect_same_bytes(cpu_after.w, gpu.w, "weight after a step on each device");
  expect_same_bytes(a.exp_avg_sq(1), g.exp_avg_sq(1), "bias v after a step on each device");
}

TEST_F(CudaOptim, AdamWRejectsMixedDevices) {
  const Tensor w = test::randn(8, 16, 1).to(Device::kCUDA);
  const Tensor gw = test::randn(8, 16, 2);
  AdamW g;
  test::expect_error([&] { g.add(w, gw, true); }, ErrorKind::kDevice, "different devices");
  const Tensor gw_dev = gw.to(Device::kCUDA);
  const Mask24 mask = prune_magnitude(test::randn(8, 16, 3)).mask;  // on the CPU
  test::expect_error([&] { g.add(w, gw_dev, true, &mask, 1e-3f); }, ErrorKind::kDevice,
                     "masked-decay mask");
}

// clip_grad_norm and the loss scaler on CUDA gradients (fp32 and bf16): the same norm (to double
// rounding), the same clipped and unscaled values bit for bit, the same overflow verdict.
TEST_F(CudaOptim, ClipAndLossScalerMatchTheCpu) {
  const Tensor a = test::randn(64, 48, 1);
  const Tensor b = test::convert(test::randn(1, 300, 2), DType::kBF16);
  const Tensor a_dev = a.to(Device::kCUDA), b_dev = b.to(Device::kCUDA);
  const double norm_cpu = clip_grad_norm({a, b}, 0.5);
  const double norm_gpu = clip_grad_norm({a_dev, b_dev}, 0.5);
  EXPECT_NEAR(norm_gpu, norm_cpu, 1e-12 * norm_cpu);
  ASSERT_GT(norm_cpu, 0.5);  // clipping happened
  expect_same_bytes(a, a_dev, "clipped fp32 gradient");
  const Tensor b_back = b_dev.to(Device::kCPU);
  ASSERT_EQ(std::memcmp(b.view().data, b_back.view().data, 300 * 2), 0) << "clipped bf16";

  LossScaler cpu_scaler, gpu_scaler;
  EXPECT_TRUE(cpu_scaler.unscale_and_check({a}));
  EXPECT_TRUE(gpu_scaler.unscale_and_check({a_dev}));
  expect_same_bytes(a, a_dev, "unscaled gradient");
  // An Inf in one CUDA gradient: the step is skipped and the scale backs off on both.
  a.data<float>()[17] = std::numeric_limits<float>::infinity();
  const Tensor a_inf = a.to(Device::kCUDA);
  cpu_scaler.update();
  gpu_scaler.update();
  EXPECT_FALSE(cpu_scaler.unscale_and_check({a}));
  EXPECT_FALSE(gpu_scaler.unscale_and_check({a_inf}));
  EXPECT_EQ(cpu_scaler.scale(), gpu_scaler.scale());
}

}  // namespace
}  // namespace sparse24
