// `sparse24 bench gemm`: the sparse GEMM backends against cuBLAS dense at training shapes.
//
// For each shape (GPT-2 S/M/L/XL and LLaMA-7B layers at 16384 tokens as in baselines.md, GPT-2 L
// added; and the weight-gradient shapes with K = tokens) one run times, with CUDA events, the
// median of many calls of:
//   cuBLAS dense      cuBLASLt on the dense matrix (sparse24's dense path, the same layouts);
//   cuSPARSELt        the default algorithm, and after cusparseLtMatmulSearch;
//   native            the kernel the dispatcher picks (and, with --all-kernels, every kernel).
// Each as microseconds and as speed-up over dense, plus the tensor-core rate reached (dense-
// equivalent TFLOP/s, 2mnk / time, against 989 TFLOP/s dense and 1979 TFLOP/s 2:4 peak for
// fp16/bf16, twice that for fp8). The GEMMs alone are timed: compression (the transforms) and
// cuSPARSELt's own compression run before timing.
// --dtype e4m3 times S-STE's FP8 products: forward-type e4m3 x e4m3 -> bf16, weight gradients
// e5m2 (MVUE's dY^T) x e4m3 -> fp32 with B K-major (FP8 tensor cores read both operands
// K-major), against cuBLASLt's FP8 GEMM on the same dtypes and layouts.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/timing.h"
#include "gemm/backends.h"
#include "sparse24/sparse24.h"
#ifdef SPARSE24_WITH_CUTLASS
#include "gemm/native_sm90.h"
#endif
#ifdef SPARSE24_WITH_CUSPARSELT
#include "gemm/cusparselt_backend.h"
#endif

