// AdamW on CUDA parameters against the same optimizer on CPU copies: weights and both moments
// bit-identical after several steps, with and without weight decay and FST's masked decay (a
// transposable mask, replaced between steps as FST does), zero_grad, and a save on one device
// loaded on the other. Without a GPU every test reports itself skipped.
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>

#include "test_util.h"

namespace sparse24 {
namespace {

class CudaOptim : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (list_gpus(&why).empty()) GTEST_SKIP() << "no GPU: " << why;
  }
};

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

}  // namespace
}  // namespace sparse24
