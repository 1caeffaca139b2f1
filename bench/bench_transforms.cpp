// `sparse24 bench transforms`: the transform kernels at training shapes, timed with CUDA events.
//
// Each kernel is pure memory traffic, so it is reported as bytes moved (input read once, outputs
// written once) over time, and as a share of a large device-to-device copy measured in the same
// run (bytes read + written). Inputs rotate over enough copies to exceed the L2 cache, so the
// numbers are DRAM numbers. Outputs are preallocated: the kernels alone are timed (the public API
// would add allocation).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/timing.h"
#include "cuda/transforms_cuda.h"
#include "sparse24/sparse24.h"

namespace sparse24::bench {
namespace {

// How many input copies to rotate over so that one round moves >= 256 MB (beyond L2).
int rotation(double bytes_per_call) { return std::clamp(int(256e6 / bytes_per_call) + 1, 1, 24); }

// Device-to-device copy rate in TB/s (bytes read + written) of `bytes`, rotating over buffers
// like the kernels do.
double copy_rate(size_t bytes = size_t(1) << 30) {
  const int n = rotation(2.0 * double(bytes));
  std::vector<void*> src(static_cast<size_t>(n)), dst(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    check(cudaMalloc(&src[size_t(i)], bytes), "cudaMalloc");
    check(cudaMalloc(&dst[size_t(i)], bytes), "cudaMalloc");
    check(cudaMemset(src[size_t(i)], 1, bytes), "cudaMemset");
  }
  const double us = time_us(n, [&](int i) {
    check(cudaMemcpyAsync(dst[size_t(i)], src[size_t(i)], bytes, cudaMemcpyDeviceToDevice), "copy");
  });
  for (int i = 0; i < n; ++i) {
    cudaFree(src[size_t(i)]);
    cudaFree(dst[size_t(i)]);
  }
  return 2.0 * double(bytes) / (us * 1e-6) / 1e12;
}

struct Row {
  std::string kernel, shape, types;
  double us, bytes;
};

// One table row. `copy` is the 1 GiB copy rate; the last column compares with a copy moving the
// same number of bytes (half read, half written), which small sizes cannot run at full rate.
void print(const Row& r, double copy) {
  const double tbs = r.bytes / (r.us * 1e-6) / 1e12;
  const double same = copy_rate(size_t(r.bytes / 2));
  std::printf("| %-28s | %-13s | %-18s | %8.1f | %7.1f | %5.2f | %4.0f%% | %4.0f%% |\n", r.kernel.c_str(),
              r.shape.c_str(), r.types.c_str(), r.us, r.bytes / 1e6, tbs, 100.0 * tbs / copy, 100.0 * tbs / same);
  std::fflush(stdout);
}

std::string shape_str(int64_t r, int64_t c) { return std::to_string(r) + "x" + std::to_string(c); }

// Random device inputs: `n` copies of a rows x cols matrix of dtype dt in the given layout.
std::vector<Tensor> inputs(int n, int64_t rows, int64_t cols, DType dt, Layout layout) {
  const Tensor host = random_matrix(rows, cols, dt, layout);
  std::vector<Tensor> out;
  for (int i = 0; i < n; ++i) out.push_back(host.to(Device::kCUDA));
  return out;
}

}  // namespace

int transforms(int argc, char** argv) {
  bool quick = false;
  std::string only;  // rows whose "kernel shape in -> out" contains it
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--only") {
      S24_CHECK(i + 1 < argc, kValue, "bench transforms: --only needs TEXT (part of a row's \"kernel shape in -> out\")");
      only = argv[++i];
    } else {
      S24_CHECK(false, kValue, "bench transforms: unknown argument '", a, "' (--quick, --only TEXT)");
    }
  }
  auto wanted = [&](const std::string& kernel, const std::string& shape, const std::string& types) {
    return (kernel + " " + shape + " " + types).find(only) != std::string::npos;
  };
  std::string why;
  const std::vector<GpuInfo> gpus = list_gpus(&why);
  S24_CHECK(!gpus.empty(), kDevice, "bench transforms needs a GPU (", why, ")");
  const double copy = copy_rate();
  std::printf("GPU: %s; device-to-device copy %.2f TB/s (read + write, 1 GiB)\n\n", gpus[0].name.c_str(), copy);
  std::printf("| kernel                       | shape         | in -> out          |       us |      MB |  TB/s | of copy | of same-size copy |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");

  std::vector<std::pair<int64_t, int64_t>> weights = {{768, 3072}, {3072, 768}, {1600, 6400}, {6400, 1600}, {4096, 11008}};
  std::vector<int64_t> grad_rows = {768, 3072, 6400};
  if (quick) {
    weights = {{3072, 768}};
    grad_rows = {3072};
  }
  const int64_t tokens = 16384;

  // Group transforms on weights (fp32 master weights, or fp16), row-major.
  struct GroupCase {
    const char* name;
    rules::GroupRule rule;
    DType in, out;
    float scale;
  };
  const GroupCase group_cases[] = {
      {"magnitude", rules::GroupRule::kMagnitude, DType::kF32, DType::kF16, 1.f},
      {"magnitude", rules::GroupRule::kMagnitude, DType::kF16, DType::kF16, 1.f},
      {"explicit mask", rules::GroupRule::kMask, DType::kF32, DType::kF16, 1.f},
      {"soft threshold (S-STE)", rules::GroupRule::kSoftThreshold, DType::kF32, DType::kF16, 1.f},
      {"soft threshold (S-STE)", rules::GroupRule::kSoftThreshold, DType::kF32, DType::kF8E4M3, 0.01f},
  };
  for (auto [rows, cols] : weights)
    for (const GroupCase& gc : group_cases) {
      const std::string types = std::string(dtype_name(gc.in)) + " -> " + dtype_name(gc.out);
      if (!wanted(gc.name, shape_str(rows, cols), types)) continue;
      const double bytes = double(rows * cols) * (dtype_size(gc.in) + 0.5 * dtype_size(gc.out) + 0.125);
      const int n = rotation(bytes);
      const std::vector<Tensor> in = inputs(n, rows, cols, gc.in, Layout::kRowMajor);
      std::vector<Sparse24Matrix> out;
      for (int i = 0; i < n; ++i) out.push_back(make_sparse24(rows, cols, gc.out, gc.scale, Device::kCUDA));
      const Mask24 mask = prune_magnitude(in[0]).mask;
      cpu::GroupArgs args;
      args.rule = gc.rule;
      args.mask = &mask;
      args.beta = 0.9f;
      CompressOptions o;
      o.non_finite = NonFinite::kPropagate;  // as in training: no synchronisation
      o.overflow = Overflow::kSaturate;
      const double us = time_us(n, [&](int i) { cuda::prune_groups(in[size_t(i)], args, o, out[size_t(i)]); });
      print({gc.name, shape_str(rows, cols), types, us, bytes}, copy);
    }

  // Transposable: the exact search (every mask_freq steps) and the given-mask compression of W
  // and W^T (every optimizer step).
  for (auto [rows, cols] : weights)
    for (DType in_dt : {DType::kF32, DType::kF16})
      for (bool search : {true, false}) {
        const char* name = search ? "transposable search, W+W^T" : "transposable mask, W+W^T";
        const std::string types = std::string(dtype_name(in_dt)) + " -> fp16 x2";
        if (!wanted(name, shape_str(rows, cols), types)) continue;
        const double bytes = double(rows * cols) * (dtype_size(in_dt) + 2 * (0.5 * 2 + 0.125));
        const int n = rotation(bytes);
        const std::vector<Tensor> in = inputs(n, rows, cols, in_dt, Layout::kRowMajor);
        std::vector<Transposable24> out(static_cast<size_t>(n));
        for (Transposable24& t : out) {
          t.w = make_sparse24(rows, cols, DType::kF16, 1.f, Device::kCUDA);
          t.wt = make_sparse24(cols, rows, DType::kF16, 1.f, Device::kCUDA);
        }
        const Mask24 mask = prune_transposable(in[0]).mask;
        const CompressOptions o;
        const double us = time_us(n, [&](int i) {
          cuda::prune_transposable(in[size_t(i)], search ? nullptr : &mask, o, out[size_t(i)], /*report=*/false);
        });
        print({name, shape_str(rows, cols), types, us, bytes}, copy);
      }

  // Masked decay on fp32 master weights and gradients (read grad and W, write grad).
  for (auto [rows, cols] : weights) {
    const char* name = "masked decay";
    if (!wanted(name, shape_str(rows, cols), "fp32")) continue;
    const double bytes = double(rows * cols) * (4 + 4 + 4 + 0.125);
    const int n = rotation(bytes);
    const std::vector<Tensor> g = inputs(n, rows, cols, DType::kF32, Layout::kRowMajor);
    const std::vector<Tensor> w = inputs(n, rows, cols, DType::kF32, Layout::kRowMajor);
    const Mask24 mask = prune_magnitude(w[0]).mask;
    const double us = time_us(n, [&](int i) { cuda::masked_decay(g[size_t(i)], w[size_t(i)], mask, 6e-5f); });
    print({name, shape_str(rows, cols), "fp32", us, bytes}, copy);
  }

  // MVUE24 on output gradients: dY (tokens x N, row-major) pruned along tokens as dY^T, a
  // column-major N x tokens view.
  for (int64_t rows : grad_rows)
    for (DType dt : {DType::kF16, DType::kBF16}) {
      const char* name = "MVUE24 of dY^T (col-major)";
      const std::string types = std::string(dtype_name(dt)) + " -> " + dtype_name(dt);
      if (!wanted(name, shape_str(rows, tokens), types)) continue;
      const double bytes = double(rows * tokens) * (dtype_size(dt) + 0.5 * dtype_size(dt) + 0.125);
      const int n = rotation(bytes);
      const std::vector<Tensor> dy = inputs(n, tokens, rows, dt, Layout::kRowMajor);
      std::vector<Sparse24Matrix> out;
      for (int i = 0; i < n; ++i) out.push_back(make_sparse24(rows, tokens, dt, 1.f, Device::kCUDA));
      cpu::GroupArgs args;
      args.rule = rules::GroupRule::kMvue;
      args.seed = 42;
      CompressOptions o;
      o.non_finite = NonFinite::kPropagate;
      const double us = time_us(n, [&](int i) { cuda::prune_groups(dy[size_t(i)].view().t(), args, o, out[size_t(i)]); });
      print({name, shape_str(rows, tokens), types, us, bytes}, copy);
    }
  return 0;
}

}  // namespace sparse24::bench
