// Every GEMM backend against the CPU reference (cpu::sparse_mm / cpu::dense_mm through the same
// public calls): the three training products (Y = X W^T + b, dX = dY (W^T)_s, dW = S(dY^T) X) in
// fp16, bf16 and fp8, with alpha, beta and bias, over shapes that are not multiples of any tile;
// every native kernel by name; dense products on cuBLASLt; and the errors of unsupported calls.
// Outputs are poisoned (0xFF) when allocated. Without a GPU every test reports itself skipped.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "sparse24/gemm.h"
#ifdef SPARSE24_WITH_CUSPARSELT
#include "gemm/cusparselt_backend.h"
#endif
#ifdef SPARSE24_WITH_CUTLASS
#include "gemm/native_sm90.h"
#endif
#include "gpu/gpu_test.h"
#include "test_util.h"

namespace sparse24 {
namespace {

class CudaGemm : public test::GpuTest {};

struct Shape3 {
  int64_t m, n, k;  // the sparse operand is m x k, the product m x n
};
// K a multiple of 32 (fp8 needs it; 16-bit needs 16); m a multiple of 16 and n of 8 (what
// cuSPARSELt takes); none a multiple of every tile.
const Shape3 kShapes[] = {{16, 8, 32},     {208, 136, 352},  {80, 1000, 96},
                          {256, 256, 128}, {1104, 264, 1024}, {528, 1032, 2080}};
// Shapes only the native kernels take: m a multiple of 8, n anything (B K-major).
const Shape3 kNativeShapes[] = {{8, 8, 32}, {200, 77, 336}, {72, 1, 64}};

std::vector<GemmBackend> sparse_backends() {
  std::vector<GemmBackend> b;
  for (GemmBackend x : {GemmBackend::kNative, GemmBackend::kCusparselt, GemmBackend::kExpanded})
    if (gemm_backend_built(x)) b.push_back(x);
  return b;
}

// A random m x k matrix pruned by magnitude, stored in `dtype` (fp8 with a scale) with the
// native metadata layout (or `layout`), on the CPU (move it with .to()).
Sparse24Matrix sparse_operand(int64_t m, int64_t k, DType dtype, uint64_t seed,
                              std::optional<MetaLayout> layout = std::nullopt) {
  CompressOptions o;
  o.dtype = dtype;
  if (is_fp8(dtype)) o.scale = 0.05f, o.overflow = Overflow::kSaturate;
  o.layout = layout ? *layout : native_layout(dtype);
  return prune_magnitude(test::randn(m, k, seed), o);
}

// A random rows x cols matrix in dtype and layout, on the CPU.
Tensor dense_operand(int64_t rows, int64_t cols, DType dtype, uint64_t seed,
                     Layout layout = Layout::kRowMajor) {
  return test::convert(test::randn(rows, cols, seed), dtype, layout);
}

// Relative precision of a dtype's rounding (half an ulp at 1).
double eps(DType t) {
  switch (t) {
    case DType::kF16: return std::ldexp(1.0, -11);
    case DType::kBF16: return std::ldexp(1.0, -8);
    default: return std::ldexp(1.0, -24);
  }
}

// The copy of a CPU tensor with every sign bit cleared (|x|, any float dtype).
Tensor abs_of(const TensorView& v) {
  Tensor a = Tensor::copy_of(v, Device::kCPU);
  const int size = dtype_size(a.dtype());
  auto* bytes = static_cast<uint8_t*>(a.view().data);
  for (int64_t i = 0; i < a.numel(); ++i) bytes[i * size + size - 1] &= 0x7F;
  return a;
}
Sparse24Matrix abs_of(const Sparse24Matrix& s) {
  Sparse24Matrix a = s;
  a.values = abs_of(s.values);
  return a;
}

// |gpu - cpu| <= 2 ulp(out) * |cpu| + acc * bound at every element, bound being the same product
// of absolute values (sum of |terms|): the room for another accumulation order. acc: 2^-18 for
// fp32 accumulation; 2^-12 for fp8 tensor cores, which add in reduced precision between their
// promotions to fp32.
void expect_close(const Tensor& gpu_dev, const Tensor& cpu, const Tensor& bound, double acc,
                  const std::string& what) {
  const Tensor gpu = gpu_dev.to(Device::kCPU);
  const double rel = 2 * eps(cpu.dtype());
  for (int64_t i = 0; i < cpu.rows(); ++i)
    for (int64_t j = 0; j < cpu.cols(); ++j) {
      const double g = test::get(gpu, i, j), c = test::get(cpu, i, j);
      const double tol = rel * std::fabs(c) + acc * test::get(bound, i, j) + 1e-30;
      if (!(std::fabs(g - c) <= tol)) {
        ADD_FAILURE() << what << ": element (" << i << ", " << j << ") gpu " << g << " cpu " << c
                      << " (tolerance " << tol << ")";
        return;
      }
    }
}
double accumulation(DType operand) { return is_fp8(operand) ? std::ldexp(1.0, -12) : std::ldexp(1.0, -18); }

// The same output start (for beta != 0) on both devices: random values, or poison for beta 0.
Tensor output_start(int64_t rows, int64_t cols, DType dtype, Layout layout, float beta,
                    uint64_t seed) {
  return beta != 0.f ? dense_operand(rows, cols, dtype, seed, layout)
                     : Tensor::matrix(rows, cols, dtype, layout);
}

// Y = alpha * X W^T + beta * Y + b on both devices; X: n x k row-major, Y: n x m row-major
// (the forward product; the input gradient dX = dY (W^T)_s is the same call with W^T's
// compressed matrix). The bias is random with `bias_seed`; `bias_on_gpu`, if given, is its CUDA
// copy made by the caller (which may use it for other calls), else one is made for this call.
void check_linear(const Shape3& s, DType sparse_dt, DType x_dt, DType out_dt, bool bias,
                  float beta, const GemmOptions& base, const std::string& what,
                  std::optional<MetaLayout> layout = std::nullopt, uint64_t bias_seed = 5,
                  const Tensor* bias_on_gpu = nullptr) {
  const Sparse24Matrix w = sparse_operand(s.m, s.k, sparse_dt, uint64_t(s.m * 31 + s.k), layout);
  const Tensor x = dense_operand(s.n, s.k, x_dt, uint64_t(s.n * 17 + s.k));
  const Tensor b = dense_operand(1, s.m, out_dt, bias_seed);
  const TensorView bv = TensorView::matrix(b.view().data, out_dt, 1, s.m);
  const Tensor y0 = output_start(s.n, s.m, out_dt, Layout::kRowMajor, beta, 9);
  GemmOptions o = base;
  o.alpha = 0.75f;
  o.beta = beta;
  const Tensor y_cpu = Tensor::copy_of(y0, Device::kCPU);
  mm_into(y_cpu, x, t(w), bias ? &bv : nullptr, o);
  const Sparse24Matrix wd = w.to(Device::kCUDA);
  const Tensor xd = x.to(Device::kCUDA), y_gpu = y0.to(Device::kCUDA);
  const Tensor bd = bias_on_gpu ? *bias_on_gpu : b.to(Device::kCUDA);
  const TensorView bdv = TensorView::matrix(bd.view().data, out_dt, 1, s.m, Layout::kRowMajor,
                                            Device::kCUDA);
  mm_into(y_gpu, xd, t(wd), bias ? &bdv : nullptr, o);
  const Tensor bound = Tensor::copy_of(abs_of(y0), Device::kCPU);
  const Tensor abs_b = abs_of(b);
  const TensorView abs_bv = TensorView::matrix(abs_b.view().data, out_dt, 1, s.m);
  GemmOptions ob;
  ob.alpha = std::fabs(o.alpha), ob.beta = std::fabs(o.beta);
  mm_into(bound, abs_of(x), t(abs_of(w)), bias ? &abs_bv : nullptr, ob);
  expect_close(y_gpu, y_cpu, bound, accumulation(x_dt), what);
}

// dW = alpha * S B + beta * dW with S: m x k (the pruned output gradient, groups along tokens),
// B: k x n in b_layout (X row-major for 16-bit; X^T's K-major copy for fp8), dW row-major (fp32
// on the native kernels; cuSPARSELt writes 16-bit results of 16-bit operands only).
void check_weight_gradient(const Shape3& s, DType sparse_dt, DType b_dt, Layout b_layout,
                           DType out_dt, float beta, const GemmOptions& base,
                           const std::string& what,
                           std::optional<MetaLayout> layout = std::nullopt) {
  const Sparse24Matrix g = sparse_operand(s.m, s.k, sparse_dt, uint64_t(s.m * 13 + s.k), layout);
  const Tensor x = dense_operand(s.k, s.n, b_dt, uint64_t(s.n * 3 + s.k), b_layout);
  const Tensor d0 = output_start(s.m, s.n, out_dt, Layout::kRowMajor, beta, 11);
  GemmOptions o = base;
  o.alpha = 1.25f;
  o.beta = beta;
  const Tensor d_cpu = Tensor::copy_of(d0, Device::kCPU);
  mm_into(d_cpu, g, x, o);
  const Sparse24Matrix gd = g.to(Device::kCUDA);
  const Tensor xd = x.to(Device::kCUDA), d_gpu = d0.to(Device::kCUDA);
  mm_into(d_gpu, gd, xd, o);
  const Tensor bound = abs_of(d0);
  GemmOptions ob;
  ob.alpha = std::fabs(o.alpha), ob.beta = std::fabs(o.beta);
  mm_into(bound, abs_of(g), abs_of(x), ob);
  expect_close(d_gpu, d_cpu, bound, accumulation(b_dt), what);
}

std::string name(const Shape3& s, GemmBackend b, DType dt) {
  return detail::concat(gemm_backend_name(b), " ", dtype_name(dt), " ", s.m, " x ", s.n, " x ",
                        s.k);
}

TEST_F(CudaGemm, LinearProductsMatchTheCpu) {
  for (GemmBackend backend : sparse_backends())
    for (DType dt : {DType::kF16, DType::kBF16}) {
      std::vector<Shape3> shapes(std::begin(kShapes), std::end(kShapes));
      if (backend == GemmBackend::kNative)
        shapes.insert(shapes.end(), std::begin(kNativeShapes), std::end(kNativeShapes));
      for (const Shape3& s : shapes)
        for (auto [bias, beta] : {std::pair{false, 0.f}, std::pair{true, 0.f}, std::pair{true, 0.5f}}) {
          GemmOptions o;
          o.backend = backend;
          check_linear(s, dt, dt, dt, bias, beta, o,
                       detail::concat(name(s, backend, dt), bias ? " bias" : "", " beta ", beta));
        }
    }
}

// One cached plan (or kernel) serves biases at several addresses, in any order: three CUDA
// biases with other values, alive together as the biases of three layers of one shape are,
// used in turn and again; then each is freed and a bias with other values made in its place
// (the allocator may hand back an address a plan has seen).
void check_biases_of_one_shape(GemmBackend backend) {
  const Shape3 s{208, 136, 352};
  GemmOptions o;
  o.backend = backend;
  std::vector<Tensor> biases(3);  // on the GPU; biases[i] has seeds[i]
  uint64_t seeds[3] = {40, 41, 42};
  const auto make = [&](size_t i) {
    biases[i] = dense_operand(1, s.m, DType::kF16, seeds[i]).to(Device::kCUDA);
  };
  const auto call = [&](size_t i, float beta, const char* when) {
    check_linear(s, DType::kF16, DType::kF16, DType::kF16, true, beta, o,
                 detail::concat(name(s, backend, DType::kF16), " bias seed ", seeds[i], " beta ",
                                beta, " ", when),
                 std::nullopt, seeds[i], &biases[i]);
  };
  for (size_t i : {0, 1, 2}) make(i);
  for (size_t i : {0, 1, 2, 1, 0, 2}) call(i, i == 1 ? 0.5f : 0.f, "(alive together)");
  for (size_t i : {0, 1, 2}) {
    biases[i] = Tensor();
    seeds[i] += 10;
    make(i);
    call(i, 0.f, "(made anew)");
  }
}

TEST_F(CudaGemm, NativeBiasesOfOneShape) {
  if (!gemm_backend_built(GemmBackend::kNative)) GTEST_SKIP() << "no native kernels in this build";
  check_biases_of_one_shape(GemmBackend::kNative);
}

// On an H100 cuSPARSELt 0.8.0 crashed here when the backend initialised a searched plan again
// for a new bias address (fixed: one cuSPARSELt matmul per bias address, built from scratch).
TEST_F(CudaGemm, CusparseltBiasesOfOneShape) {
  if (!gemm_backend_built(GemmBackend::kCusparselt)) GTEST_SKIP() << "no cuSPARSELt in this build";
  check_biases_of_one_shape(GemmBackend::kCusparselt);
  // More bias addresses than a plan keeps (64): the plans are dropped and made again.
  const Shape3 s{208, 136, 352};
  GemmOptions o;
  o.backend = GemmBackend::kCusparselt;
  std::vector<Tensor> biases;  // on the GPU, alive together; biases[i] has seed 100 + i
  for (uint64_t i = 0; i < 70; ++i)
    biases.push_back(dense_operand(1, s.m, DType::kF16, 100 + i).to(Device::kCUDA));
  std::vector<size_t> order(70);
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  order.push_back(0);  // made again after the drop
  for (size_t i : order)
    check_linear(s, DType::kF16, DType::kF16, DType::kF16, true, 0.f, o,
                 detail::concat(name(s, o.backend, DType::kF16), " bias ", i, " of 70"),
                 std::nullopt, 100 + i, &biases[i]);
}

#ifdef SPARSE24_WITH_CUSPARSELT
// CusparseltGemm (the benchmarks' cuSPARSELt product, S compressed once), default and searched:
// Y = alpha X W^T + beta Y + b as the problem mm_into makes of it (D = Y^T, B = X^T), run twice
// with other bias values at the planned address, each against the CPU; a bias elsewhere is
// refused by name; searched without a bias, against the CPU. Then the library's own plans for
// another shape: the first call searches without a bias, and keeps the default algorithm with one.
TEST_F(CudaGemm, CusparseltPlanObjectMatchesTheCpu) {
  const Shape3 s{208, 136, 352};
  const Sparse24Matrix w = sparse_operand(s.m, s.k, DType::kF16, 3);
  const Tensor x = dense_operand(s.n, s.k, DType::kF16, 4);
  const Sparse24Matrix wd = w.to(Device::kCUDA);
  const Tensor xd = x.to(Device::kCUDA);
  for (bool search : {false, true}) {
    const Tensor bias_gpu = dense_operand(1, s.m, DType::kF16, 60).to(Device::kCUDA);
    const Tensor y_gpu =
        Tensor::matrix(s.n, s.m, DType::kF16, Layout::kRowMajor, Device::kCUDA);
    const TensorView bias_view = TensorView::matrix(bias_gpu.view().data, DType::kF16, 1, s.m,
                                                    Layout::kRowMajor, Device::kCUDA);
    gemm::SparseProblem p;
    p.s = &wd;
    p.b = xd.view().t();
    p.d = y_gpu.view().t();
    p.bias = &bias_view;
    p.alpha = 0.75f;
    const auto plan = gemm::CusparseltGemm::create(p, search);
    for (uint64_t seed : {61, 62}) {
      const Tensor bias = dense_operand(1, s.m, DType::kF16, seed);
      copy_into(bias_gpu, bias);
      plan->run(p);
      GemmOptions o;
      o.alpha = p.alpha;
      const TensorView bv = TensorView::matrix(bias.view().data, DType::kF16, 1, s.m);
      const Tensor y_cpu = Tensor::matrix(s.n, s.m, DType::kF16);
      mm_into(y_cpu, x, t(w), &bv, o);
      const Tensor bound = Tensor::matrix(s.n, s.m, DType::kF16);
      const Tensor abs_b = abs_of(bias);
      const TensorView abs_bv = TensorView::matrix(abs_b.view().data, DType::kF16, 1, s.m);
      mm_into(bound, abs_of(x), t(abs_of(w)), &abs_bv, o);
      expect_close(y_gpu, y_cpu, bound, accumulation(DType::kF16),
                   detail::concat("CusparseltGemm ", search ? "searched" : "default",
                                  ", bias seed ", seed, " (", plan->describe(), ")"));
    }
    if (search) {  // with a bias, the default algorithm runs (docs/GEMM.md)
      EXPECT_NE(plan->describe().find("bias are not searched"), std::string::npos)
          << plan->describe();
    }
    const Tensor moved = dense_operand(1, s.m, DType::kF16, 63).to(Device::kCUDA);
    const TensorView moved_view = TensorView::matrix(moved.view().data, DType::kF16, 1, s.m,
                                                     Layout::kRowMajor, Device::kCUDA);
    p.bias = &moved_view;
    test::expect_error([&] { plan->run(p); }, ErrorKind::kValue, "planned with the bias at");
  }
  // Searched without a bias (the benchmarks' case): the kept or refused winner matches the CPU.
  {
    const Tensor y_gpu = Tensor::matrix(s.n, s.m, DType::kF16, Layout::kRowMajor, Device::kCUDA);
    gemm::SparseProblem p;
    p.s = &wd;
    p.b = xd.view().t();
    p.d = y_gpu.view().t();
    p.alpha = 0.75f;
    const auto plan = gemm::CusparseltGemm::create(p, true);
    plan->run(p);
    GemmOptions o;
    o.alpha = p.alpha;
    const Tensor y_cpu = Tensor::matrix(s.n, s.m, DType::kF16);
    mm_into(y_cpu, x, t(w), nullptr, o);
    const Tensor bound = Tensor::matrix(s.n, s.m, DType::kF16);
    mm_into(bound, abs_of(x), t(abs_of(w)), nullptr, o);
    const std::string how = plan->describe();
    expect_close(y_gpu, y_cpu, bound, accumulation(DType::kF16),
                 "CusparseltGemm searched, no bias (" + how + ")");
    EXPECT_TRUE(how.find("searched, agrees") != std::string::npos ||
                how.find("disagreed with it") != std::string::npos)
        << how;
  }
  // The library's path (kCusparselt) on a shape that no other test uses: without a bias it
  // searches on its first call, with one it runs the default algorithm (the results are checked
  // against the CPU by the tests that loop over backends).
  const Shape3 u{112, 72, 160};
  const Sparse24Matrix ud = sparse_operand(u.m, u.k, DType::kF16, 5).to(Device::kCUDA);
  const Tensor ux = dense_operand(u.n, u.k, DType::kF16, 6).to(Device::kCUDA);
  const Tensor bias_gpu = dense_operand(1, u.m, DType::kF16, 64).to(Device::kCUDA);
  const TensorView bias_view = TensorView::matrix(bias_gpu.view().data, DType::kF16, 1, u.m,
                                                  Layout::kRowMajor, Device::kCUDA);
  const Tensor y_gpu = Tensor::matrix(u.n, u.m, DType::kF16, Layout::kRowMajor, Device::kCUDA);
  for (const TensorView* bias : {static_cast<const TensorView*>(nullptr), &bias_view}) {
    gemm::SparseProblem p;
    p.s = &ud;
    p.b = ux.view().t();
    p.d = y_gpu.view().t();
    p.bias = bias;
    EXPECT_NE(gemm::cusparselt_describe(p).find("not planned"), std::string::npos);
    GemmOptions o;
    o.backend = GemmBackend::kCusparselt;
    mm_into(y_gpu, ux, t(ud), bias, o);
    // Without a bias: searched, and the winner kept or (when its output disagreed with the
    // default's, as under compute-sanitizer on an H100) refused; never unsearched or failed.
    const std::string how = gemm::cusparselt_describe(p);
    if (bias) {
      EXPECT_NE(how.find("bias are not searched"), std::string::npos) << how;
    } else {
      EXPECT_TRUE(how.find("searched, agrees") != std::string::npos ||
                  how.find("disagreed with it") != std::string::npos)
          << how;
    }
  }
}
#endif

TEST_F(CudaGemm, WeightGradientMatchesTheCpu) {
  for (GemmBackend backend : sparse_backends())
    for (DType dt : {DType::kF16, DType::kBF16})
      for (const Shape3& s : kShapes)
        for (float beta : {0.f, 1.f}) {
          GemmOptions o;
          o.backend = backend;
          check_weight_gradient(s, dt, dt, Layout::kRowMajor,
                                backend == GemmBackend::kCusparselt ? dt : DType::kF32, beta, o,
                                detail::concat(name(s, backend, dt), " beta ", beta));
        }
}

// S-STE's FP8 GEMMs: e4m3 forward, e4m3 weights x e5m2 output gradient, e5m2 output gradient x
// e4m3 activations (K-major) for the weight gradient. Native kernels and the expanded product
// (cuSPARSELt multiplies equal types only).
TEST_F(CudaGemm, Fp8ProductsMatchTheCpu) {
  for (GemmBackend backend : sparse_backends()) {
    if (backend == GemmBackend::kCusparselt) continue;
    GemmOptions o;
    o.backend = backend;
    for (const Shape3& s : kShapes) {
      check_linear(s, DType::kF8E4M3, DType::kF8E4M3, DType::kBF16, true, 0.f, o,
                   name(s, o.backend, DType::kF8E4M3) + " forward");
      check_linear(s, DType::kF8E4M3, DType::kF8E5M2, DType::kBF16, false, 0.f, o,
                   name(s, o.backend, DType::kF8E4M3) + " input gradient");
      check_weight_gradient(s, DType::kF8E5M2, DType::kF8E4M3, Layout::kColMajor, DType::kF32,
                            1.f, o, name(s, o.backend, DType::kF8E5M2) + " weight gradient");
    }
  }
}

// Every native kernel by name, on the shapes it fits: the dispatcher runs only one per shape.
TEST_F(CudaGemm, EveryNativeKernelMatchesTheCpu) {
  const std::vector<NativeKernelInfo> kernels = native_kernel_info();
  if (kernels.empty()) GTEST_SKIP() << "no native kernels in this build";
  for (const NativeKernelInfo& k : kernels)
    for (const Shape3& s : {kShapes[1], kShapes[4]}) {
      GemmOptions o;
      o.backend = GemmBackend::kNative;
      o.native_kernel = k.name;
      const std::string what = k.name + detail::concat(" ", s.m, " x ", s.n, " x ", s.k);
      const float beta = k.reads_source ? 0.5f : 0.f;  // a kernel without a source: beta 0 only
      if (k.d_col_major)  // forward-type: Y = X W^T with X K-major
        check_linear(s, k.s, k.b, k.d, true, beta, o, what, k.layout);
      else  // weight gradient: D row-major, accumulated
        check_weight_gradient(s, k.s, k.b, k.b_k_major ? Layout::kColMajor : Layout::kRowMajor,
                              k.d, k.reads_source ? 1.f : 0.f, o, what, k.layout);
      if (!k.reads_source && k.d_col_major) {  // a forward-type call with beta != 0: refused, not run
        GemmOptions bad = o;
        bad.beta = 0.5f;
        const Sparse24Matrix w = sparse_operand(s.m, s.k, k.s, 1, k.layout);
        const Tensor x = dense_operand(s.n, s.k, k.b, 2);
        const Tensor xd = x.to(Device::kCUDA), y = Tensor::matrix(s.n, s.m, k.d, Layout::kRowMajor, Device::kCUDA);
        const Sparse24Matrix wd = w.to(Device::kCUDA);
        test::expect_error([&] { mm_into(y, xd, t(wd), nullptr, bad); }, ErrorKind::kValue,
                           "does not fit this call");
      }
    }
}

// The 16-bit weight-gradient kernels split the K loop (tokens) over every SM (stream-K): work
// units start and end inside output tiles, and their partial sums meet in a workspace before the
// epilogue adds beta * D. Shapes whose units split tiles unevenly, onto D = 1 * D + S B.
TEST_F(CudaGemm, StreamKWeightGradientsMatchTheCpu) {
  if (!gemm_backend_built(GemmBackend::kNative)) GTEST_SKIP() << "no native kernels in this build";
  GemmOptions o;
  o.backend = GemmBackend::kNative;
  for (DType dt : {DType::kF16, DType::kBF16})
    for (const Shape3& s : {Shape3{264, 136, 4160}, Shape3{200, 1000, 2112}, Shape3{1104, 264, 16384}})
      check_weight_gradient(s, dt, dt, Layout::kRowMajor, DType::kF32, 1.f, o,
                            name(s, GemmBackend::kNative, dt) + " weight gradient");
}

#ifdef SPARSE24_WITH_CUTLASS
// Of the kernels that fit and pad the output at most 15% beyond another's, the dispatcher takes
// the first whose tile is long along the output's long side: 256 x 128 for tall or square weight
// gradients, 128 x 192 for wide ones; and 128 x 192 for a tall 1280 x 384, where 256 x 128 tiles
// in 2 x 1 clusters would pad m to 1536 (20% more).
TEST_F(CudaGemm, TheDispatcherPicksTilesByPaddingAndOrientation) {
  for (const gemm::Sm90Kernel* k : gemm::native_kernels())
    if (std::string(k->name).rfind("x_", 0) == 0)
      GTEST_SKIP() << "an explore build: its candidates (" << k->name << ", ...) take part in the choice";
  const auto chosen = [](int64_t m, int64_t n) {
    const Sparse24Matrix g = sparse_operand(m, 64, DType::kF16, 1).to(Device::kCUDA);
    const Tensor x = dense_operand(64, n, DType::kF16, 2, Layout::kRowMajor).to(Device::kCUDA);
    const Tensor d = Tensor::matrix(m, n, DType::kF32, Layout::kRowMajor, Device::kCUDA);
    return std::string(gemm::native_choice({&g, x, d, nullptr, 1.f, 1.f, {}}).name);
  };
  EXPECT_EQ(chosen(768, 3072), "f16_bn_dr_f32_128x192x64_c2x1_sk_p_sl");
  EXPECT_EQ(chosen(1600, 6400), "f16_bn_dr_f32_128x192x64_c2x1_sk_p_sl");
  EXPECT_EQ(chosen(3072, 768), "f16_bn_dr_f32_256x128x64_c2x1_sk_p");
  EXPECT_EQ(chosen(6400, 1600), "f16_bn_dr_f32_256x128x64_c2x1_sk_p");
  EXPECT_EQ(chosen(512, 512), "f16_bn_dr_f32_256x128x64_c2x1_sk_p");
  EXPECT_EQ(chosen(1280, 384), "f16_bn_dr_f32_128x192x64_c2x1_sk_p_sl");
}
#endif

// Every backend keeps its state (handles, plans, workspaces) per GPU: the same products on two
// GPUs, each against the CPU, and again on the first (needs two GPUs; skipped otherwise).
TEST_F(CudaGemm, EveryBackendRunsOnEveryGpu) {
  if (list_gpus().size() < 2) GTEST_SKIP() << "needs two GPUs";
  const int home = current_gpu();
  for (int gpu : {home == 0 ? 1 : 0, home}) {
    ASSERT_EQ(cudaSetDevice(gpu), cudaSuccess);
    for (GemmBackend backend : sparse_backends()) {
      GemmOptions o;
      o.backend = backend;
      check_linear(kShapes[4], DType::kBF16, DType::kBF16, DType::kBF16, true, 0.5f, o,
                   detail::concat(name(kShapes[4], backend, DType::kBF16), " on GPU ", gpu));
    }
  }
}

// The allocating calls (mm, addmm, linear) run on CUDA operands too.
TEST_F(CudaGemm, AllocatingCallsRunOnTheGpu) {
  const Sparse24Matrix w = sparse_operand(144, 352, DType::kBF16, 1);
  const Tensor x = dense_operand(64, 352, DType::kBF16, 2);
  const Tensor y_cpu = linear(x, w);
  const Tensor y_gpu = linear(x.to(Device::kCUDA), w.to(Device::kCUDA));
  EXPECT_EQ(y_gpu.device(), Device::kCUDA);
  EXPECT_EQ(y_gpu.dtype(), DType::kBF16);
  const Tensor bound = linear(abs_of(x), abs_of(w), nullptr, DType::kF32);
  expect_close(y_gpu, y_cpu, bound, accumulation(DType::kBF16), "linear");
}

TEST_F(CudaGemm, DenseProductsMatchTheCpu) {
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16})
    for (const Shape3& s : kShapes)
      for (Layout la : {Layout::kRowMajor, Layout::kColMajor})
        for (Layout lb : {Layout::kRowMajor, Layout::kColMajor}) {
          const Tensor a = dense_operand(s.m, s.k, dt, 1, la);
          const Tensor b = dense_operand(s.k, s.n, dt, 2, lb);
          const Tensor bias = dense_operand(1, s.n, dt, 3);
          const TensorView bv = TensorView::matrix(bias.view().data, dt, 1, s.n);
          const Tensor out0 = output_start(s.m, s.n, dt, Layout::kRowMajor, 0.5f, 4);
          GemmOptions o;
          o.alpha = 0.75f;
          o.beta = 0.5f;
          const Tensor out_cpu = Tensor::copy_of(out0, Device::kCPU);
          dense_mm_into(out_cpu, a, b, &bv, o);
          const Tensor ad = a.to(Device::kCUDA), bd = b.to(Device::kCUDA);
          const Tensor biasd = bias.to(Device::kCUDA), out_gpu = out0.to(Device::kCUDA);
          const TensorView bdv = TensorView::matrix(biasd.view().data, dt, 1, s.n,
                                                    Layout::kRowMajor, Device::kCUDA);
          dense_mm_into(out_gpu, ad, bd, &bdv, o);
          const Tensor bound = Tensor::copy_of(abs_of(out0), Device::kCPU);
          const Tensor abs_bias = abs_of(bias);
          const TensorView abs_bv = TensorView::matrix(abs_bias.view().data, dt, 1, s.n);
          dense_mm_into(bound, abs_of(a), abs_of(b), &abs_bv, o);
          expect_close(out_gpu, out_cpu, bound, accumulation(dt),
                       detail::concat("cublaslt ", dtype_name(dt), " ", s.m, " x ", s.n, " x ",
                                      s.k, la == Layout::kRowMajor ? " A row" : " A col",
                                      lb == Layout::kRowMajor ? " B row" : " B col"));
        }
}

