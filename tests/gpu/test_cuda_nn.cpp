// The GPT-2 layers with CUDA kernels (nn.h: gelu_forward, gelu_backward, bias_backward) on CUDA
// tensors against the same calls on CPU copies. Without a GPU every test reports itself skipped.
//
// GELU: both backends evaluate the same fp32 formula (cpu/nn_cpu.h's gelu_value and gelu_grad,
// no FMA on either side) and round once to the storage type, but the device's expf is not
// glibc's: it may differ by up to 2 ulps of fp32 (seen on an H100: about 14% of fp32 results
// differ, 1 in 10^5 of fp16 ones). So an element may differ by a few ulps of fp32 in the fp32
// result (scaled by the size of the terms it came from; where exp underflows into fp32's
// subnormals, by a few subnormal steps scaled likewise), and then, where those fp32 values
// straddle a rounding boundary of fp16/bf16, by one ulp of the storage type. The tolerance below
// is exactly that; most elements are bit-identical (the count is printed).
//
// Bias gradient: the GPU sums each column in a fixed tree, the CPU in row order, so they agree
// to a relative 1e-5 of sum |dout| (plus |dbias|); two GPU runs agree bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "gpu/gpu_test.h"
#include "test_util.h"

namespace sparse24 {
namespace {

class CudaNn : public test::GpuTest {};

// A rows x cols matrix of N(0, scale^2) values in `dtype` (CPU, row-major).
Tensor values(int64_t rows, int64_t cols, DType dtype, uint64_t seed, float scale = 1.f) {
  Tensor t = test::randn(rows, cols, seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] *= scale;
  return test::convert(t, dtype);
}

// Element i of a contiguous CPU tensor of a float dtype, as double.
double at(const TensorView& t, int64_t i) {
  return dispatch_input_dtype(t.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return double(to_f32(static_cast<const T*>(t.data)[i]));
  });
}

// The spacing of `dtype`'s values at magnitude v (its subnormal spacing below the normals).
double ulp(DType dtype, double v) {
  const int mant = dtype == DType::kF32 ? 23 : dtype == DType::kF16 ? 10 : 7;
  const int min_exp = dtype == DType::kF32 ? -126 : dtype == DType::kF16 ? -14 : -126;
  int e = 0;
  std::frexp(v, &e);  // v = m 2^e, m in [0.5, 1)
  return std::ldexp(1.0, std::max(e - 1, min_exp) - mant);
}

// The fp32 error bound of GELU's two results from an error of s = sigmoid(2u) of up to 8 ulps
// relative (kRel) or 8 steps of fp32's subnormals absolute (kAbs), with gelu(x) = x s and
// gelu'(x) = s + 2 x s (1 - s) du (terms in double; non-finite ones count as 0).
const double kRel = 8 * std::ldexp(1.0, -23), kAbs = 8 * std::ldexp(1.0, -149);
double gelu_s(double x) {
  const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return 1 / (1 + std::exp(-2 * u));
}
double finite_or_0(double v) { return std::isfinite(v) ? v : 0.0; }
double gelu_error(double x) { return finite_or_0(kRel * std::abs(x * gelu_s(x)) + kAbs * std::abs(x)); }
double gelu_grad_error(double x, double dout) {
  const double s = gelu_s(x), du = 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
  const double t = std::abs(2 * x * s * (1 - s) * du);
  return finite_or_0((kRel * (s + t) + kAbs * (1 + std::abs(2 * x * du))) * std::abs(dout));
}

// got (from the GPU) against want (the CPU), elementwise: |got - want| <= one ulp of the storage
// type + error(i) (the fp32 error bound above). NaN matches NaN (payloads may differ).
template <typename Error>
void expect_near_cpu(const Tensor& got_dev, const Tensor& want, Error error, const std::string& what) {
  const Tensor got = got_dev.to(Device::kCPU);
  ASSERT_EQ(got.numel(), want.numel()) << what;
  const DType dt = want.dtype();
  const size_t es = size_t(dtype_size(dt));
  int64_t identical = 0;
  int failures = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (std::memcmp(static_cast<const char*>(got.view().data) + size_t(i) * es,
                    static_cast<const char*>(want.view().data) + size_t(i) * es, es) == 0) {
      ++identical;
      continue;
    }
    const double g = at(got, i), w = at(want, i);
    if (std::isnan(g) && std::isnan(w)) continue;  // NaN payloads may differ
    const double tol = ulp(dt, std::max(std::abs(g), std::abs(w))) + error(i);
    if (!(std::abs(g - w) <= tol) && failures++ < 5)
      ADD_FAILURE() << what << " [" << i << "]: gpu " << g << ", cpu " << w << " (tolerance " << tol << ")";
  }
  std::cout << "[   info   ] " << what << ": " << identical << " of " << want.numel()
            << " elements bit-identical to the CPU\n";
}