namespace sparse24::bench {
namespace {

// One product of a linear layer as the sparse GEMM sees it: the 2:4 operand is m x k.
struct Case {
  const char* what;
  int64_t m, n, k;
  bool weight_gradient;  // B N-major and D fp32 row-major; else B K-major and D column-major
};

const Case kCases[] = {
    {"GPT-2 S fc (Y = X W^T)", 3072, 16384, 768, false},
    {"GPT-2 S proj", 768, 16384, 3072, false},
    {"GPT-2 S qkv", 2304, 16384, 768, false},
    {"GPT-2 S attn out", 768, 16384, 768, false},
    {"GPT-2 M fc", 4096, 16384, 1024, false},
    {"GPT-2 M proj", 1024, 16384, 4096, false},
    {"GPT-2 L fc", 5120, 16384, 1280, false},
    {"GPT-2 L proj", 1280, 16384, 5120, false},
    {"GPT-2 XL fc", 6400, 16384, 1600, false},
    {"GPT-2 XL proj", 1600, 16384, 6400, false},
    {"LLaMA-7B up", 11008, 8192, 4096, false},
    {"square 4096", 4096, 32768, 4096, false},
    {"GPT-2 S fc dW = S(dY^T) X", 3072, 768, 16384, true},
    {"GPT-2 S proj dW", 768, 3072, 16384, true},
    {"GPT-2 XL fc dW", 6400, 1600, 16384, true},
    {"GPT-2 XL proj dW", 1600, 6400, 16384, true},
};

// The dtypes and layouts of one case's operands for the --dtype given: the 2:4 operand S (and
// the dense matrix of the same shape), B, D, and cuSPARSELt's D (16-bit: it has no fp32 output
// for 16-bit inputs).
struct Types {
  DType s, b, d, d_lt;
  Layout b_layout, d_layout;
};
Types types(const Case& c, DType dt) {
  const bool fp8 = is_fp8(dt);
  Types t;
  t.s = fp8 && c.weight_gradient ? DType::kF8E5M2 : dt;
  t.b = dt;
  t.d = c.weight_gradient ? DType::kF32 : fp8 ? DType::kBF16 : dt;
  t.d_lt = fp8 ? DType::kBF16 : dt;
  t.b_layout = c.weight_gradient && !fp8 ? Layout::kRowMajor : Layout::kColMajor;
  t.d_layout = c.weight_gradient ? Layout::kRowMajor : Layout::kColMajor;
  return t;
}

// The operands of one case on the GPU: the dense matrix, its 2:4 compression (native layout),
// B and D in the case's layouts.
struct Operands {
  Tensor dense, b, d, d16;  // d16: cuSPARSELt's output (Types::d_lt)
  Sparse24Matrix s;
  gemm::SparseProblem sparse() const { return {&s, b, d, nullptr, 1.f, 0.f, {}}; }
  gemm::SparseProblem sparse16() const { return {&s, b, d16, nullptr, 1.f, 0.f, {}}; }
  gemm::DenseProblem dense_problem() const { return {dense, b, d, nullptr, 1.f, 0.f}; }
};

Operands operands(const Case& c, const Types& t) {
  Operands o;
  o.dense = random_matrix(c.m, c.k, t.s).to(Device::kCUDA);
  CompressOptions co;
  co.dtype = t.s;
  co.layout = native_layout(t.s);
  o.s = prune_magnitude(random_matrix(c.m, c.k, DType::kF32).to(Device::kCUDA), co);
  o.b = random_matrix(c.k, c.n, t.b, t.b_layout).to(Device::kCUDA);
  o.d = Tensor::matrix(c.m, c.n, t.d, t.d_layout, Device::kCUDA);
  o.d16 = Tensor::matrix(c.m, c.n, t.d_lt, t.d_layout, Device::kCUDA);
  return o;
}

double tflops(const Case& c, double us) { return 2.0 * double(c.m * c.n * c.k) / (us * 1e-6) / 1e12; }

// Element (i, j) of a matrix of any dtype and layout as float (CPU or CUDA: one element copied).
float element(const TensorView& t, int64_t i, int64_t j) {
  return dispatch_dtype(t.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v;
    const T* p = t.at<T>(i, j);
    if (t.device == Device::kCUDA) check(cudaMemcpy(&v, p, sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
    else v = *p;
    return to_f32(v);
  });
}

// How far an fp8 product's output D is from the exact product A B, at 512 elements spread over D
// by a fixed sequence: the largest |D_ij - sum_k A_ik B_kj| / sum_k |A_ik B_kj|, both sums in
// double over the operands' stored values (fp8 products are exact). Normalised so, it measures
// the accumulation error on any shape: fp32 sums of exact products stay near 1e-7 even at K =
// 16384; a bf16 D adds its rounding (up to 2^-9 = 2e-3 of |D|). A and B are CPU copies.
double max_error(const TensorView& a, const TensorView& b, const TensorView& d) {
  double worst = 0.0;
  uint32_t state = 2024;
  for (int s = 0; s < 512; ++s) {
    state = state * 1664525u + 1013904223u;
    const int64_t i = int64_t(state % uint32_t(d.rows()));
    state = state * 1664525u + 1013904223u;
    const int64_t j = int64_t(state % uint32_t(d.cols()));
    double exact = 0.0, magnitude = 0.0;
    for (int64_t k = 0; k < a.cols(); ++k) {
      const double t = double(element(a, i, k)) * double(element(b, k, j));
      exact += t;
      magnitude += std::abs(t);
    }
    if (magnitude > 0) worst = std::max(worst, std::abs(double(element(d, i, j)) - exact) / magnitude);
  }
  return worst;
}

std::string error_text(double e) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1e", e);
  return buf;
}

std::string ratio(double dense_us, double us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", dense_us / us);
  return buf;
}

}  // namespace

int gemm(int argc, char** argv) {
  bool quick = false, all_kernels = false;
  std::string only;  // one case, by its name (for profilers)
  std::vector<std::string> shapes;  // --shape: forward-type products of these shapes instead
  DType dt = DType::kF16;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shape" && i + 1 < argc) {
      shapes.push_back(argv[++i]);
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--all-kernels") {
      all_kernels = true;
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--dtype" && i + 1 < argc) {
      dt = parse_dtype(argv[++i]);
      S24_CHECK(dt == DType::kF16 || dt == DType::kBF16 || dt == DType::kF8E4M3, kValue,
                "bench gemm: --dtype is fp16, bf16 or e4m3 (S-STE's FP8 products)");
    } else {
      S24_FAIL(kValue, "bench gemm: unknown argument '", a, "' (--quick, --all-kernels, "
               "--only CASE, --shape MxNxK (repeatable), --dtype fp16|bf16|e4m3)");
    }
  }
  // The cases timed: the training shapes, or forward-type products of the --shape arguments (a
  // sweep over K, for example, separates a tile's fixed costs from its main loop's rate).
  std::vector<Case> cases(std::begin(kCases), std::end(kCases));
  if (!shapes.empty()) {
    cases.clear();
    for (const std::string& text : shapes) {
      long long m = 0, n = 0, k = 0;
      char end = 0;
      S24_CHECK(std::sscanf(text.c_str(), "%lldx%lldx%lld%c", &m, &n, &k, &end) == 3 && m > 0 && n > 0 && k > 0,
                kValue, "bench gemm --shape: '", text, "' is not MxNxK with positive sizes (e.g. 3072x16384x768)");
      cases.push_back({text.c_str(), m, n, k, false});  // `shapes` outlives `cases`
    }
  }