// kAuto where the native kernels do not run (fp16 into fp32 in the forward orientation, which no
// native kernel writes): the product runs expanded to dense and matches the CPU; one neither
// runs (16-bit operands of two dtypes) names both reasons; int8 values are refused.
TEST_F(CudaGemm, AutoFallsBackToTheExpandedProduct) {
  const Sparse24Matrix w = sparse_operand(144, 352, DType::kF16, 1);
  const Tensor x = dense_operand(64, 352, DType::kF16, 2);
  const Tensor y_gpu = Tensor::matrix(64, 144, DType::kF32, Layout::kRowMajor, Device::kCUDA);
  mm_into(y_gpu, x.to(Device::kCUDA), t(w.to(Device::kCUDA)));
  const Tensor y_cpu = Tensor::matrix(64, 144, DType::kF32);
  mm_into(y_cpu, x, t(w));
  const Tensor bound = Tensor::matrix(64, 144, DType::kF32);
  mm_into(bound, abs_of(x), t(abs_of(w)));
  expect_close(y_gpu, y_cpu, bound, accumulation(DType::kF16), "auto fp16 -> fp32 forward");
  const Tensor xb = dense_operand(64, 352, DType::kBF16, 2).to(Device::kCUDA);
  const Tensor yb = Tensor::matrix(64, 144, DType::kBF16, Layout::kRowMajor, Device::kCUDA);
  test::expect_error([&] { mm_into(yb, xb, t(w.to(Device::kCUDA))); }, ErrorKind::kDType,
                     "Expanded to dense: dtype error: GEMM expanded to dense: B bf16");
  // int8 values have no dense product to expand into.
  CompressOptions i8;
  i8.dtype = DType::kI8;
  i8.scale = 0.05f;
  const Sparse24Matrix wi = prune_magnitude(test::randn(144, 352, 1), i8).to(Device::kCUDA);
  GemmOptions expanded;
  expanded.backend = GemmBackend::kExpanded;
  const Tensor y16 = Tensor::matrix(64, 144, DType::kF16, Layout::kRowMajor, Device::kCUDA);
  test::expect_error([&] { mm_into(y16, x.to(Device::kCUDA), t(wi), nullptr, expanded); },
                     ErrorKind::kDType, "int8");
}