// A rank-1 view of n elements of t starting at element `offset` (offset 1: not 16-byte aligned,
// so the kernels take their element-by-element path).
TensorView flat(const Tensor& t, int64_t n, int64_t offset = 0) {
  TensorView v = t.view();
  v.rank = 1;
  v.shape[0] = n;
  v.strides[0] = 1;
  v.data = static_cast<char*>(v.data) + offset * dtype_size(v.dtype);
  return v;
}

bool same_bytes(const TensorView& a_dev, const TensorView& b_dev) {
  const Tensor a = Tensor::copy_of(a_dev, Device::kCPU), b = Tensor::copy_of(b_dev, Device::kCPU);
  return a.numel() == b.numel() &&
         std::memcmp(a.view().data, b.view().data, size_t(a.numel() * dtype_size(a.dtype()))) == 0;
}

TEST_F(CudaNn, GeluMatchesTheCpu) {
  // Sizes around the kernels' 8-element groups and 2048-element blocks, and a large one.
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16})
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(8), int64_t(9), int64_t(2047), int64_t(2048),
                      int64_t(5003), int64_t(16384) * 96 + 5})
      for (int64_t offset : {0, 1}) {
        const std::string what = std::string(dtype_name(dt)) + " n = " + std::to_string(n) +
                                 (offset ? " (unaligned)" : "");
        // Inputs: N(0, 3^2), so the tails (where 1 + tanh cancels) are covered.
        const Tensor x = values(1, n + offset, dt, uint64_t(n) + 1, 3.f);
        const Tensor dout = values(1, n + offset, dt, uint64_t(n) + 2);
        const Tensor x_dev = x.to(Device::kCUDA), dout_dev = dout.to(Device::kCUDA);

        Tensor out = Tensor::empty({n}, dt), dinp = Tensor::empty({n}, dt);
        nn::gelu_forward(out, flat(x, n, offset));
        nn::gelu_backward(dinp, flat(x, n, offset), flat(dout, n, offset));

        Tensor out_dev = Tensor::empty({n}, dt, Device::kCUDA), dinp_dev = Tensor::empty({n}, dt, Device::kCUDA);
        nn::gelu_forward(out_dev, flat(x_dev, n, offset));
        nn::gelu_backward(dinp_dev, flat(x_dev, n, offset), flat(dout_dev, n, offset));
        const TensorView xv = flat(x, n, offset), dv = flat(dout, n, offset);
        expect_near_cpu(out_dev, out, [&](int64_t i) { return gelu_error(at(xv, i)); }, "gelu_forward " + what);
        expect_near_cpu(dinp_dev, dinp, [&](int64_t i) { return gelu_grad_error(at(xv, i), at(dv, i)); },
                        "gelu_backward " + what);

        // In place on the GPU: the same bits as out of place (forward onto inp, backward onto dout).
        const Tensor x_copy = x.to(Device::kCUDA), dout_copy = dout.to(Device::kCUDA);
        nn::gelu_forward(flat(x_copy, n, offset), flat(x_copy, n, offset));
        EXPECT_TRUE(same_bytes(flat(x_copy, n, offset), out_dev)) << "gelu_forward in place " << what;
        nn::gelu_backward(flat(dout_copy, n, offset), flat(x_dev, n, offset), flat(dout_copy, n, offset));
        EXPECT_TRUE(same_bytes(flat(dout_copy, n, offset), dinp_dev)) << "gelu_backward dinp = dout " << what;
      }
}

