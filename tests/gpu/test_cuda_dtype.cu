// The device conversions (hardware paths in dtype.h) against the host ones, bit for bit: every
// code of every 8/16-bit type decoded, and encoding of edge values and random bit patterns
// (NaNs, infinities, subnormals, overflow thresholds) in both overflow modes.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "gpu/gpu_test.h"
#include "sparse24/sparse24.h"

namespace sparse24 {
namespace {

constexpr int kKinds = 6;  // f16, bf16, e4m3, e5m2 (x2 modes), int8

__global__ void decode_all(float* f16, float* bf16, float* e4m3, float* e5m2) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= 65536) return;
  f16[i] = f16_to_f32(uint16_t(i));
  bf16[i] = bf16_to_f32(uint16_t(i));
  if (i < 256) {
    e4m3[i] = e4m3_to_f32(uint8_t(i));
    e5m2[i] = e5m2_to_f32(uint8_t(i));
  }
}

// out[kKinds * 2 * i + ...]: f16, bf16, e4m3, e5m2, int8 (scale 0.5) codes, then the same (but
// int8) saturating; stored widened to uint32.
__global__ void encode_all(const float* in, int n, uint32_t* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float f = in[i];
  uint32_t* o = out + 2 * kKinds * i;
  for (int m = 0; m < 2; ++m) {
    const Overflow ov = m ? Overflow::kSaturate : Overflow::kPyTorch;
    o[kKinds * m + 0] = f32_to_f16(f, ov);
    o[kKinds * m + 1] = f32_to_bf16(f, ov);
    o[kKinds * m + 2] = f32_to_e4m3(f, ov);
    o[kKinds * m + 3] = f32_to_e5m2(f, ov);
    o[kKinds * m + 4] = f != f ? 0u : uint32_t(uint8_t(f32_to_i8(f, 0.5f)));
    o[kKinds * m + 5] = 0u;
  }
}

class CudaDType : public test::GpuTest {};

TEST_F(CudaDType, DecodeEveryCodeLikeTheHost) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 4 * 65536 * sizeof(float)), cudaSuccess);
  decode_all<<<256, 256>>>(d, d + 65536, d + 2 * 65536, d + 3 * 65536);
  std::vector<float> h(4 * 65536);
  ASSERT_EQ(cudaMemcpy(h.data(), d, h.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d);
  for (int i = 0; i < 65536; ++i) {
    ASSERT_EQ(f32_to_bits(h[size_t(i)]), f32_to_bits(f16_to_f32(uint16_t(i)))) << "fp16 0x" << std::hex << i;
    ASSERT_EQ(f32_to_bits(h[size_t(65536 + i)]), f32_to_bits(bf16_to_f32(uint16_t(i)))) << "bf16 0x" << std::hex << i;
  }
  for (int i = 0; i < 256; ++i) {
    ASSERT_EQ(f32_to_bits(h[size_t(2 * 65536 + i)]), f32_to_bits(e4m3_to_f32(uint8_t(i)))) << "e4m3 0x" << std::hex << i;
    ASSERT_EQ(f32_to_bits(h[size_t(3 * 65536 + i)]), f32_to_bits(e5m2_to_f32(uint8_t(i)))) << "e5m2 0x" << std::hex << i;
  }
}

TEST_F(CudaDType, EncodeLikeTheHost) {
  std::vector<float> in = {0.f, -0.f, 1.f, -1.f, 0.5f, 1.5f, 2.5f, -2.5f, 447.99f, 448.f, 463.99f, 464.f, 464.01f,
                           479.99f, 480.f, 57344.f, 61439.99f, 61440.f, 65504.f, 65519.99f, 65520.f, 1e30f, 3.4e38f,
                           1e-8f, 1e-40f, 6e-8f, 3e-8f, 2e-3f, 1.953125e-3f, 9.765625e-4f};
  for (uint32_t bits : {0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7FA00000u, 0x00000001u,
                        0x007FFFFFu, 0x00800000u, 0x7F7FFFFFu})
    in.push_back(f32_from_bits(bits));
  // Midpoints between adjacent codes of each fp8 type, and their neighbours.
  for (int c = 0; c < 127; ++c)
    for (float (*dec)(uint8_t) : {&e4m3_to_f32, &e5m2_to_f32}) {
      const float a = dec(uint8_t(c)), b = dec(uint8_t(c + 1));
      if (a == a && b == b && b - a < 1e30f) {
        const float mid = a + (b - a) / 2;
        in.insert(in.end(), {mid, std::nextafter(mid, 0.f), std::nextafter(mid, 1e38f), -mid});
      }
    }
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) in.push_back(f32_from_bits(rng()));
  std::uniform_real_distribution<float> mag(-40.f, 20.f);
  for (int i = 0; i < 200000; ++i) in.push_back(std::ldexp(1.f + float(rng() % 1024) / 1024.f, int(mag(rng))) * ((rng() & 1) ? -1.f : 1.f));
  const int n = int(in.size());
  float* din = nullptr;
  uint32_t* dout = nullptr;
  ASSERT_EQ(cudaMalloc(&din, in.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dout, in.size() * 2 * kKinds * sizeof(uint32_t)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(din, in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  encode_all<<<(n + 255) / 256, 256>>>(din, n, dout);
  std::vector<uint32_t> out(in.size() * 2 * kKinds);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, out.size() * sizeof(uint32_t), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(din);
  cudaFree(dout);
  const char* names[kKinds] = {"fp16", "bf16", "e4m3", "e5m2", "int8", "-"};
  int bad = 0;
  for (int i = 0; i < n && bad < 10; ++i) {
    const float f = in[size_t(i)];
    for (int m = 0; m < 2; ++m) {
      const Overflow ov = m ? Overflow::kSaturate : Overflow::kPyTorch;
      const uint32_t want[kKinds] = {f32_to_f16(f, ov), f32_to_bf16(f, ov), f32_to_e4m3(f, ov), f32_to_e5m2(f, ov),
                                     f != f ? 0u : uint32_t(uint8_t(f32_to_i8(f, 0.5f))), 0u};
      for (int k = 0; k < kKinds; ++k)
        if (out[size_t(2 * kKinds * i + kKinds * m + k)] != want[k] && bad++ < 10)
          ADD_FAILURE() << names[k] << (m ? " saturating" : "") << " of " << f << " (0x" << std::hex << f32_to_bits(f)
                        << "): gpu 0x" << out[size_t(2 * kKinds * i + kKinds * m + k)] << " cpu 0x" << want[k];
    }
  }
}

}  // namespace
}  // namespace sparse24