TEST_F(CudaGemm, UnsupportedCallsSayWhy) {
  if (!gemm_backend_built(GemmBackend::kNative)) GTEST_SKIP() << "no native kernels in this build";
  GemmOptions native;
  native.backend = GemmBackend::kNative;
  const Tensor x = dense_operand(64, 352, DType::kF16, 2).to(Device::kCUDA);
  const Tensor y = Tensor::matrix(64, 144, DType::kF16, Layout::kRowMajor, Device::kCUDA);
  // Canonical metadata only: the native kernels read the sm90 layout.
  CompressOptions fp16;
  fp16.dtype = DType::kF16;
  const Sparse24Matrix canonical = prune_magnitude(test::randn(144, 352, 1), fp16).to(Device::kCUDA);
  test::expect_error([&] { mm_into(y, x, t(canonical), nullptr, native); }, ErrorKind::kValue,
                     "sm90-k64");
  // X with rows 353 elements apart: not a 16-byte multiple, which the TMA needs.
  const Sparse24Matrix w = sparse_operand(144, 352, DType::kF16, 1).to(Device::kCUDA);
  const Tensor wide = Tensor::matrix(64, 353, DType::kF16, Layout::kRowMajor, Device::kCUDA);
  TensorView x353 = TensorView::matrix(wide.view().data, DType::kF16, 64, 352,
                                       Layout::kRowMajor, Device::kCUDA);
  x353.strides[0] = 353;
  test::expect_error([&] { mm_into(y, x353, t(w), nullptr, native); }, ErrorKind::kShape,
                     "leading dimension");
  // No native kernel writes fp32 from fp16 in this orientation.
  const Tensor y32 = Tensor::matrix(64, 144, DType::kF32, Layout::kRowMajor, Device::kCUDA);
  test::expect_error([&] { mm_into(y32, x, t(w), nullptr, native); }, ErrorKind::kDType,
                     "no kernel");
  // A kernel by name that does not fit.
  native.native_kernel = "f16_bn_dr_f32_256x128x64_c2x1_sk_p";
  test::expect_error([&] { mm_into(y, x, t(w), nullptr, native); }, ErrorKind::kValue,
                     "does not fit");
  // cuBLASLt is dense only.
  GemmOptions cublas;
  cublas.backend = GemmBackend::kCublasLt;
  test::expect_error([&] { mm_into(y, x, t(w), nullptr, cublas); }, ErrorKind::kValue,
                     "dense products only");
  // The automatic choice falls back to the expanded product where the native kernels cannot run.
  {
    const Tensor y_auto = Tensor::matrix(64, 144, DType::kF16, Layout::kRowMajor, Device::kCUDA);
    mm_into(y_auto, x, t(canonical));
    const Tensor y_cpu = Tensor::matrix(64, 144, DType::kF16);
    const Tensor xc = x.to(Device::kCPU);
    const Sparse24Matrix cc = canonical.to(Device::kCPU);
    mm_into(y_cpu, xc, t(cc));
    const Tensor bound = Tensor::matrix(64, 144, DType::kF32);
    mm_into(bound, abs_of(xc), t(abs_of(cc)));
    expect_close(y_auto, y_cpu, bound, accumulation(DType::kF16), "auto on canonical metadata");
  }
}

}  // namespace
}  // namespace sparse24