TEST_F(CudaNn, GeluExtremesMatchTheCpu) {
  // Large magnitudes (x^3 overflows fp32 beyond ~7e12, x^2 beyond ~2e19: Inf / NaN handling as the
  // CPU's), infinities, zeros, the region of gelu' = 0 (x ~ -0.75) and tiny values.
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> special = {0.f,   -0.f,  1e-30f, -1e-30f, 1e-4f, -0.7517916f, -0.75f, 5.f,     -5.f,
                                      9.f,   -9.f,  20.f,   -20.f,   1e4f,  -1e4f,       1e13f,  -1e13f,  60000.f,
                                      -6e4f, 1e20f, -1e20f, 3e38f,   -3e38f, inf,        -inf};
  const int64_t n = int64_t(special.size());
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    Tensor x32 = Tensor::matrix(1, n, DType::kF32), d32 = Tensor::matrix(1, n, DType::kF32);
    for (int64_t i = 0; i < n; ++i) {
      x32.data<float>()[i] = special[size_t(i)];
      d32.data<float>()[i] = i % 2 ? -1.5f : 0.75f;
    }
    const Tensor x = test::convert(x32, dt), dout = test::convert(d32, dt);
    Tensor out = Tensor::empty({1, n}, dt), dinp = Tensor::empty({1, n}, dt);
    nn::gelu_forward(out, x);
    nn::gelu_backward(dinp, x, dout);
    Tensor out_dev = Tensor::empty({1, n}, dt, Device::kCUDA), dinp_dev = Tensor::empty({1, n}, dt, Device::kCUDA);
    const Tensor x_dev = x.to(Device::kCUDA), dout_dev = dout.to(Device::kCUDA);
    nn::gelu_forward(out_dev, x_dev);
    nn::gelu_backward(dinp_dev, x_dev, dout_dev);
    // Non-finite results must be the same non-finite values; finite ones as above.
    const Tensor o = out_dev.to(Device::kCPU), g = dinp_dev.to(Device::kCPU);
    for (int64_t i = 0; i < n; ++i) {
      for (const auto& [gpu, cpu] : {std::pair<const Tensor*, const Tensor*>{&o, &out}, {&g, &dinp}}) {
        const double a = at(*gpu, i), b = at(*cpu, i);
        if (!std::isfinite(a) || !std::isfinite(b)) {
          EXPECT_TRUE((std::isnan(a) && std::isnan(b)) || a == b) << dtype_name(dt) << " x = " << special[size_t(i)]
                                                                 << ": gpu " << a << ", cpu " << b;
        }
      }
    }
    const Tensor xc = x, dc = dout;
    expect_near_cpu(out_dev, out, [&](int64_t i) { return gelu_error(at(xc, i)); },
                    std::string("gelu_forward extremes ") + dtype_name(dt));
    expect_near_cpu(dinp_dev, dinp, [&](int64_t i) { return gelu_grad_error(at(xc, i), at(dc, i)); },
                    std::string("gelu_backward extremes ") + dtype_name(dt));
  }
}

// dout layouts: row-major; row-major one element off 16-byte alignment (the kernel's scalar path);
// a transposed view (column-major); row-major with gaps between rows; every other column.
enum class Layout2 { kRowMajor, kUnaligned, kTransposed, kRowGaps, kEveryOtherColumn };
const char* layout_name(Layout2 l) {
  switch (l) {
    case Layout2::kRowMajor: return "row-major";
    case Layout2::kUnaligned: return "row-major unaligned";
    case Layout2::kTransposed: return "transposed";
    case Layout2::kRowGaps: return "row gaps";
    default: return "every other column";
  }
}

// The N x OC view of `layout` over `holder`, whose CPU copy (of the same memory layout) is
// `holder_cpu`; both views are returned (CPU first).
std::pair<TensorView, TensorView> dout_views(int64_t N, int64_t OC, DType dt, Layout2 layout, uint64_t seed,
                                             Tensor& holder_cpu, Tensor& holder) {
  auto view_of = [&](const Tensor& h) {
    TensorView v = h.view();
    switch (layout) {
      case Layout2::kRowMajor: break;
      case Layout2::kUnaligned:  // rows of OC + 1 elements, starting one element in
        v.shape[1] = OC;
        v.data = static_cast<char*>(v.data) + dtype_size(dt);
        break;
      case Layout2::kTransposed: v = v.t(); break;
      case Layout2::kRowGaps: v.shape[1] = OC; break;
      case Layout2::kEveryOtherColumn:
        v.shape[1] = OC;
        v.strides[1] = 2;
        break;
    }
    return v;
  };
  switch (layout) {
    case Layout2::kRowMajor: holder_cpu = values(N, OC, dt, seed); break;
    case Layout2::kUnaligned: holder_cpu = values(N, OC + 1, dt, seed); break;
    case Layout2::kTransposed: holder_cpu = values(OC, N, dt, seed); break;
    case Layout2::kRowGaps: holder_cpu = values(N, OC + 5, dt, seed); break;
    case Layout2::kEveryOtherColumn: holder_cpu = values(N, 2 * OC, dt, seed); break;
  }
  holder = holder_cpu.to(Device::kCUDA);
  return {view_of(holder_cpu), view_of(holder)};
}

// The GPU's dbias against the CPU's: |gpu - cpu| <= 1e-5 (sum_i |dout[i, o]| + |dbias0[o]|).
void expect_bias_close(const Tensor& gpu_dev, const Tensor& cpu, const TensorView& dout_cpu, const Tensor& init,
                       const std::string& what) {
  const Tensor gpu = gpu_dev.to(Device::kCPU);
  int failures = 0;
  for (int64_t o = 0; o < cpu.numel() && failures < 5; ++o) {
    double mass = std::abs(double(init.data<float>()[o]));
    for (int64_t i = 0; i < dout_cpu.rows(); ++i) mass += std::abs(test::get(dout_cpu, i, o));
    const double g = gpu.data<float>()[o], c = cpu.data<float>()[o];
    if (!(std::abs(g - c) <= 1e-5 * mass + 1e-30)) {
      ADD_FAILURE() << what << ": dbias[" << o << "] gpu " << g << ", cpu " << c << " (sum |dout| " << mass << ")";
      ++failures;
    }
  }
}