#ifndef SPARSE24_WITH_CUTLASS
  S24_CHECK(!all_kernels, kValue, "bench gemm --all-kernels: this build has no native kernels (no CUTLASS)");
#endif
  std::string why;
  const std::vector<GpuInfo> gpus = list_gpus(&why);
  S24_CHECK(!gpus.empty(), kDevice, "bench gemm needs a GPU (", why, ")");
  const bool fp8 = is_fp8(dt);
  const double peak = fp8 ? 3958 : 1979;  // 2:4 tensor-core peak, TFLOP/s (dense-equivalent)
  if (fp8) {
    std::printf("GPU: %s; FP8 operands (forward-type: e4m3 x e4m3 -> bf16; weight gradients: e5m2 "
                "S x e4m3 B (K-major) -> fp32; cuSPARSELt: forward-type only, it has no mixed "
                "e5m2 x e4m3 kernels), fp32 accumulation.\n", gpus[0].name.c_str());
  } else {
    std::printf("GPU: %s; %s operands, fp32 accumulation; forward-type products write %s "
                "(column-major D = row-major Y), weight gradients fp32 (cuSPARSELt: %s, it has no "
                "fp32 output for 16-bit inputs).\n", gpus[0].name.c_str(), dtype_name(dt),
                dtype_name(dt), dtype_name(dt));
  }
  std::printf("Backends built: native %s, cuSPARSELt %s. Times in us (median); speed-up = dense "
              "time / time; TFLOP/s counts 2mnk (dense-equivalent). cuSPARSELt default and searched: S "
              "compressed once (CusparseltGemm); per call: GemmBackend::kCusparselt, which expands "
              "and compresses S in every call and searched on its first.\n\n",
              gemm_backend_built(GemmBackend::kNative) ? "yes" : "no",
              gemm_backend_built(GemmBackend::kCusparselt) ? "yes" : "no");
  std::printf("| product | m x n x k | cuBLAS dense | TFLOP/s | cuSPARSELt default | "
              "cuSPARSELt searched | cuSPARSELt per call | native | native TFLOP/s (of %.0f) | native "
              "kernel |\n", peak);
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<std::string> kernel_rows, lt_plans, dense_algos, accuracy_rows;
  for (const Case& c : cases) {
    if ((quick && c.m != 3072) || (!only.empty() && only != c.what)) continue;
    const Types ty = types(c, dt);
    const Operands o = operands(c, ty);
    // fp8: CPU copies of the operands for max_error (S as the values the GEMMs multiply).
    Tensor host_dense, host_s, host_b;
    if (fp8) {
      host_dense = o.dense.to(Device::kCPU);
      host_s = decompress(o.s).to(Device::kCPU);
      host_b = o.b.to(Device::kCPU);
    }
    const double dense_us = time_us(1, [&](int) { gemm::cublaslt_mm(o.dense_problem()); }, "cuBLAS dense");
    dense_algos.push_back(detail::concat(c.what, ": ", gemm::cublaslt_describe(o.dense_problem())));
    std::string accuracy;  // fp8: the accuracy table's row after the product's name
    if (fp8) {
      const double dense_error = max_error(host_dense, host_b, o.d);
      gemm::DenseProblem fast = o.dense_problem();
      fast.fp8_fast_accumulation = true;
      const double fast_us = time_us(1, [&](int) { gemm::cublaslt_mm(fast); });
      accuracy = detail::concat(int(dense_us + 0.5), " | ", int(fast_us + 0.5), " (", ratio(dense_us, fast_us),
                                ") | ", error_text(dense_error), " | ", error_text(max_error(host_dense, host_b, o.d)));
    }
    std::string lt_default = "-", lt_searched = "-", lt_library = "-";
#ifdef SPARSE24_WITH_CUSPARSELT
    for (bool search : {false, true}) {  // cuSPARSELt writes 16-bit results of 16-bit inputs
      if (ty.s != ty.b) break;  // no mixed fp8 kernels
      const auto plan = gemm::CusparseltGemm::create(o.sparse16(), search);
      const double us = time_us(1, [&](int) { plan->run(o.sparse16()); },
                                search ? "cuSPARSELt searched" : "cuSPARSELt default");
      (search ? lt_searched : lt_default) =
          detail::concat(int(us + 0.5), " (", ratio(dense_us, us), ")");
      if (search) lt_plans.push_back(detail::concat(c.what, ": ", plan->describe()));
    }
    if (ty.s == ty.b) {  // the library's path: S expanded and compressed in every call
      const double us = time_us(1, [&](int) { gemm::cusparselt_mm(o.sparse16()); }, "cuSPARSELt per call");
      lt_library = detail::concat(int(us + 0.5), " (", ratio(dense_us, us), ")");
    }
#endif
    std::string lt_error = "-";
#ifdef SPARSE24_WITH_CUSPARSELT
    if (fp8 && ty.s == ty.b) lt_error = error_text(max_error(host_s, host_b, o.d16));
#endif
    std::string native = "-", native_tf = "-", native_name = "-", native_us = "-", native_error = "-";
#ifdef SPARSE24_WITH_CUTLASS
    const gemm::Sm90Kernel& chosen = gemm::native_choice(o.sparse());
    const double us = time_us(1, [&](int) { gemm::native_mm(o.sparse()); }, "native");
    native = detail::concat(int(us + 0.5), " (", ratio(dense_us, us), ")");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0f (%.0f%%)", tflops(c, us), 100.0 * tflops(c, us) / peak);
    native_tf = buf;
    native_name = chosen.name;
    native_us = std::to_string(int(us + 0.5));
    if (fp8) native_error = error_text(max_error(host_s, host_b, o.d));
    if (all_kernels) {
      // The same operand with the other metadata layout, for the kernels with K tiles of 128.
      CompressOptions co;
      co.dtype = ty.s;
      co.layout = MetaLayout::kSm90K128;
      const Sparse24Matrix s128 = prune_magnitude(decompress(o.s), co);
      std::vector<std::pair<const gemm::Sm90Kernel*, gemm::SparseProblem>> fits;
      for (const gemm::Sm90Kernel* k : gemm::native_kernels()) {
        gemm::SparseProblem p = o.sparse();
        if (k->tile_k >= 128) p.s = &s128;
        p.native_kernel = k->name;
        try {
          gemm::native_choice(p);  // throws for a kernel that does not fit (dtype or layout)
          fits.push_back({k, p});
        } catch (const Error& e) {
          if (e.kind() != ErrorKind::kValue && e.kind() != ErrorKind::kDType) throw;
        }
      }
      // The clock drifts as the GPU heats (15-17% between a bench row and a kernel row of one
      // run, bench/results/2026-11-27-h100-gemm-streamk.md): cuBLAS and every kernel are timed
      // in turn, in kRounds rounds, and each reports its median round, so a slow stretch costs
      // every kernel alike and each ratio compares times taken close together.
      constexpr int kRounds = 3;
      std::vector<std::vector<double>> rounds(fits.size() + 1);
      for (int r = 0; r < kRounds; ++r) {
        rounds.back().push_back(time_us(1, [&](int) { gemm::cublaslt_mm(o.dense_problem()); }));
        for (size_t i = 0; i < fits.size(); ++i)
          rounds[i].push_back(time_us(1, [&](int) { gemm::native_mm(fits[i].second); }));
      }
      const double round_dense_us = median_of(rounds.back());
      for (size_t i = 0; i < fits.size(); ++i) {
        const double kus = median_of(rounds[i]);
        std::string error;
        if (fp8) {
          gemm::native_mm(fits[i].second);  // o.d holds this kernel's product for max_error
          error = " " + error_text(max_error(host_s, host_b, o.d)) + " |";
        }
        kernel_rows.push_back(detail::concat("| ", c.m, " x ", c.n, " x ", c.k, " | ", fits[i].first->name,
                                             " | ", int(kus + 0.5), " | ", int(round_dense_us + 0.5), " | ",
                                             ratio(round_dense_us, kus), " |", error));
      }
    }
#endif
    if (fp8)
      accuracy_rows.push_back(detail::concat("| ", c.what, " | ", accuracy, " | ", lt_error, " | ", native_us, " | ",
                                             native_error, " |"));
    std::printf("| %s | %lld x %lld x %lld | %d | %.0f | %s | %s | %s | %s | %s | %s |\n", c.what,
                (long long)c.m, (long long)c.n, (long long)c.k, int(dense_us + 0.5),
                tflops(c, dense_us), lt_default.c_str(), lt_searched.c_str(), lt_library.c_str(), native.c_str(),
                native_tf.c_str(), native_name.c_str());
    std::fflush(stdout);
  }
  std::printf("\ncuBLASLt's algorithms (dense):\n\n");
  for (const std::string& r : dense_algos) std::printf("- %s\n", r.c_str());
  if (!lt_plans.empty()) {
    std::printf("\ncuSPARSELt's searched plans:\n\n");
    for (const std::string& r : lt_plans) std::printf("- %s\n", r.c_str());
  }
  if (!accuracy_rows.empty()) {
    std::printf("\nFP8 accumulation: cuBLASLt with its periodic promotion to fp32 (the dense column above) "
                "and with fast accumulation (the tensor cores' accumulator only, as the native kernels "
                "accumulate); error = max over 512 outputs of |D - AB| / sum |A||B| (max_error in "
                "bench_gemm.cpp; a bf16 D adds up to 2e-3 of rounding):\n\n"
                "| product | cuBLAS us | cuBLAS fast-accum us | cuBLAS error | cuBLAS fast-accum error | "
                "cuSPARSELt error | native us | native error |\n|---|---|---|---|---|---|---|---|\n");
    for (const std::string& r : accuracy_rows) std::printf("%s\n", r.c_str());
  }
  if (!kernel_rows.empty()) {
    std::printf("\nEvery native kernel that fits, timed in turn with cuBLAS dense in 3 rounds (the "
                "median round of each; speed-up against the cuBLAS of the same rounds):\n\n"
                "| m x n x k | kernel | us | cuBLAS dense us | speed-up |%s\n"
                "|---|---|---|---|---|%s\n", fp8 ? " error |" : "", fp8 ? "---|" : "");
    for (const std::string& r : kernel_rows) std::printf("%s\n", r.c_str());
  }
  return 0;
}

}  // namespace sparse24::bench