TEST_F(CudaNn, BiasBackwardMatchesTheCpu) {
  // Non-multiples of the kernels' 8/32/256-column strips, of their 8-row runs and 256-row chunks
  // (N >= 512 goes through the partial sums), N = 1, OC = 1, and GPT-2's shapes (N = B * T rows;
  // OC = C, 3C, 4C; 6400: a wide FFN).
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1},    {1, 768},   {16384, 1}, {3, 5},      {31, 33},     {64, 64},     {65, 257},
      {100, 100}, {129, 520}, {1000, 768}, {4096, 2304}, {1024, 3072}, {2048, 6400}, {16384, 768}};
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16})
    for (Layout2 layout : {Layout2::kRowMajor, Layout2::kUnaligned, Layout2::kTransposed, Layout2::kRowGaps,
                           Layout2::kEveryOtherColumn})
      for (const auto& [N, OC] : shapes) {
        if (layout != Layout2::kRowMajor && N * OC > 1024 * 3072) continue;  // the largest row-major only
        const std::string what = std::string(dtype_name(dt)) + " " + layout_name(layout) + " " + std::to_string(N) +
                                 " x " + std::to_string(OC);
        Tensor holder_cpu, holder;
        const auto [dout_cpu, dout_dev] = dout_views(N, OC, dt, layout, uint64_t(N * 7 + OC), holder_cpu, holder);
        const Tensor init = values(1, OC, DType::kF32, uint64_t(OC) + 3);
        Tensor cpu = init.to(Device::kCPU);
        TensorView cpu_flat = flat(cpu, OC);
        nn::bias_backward(cpu_flat, dout_cpu);

        const Tensor gpu = init.to(Device::kCUDA), again = init.to(Device::kCUDA);
        nn::bias_backward(flat(gpu, OC), dout_dev);
        expect_bias_close(gpu, cpu, dout_cpu, init, what);
        nn::bias_backward(flat(again, OC), dout_dev);  // deterministic: the same bits again
        EXPECT_TRUE(same_bytes(gpu, again)) << what << ": two runs differ";
      }
}

TEST_F(CudaNn, BiasBackwardAccumulatesAndHandlesEmptyDout) {
  const Tensor dout = values(300, 96, DType::kBF16, 11).to(Device::kCUDA);
  const Tensor init = values(1, 96, DType::kF32, 12);
  const Tensor once = init.to(Device::kCUDA), twice = init.to(Device::kCUDA);
  nn::bias_backward(flat(once, 96), dout);
  nn::bias_backward(flat(twice, 96), dout);
  nn::bias_backward(flat(twice, 96), dout);
  // twice = (init + s) + s, on the GPU; the same sums on the CPU.
  Tensor want = init;
  const Tensor dout_cpu = dout.to(Device::kCPU);
  nn::bias_backward(flat(want, 96), dout_cpu);
  nn::bias_backward(flat(want, 96), dout_cpu);
  expect_bias_close(twice, want, dout_cpu, init, "accumulated twice");
  EXPECT_FALSE(same_bytes(once, twice));

  const Tensor empty = Tensor::empty({0, 96}, DType::kF16, Device::kCUDA);
  const Tensor kept = init.to(Device::kCUDA);
  nn::bias_backward(flat(kept, 96), empty);
  EXPECT_TRUE(same_bytes(kept, init.to(Device::kCUDA))) << "N = 0 must leave dbias unchanged";
}

TEST_F(CudaNn, RejectsMixedDevices) {
  const Tensor dout = values(4, 8, DType::kF16, 13).to(Device::kCUDA);
  Tensor dbias_cpu = Tensor::empty({8}, DType::kF32);
  test::expect_error([&] { nn::bias_backward(dbias_cpu, dout); }, ErrorKind::kDevice, "one device");
  const Tensor x_cpu = values(4, 8, DType::kF16, 14);
  Tensor out = Tensor::empty({4, 8}, DType::kF16, Device::kCUDA);
  test::expect_error([&] { nn::gelu_forward(out, x_cpu); }, ErrorKind::kDevice, "one device");
  test::expect_error([&] { nn::gelu_backward(out, dout, x_cpu); }, ErrorKind::kDevice, "one device");
}

}  // namespace
}  // namespace sparse24
