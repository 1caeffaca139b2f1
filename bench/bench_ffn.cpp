// `sparse24 bench ffn`: a transformer FFN block trained with each sparse mode against dense.
//
// Workload (the issue's): Linear(d, 4d), GELU, Linear(4d, d) at GPT-2 S/M/L/XL widths with 16384
// tokens per micro-step, 16-bit activations, fp32 masters; one optimizer step = begin_step of both
// layers (FST: compress W and W^T, select the mask every 40 steps), `accum` micro-steps of
// forward + backward, and an AdamW step on the GPU. The loop runs 40 optimizer steps (steps
// 40..79, after two warm-up steps), so exactly one mask selection is amortised over them, as in
// training; the time per optimizer step is the total over the 40, divided by 40.
//
// Modes: dense (cuBLASLt on a 16-bit copy of W), FST (all three GEMMs 2:4, the papers' recipe;
// and with the weight gradient dense, the layer's default), S-STE (forward 2:4, input gradient
// dense, weight gradient MVUE 2:4; and with the weight gradient dense). With --dtype e4m3 the
// sparse modes run S-STE's FP8 recipe (e4m3 x and weights, e5m2 gradients, bf16 activations)
// against the bf16 dense step. It prints, per width and accumulation, the time per optimizer step,
// tokens/s, speed-up over dense, the dense-equivalent tensor-core rate (6 GEMMs of 2 T d 4d
// FLOPs per micro-step, against the 989 TFLOP/s dense fp16/bf16 peak), where the time goes
// (micro-step, begin_step with and without a mask selection, optimizer), and the memory each
// mode holds per parameter beyond dense training.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/timing.h"
#include "sparse24/sparse24.h"

namespace sparse24::bench {
namespace {

constexpr int64_t kTokens = 16384;
constexpr int kMaskFreq = 40;
constexpr double kDensePeakTflops = 989.0;

struct Width {
  const char* name;
  int64_t d;
};
const Width kWidths[] = {{"GPT-2 S", 768}, {"GPT-2 M", 1024}, {"GPT-2 L", 1280}, {"GPT-2 XL", 1600}};

struct Mode {
  const char* name;
  SparseMode mode;
  GemmChoice sparse;
};
const Mode kModes[] = {
    {"dense", SparseMode::kDense, {}},
    {"FST", SparseMode::kFst, {true, true, true}},
    {"FST, dense dW", SparseMode::kFst, {true, true, false}},
    {"S-STE", SparseMode::kSste, {true, true, true}},
    {"S-STE, dense dW", SparseMode::kSste, {true, true, false}},
};


// The dtype of the activations: bf16 when the sparse GEMMs run in FP8 (e4m3 weights).
DType activation_dtype(DType dt) { return dt == DType::kF8E4M3 ? DType::kBF16 : dt; }

// The FFN block and its activations on the GPU.
struct Ffn {
  SparseLinear fc1, fc2;
  AdamW opt;
  Tensor x, h, a, y, dy, da, dx;

  Ffn(int64_t d, const Mode& m, DType dt)
      : fc1(config(d, 4 * d, m, dt, 1)), fc2(config(4 * d, d, m, dt, 2)), opt(AdamWConfig{}) {
    fc1.add_parameters(opt);
    fc2.add_parameters(opt);
    dt = activation_dtype(dt);
    x = random_matrix(kTokens, d, dt).to(Device::kCUDA);
    dy = random_matrix(kTokens, d, dt).to(Device::kCUDA);
    h = Tensor::matrix(kTokens, 4 * d, dt, Layout::kRowMajor, Device::kCUDA);
    a = Tensor::matrix(kTokens, 4 * d, dt, Layout::kRowMajor, Device::kCUDA);
    da = Tensor::matrix(kTokens, 4 * d, dt, Layout::kRowMajor, Device::kCUDA);
    y = Tensor::matrix(kTokens, d, dt, Layout::kRowMajor, Device::kCUDA);
    dx = Tensor::matrix(kTokens, d, dt, Layout::kRowMajor, Device::kCUDA);
  }
  static LinearConfig config(int64_t in, int64_t out, const Mode& m, DType dt, uint64_t seed) {
    LinearConfig c;
    c.in = in;
    c.out = out;
    c.mode = m.mode;
    c.sparse = m.sparse;
    c.mask_freq = kMaskFreq;
    c.weight_dtype = m.mode == SparseMode::kDense ? activation_dtype(dt) : dt;
    c.device = Device::kCUDA;
    c.seed = seed;
    return c;
  }

  void begin_step(int64_t step) {
    fc1.begin_step(step);
    fc2.begin_step(step);
  }
  // Forward and backward of one micro-batch (the loss gradient dy is given); mark(k), when given,
  // runs after op k (the timeline's event records).
  static constexpr int kOps = 6;
  static constexpr const char* kOpNames[kOps] = {"fc1 fwd", "gelu", "fc2 fwd", "fc2 bwd", "gelu bwd", "fc1 bwd"};
  void micro_step(uint64_t seed, const std::function<void(int)>& mark = {}) {
    auto done = [&](int k) {
      if (mark) mark(k);
    };
    fc1.forward(x, h);
    done(0);
    nn::gelu_forward(a, h);
    done(1);
    fc2.forward(a, y);
    done(2);
    fc2.backward(a, dy, &da.view(), 2 * seed);
    done(3);
    nn::gelu_backward(da, h, da);  // in place: dH
    done(4);
    fc1.backward(x, da, &dx.view(), 2 * seed + 1);
    done(5);
  }
  void optimizer_step() {
    opt.step(1e-4f);
    fc1.zero_grad();
    fc2.zero_grad();
  }
  void train_step(int64_t step, int accum) {
    begin_step(step);
    for (int i = 0; i < accum; ++i) micro_step(uint64_t(step) * 64 + uint64_t(i));
    optimizer_step();
  }
  double extra_bytes_per_param() const {
    const double params = double(fc1.weight().numel() + fc2.weight().numel());
    return double(fc1.extra_bytes() + fc2.extra_bytes()) / params;
  }
};

struct Result {
  double step_ms = 0, micro_ms = 0, begin_ms = 0, select_ms = 0, opt_ms = 0, bytes = 0;
  double op_ms[Ffn::kOps] = {};  // --timeline: GPU time from the previous op's end to each op's end
  double host_ms = 0;            // --timeline: host time to issue one micro-step (a hidden
                                 // synchronisation makes it as long as the GPU time)
};


// Per-op GPU times of a micro-step (events between the ops) and the host's issue time.
void timeline(Ffn& f, Result& r) {
  constexpr int kReps = 7;
  std::vector<double> ops[Ffn::kOps], host;
  cudaEvent_t ev[Ffn::kOps + 1];
  for (cudaEvent_t& e : ev) check(cudaEventCreate(&e), "cudaEventCreate");
  for (int rep = 0; rep < kReps; ++rep) {
    check(cudaDeviceSynchronize(), "timeline");
    check(cudaEventRecord(ev[0]), "cudaEventRecord");
    const auto t0 = std::chrono::steady_clock::now();
    f.micro_step(uint64_t(2000 + rep), [&](int k) { check(cudaEventRecord(ev[k + 1]), "cudaEventRecord"); });
    host.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    check(cudaEventSynchronize(ev[Ffn::kOps]), "cudaEventSynchronize");
    for (int k = 0; k < Ffn::kOps; ++k) {
      float ms = 0.f;
      check(cudaEventElapsedTime(&ms, ev[k], ev[k + 1]), "cudaEventElapsedTime");
      ops[k].push_back(ms);
    }
  }
  for (cudaEvent_t& e : ev) cudaEventDestroy(e);
  for (int k = 0; k < Ffn::kOps; ++k) r.op_ms[k] = median_of(ops[k]);
  r.host_ms = median_of(host);
}

Result run(int64_t d, const Mode& m, DType dt, int accum, int steps, bool with_timeline) {
  Ffn f(d, m, dt);
  for (int64_t s = 0; s < 2; ++s) f.train_step(s, accum);  // warm-up: plans, workspaces
  check(cudaDeviceSynchronize(), "warm-up");
  Result r;
  Timer t;
  t.start();
  for (int64_t s = kMaskFreq; s < kMaskFreq + steps; ++s) f.train_step(s, accum);
  r.step_ms = t.stop_ms() / steps;
  // Where the time goes, each part alone (median of a few).
  auto median = [&](int n, const std::function<void(int)>& fn) {
    std::vector<double> v;
    for (int i = 0; i < n; ++i) {
      t.start();
      fn(i);
      v.push_back(t.stop_ms());
    }
    return median_of(v);
  };
  r.micro_ms = median(5, [&](int i) { f.micro_step(uint64_t(1000 + i)); });
  r.opt_ms = median(5, [&](int) { f.optimizer_step(); });
  r.begin_ms = median(5, [&](int i) { f.begin_step(kMaskFreq + 1 + i); });
  r.select_ms = median(3, [&](int i) { f.begin_step(kMaskFreq * (3 + i)); });
  r.bytes = f.extra_bytes_per_param();
  if (with_timeline) timeline(f, r);
  return r;
}

}  // namespace

int ffn(int argc, char** argv) {
  bool quick = false;
  DType dt = DType::kF16;
  int64_t only_width = 0;  // --width D: that width only (profiling)
  int only_accum = 0;      // --accum A: that accumulation only
  std::string only_mode;   // --mode NAME: that row's mode only ("dense", "FST, dense dW", ...)
  bool with_timeline = false;  // --timeline: per-op times and the host's issue time under each row
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--dtype" && i + 1 < argc) {
      dt = parse_dtype(argv[++i]);
      S24_CHECK(dt == DType::kF16 || dt == DType::kBF16 || dt == DType::kF8E4M3, kValue,
                "bench ffn: --dtype takes fp16, bf16 or e4m3 (FP8 sparse GEMMs, bf16 activations)");
    } else if (a == "--width" && i + 1 < argc) {
      only_width = std::stoll(argv[++i]);
    } else if (a == "--accum" && i + 1 < argc) {
      only_accum = std::stoi(argv[++i]);
    } else if (a == "--mode" && i + 1 < argc) {
      only_mode = argv[++i];
    } else if (a == "--timeline") {
      with_timeline = true;
    } else {
      S24_FAIL(kValue, "bench ffn: unknown argument '", a, "' (takes --quick, --dtype fp16|bf16|e4m3, --width D, "
               "--accum A, --mode NAME, --timeline)");
    }
  }
  if (!only_mode.empty()) {
    bool known = false;
    for (const Mode& m : kModes) known = known || only_mode == m.name;
    S24_CHECK(known, kValue, "bench ffn --mode: unknown mode '", only_mode, "' (dense, FST, \"FST, dense dW\", "
              "S-STE, \"S-STE, dense dW\")");
  }
  const std::vector<GpuInfo> g = list_gpus(nullptr);
  S24_CHECK(!g.empty(), kDevice, "bench ffn needs a GPU");
  const int steps = quick ? 8 : kMaskFreq;
  std::printf("GPU: %s; FFN block Linear(d, 4d) GELU Linear(4d, d), %lld tokens per micro-step, %s "
              "activations%s, fp32 masters and AdamW; %d optimizer steps timed (one mask selection); "
              "times in ms per optimizer step\n\n",
              g[0].name.c_str(), (long long)kTokens, dtype_name(activation_dtype(dt)),
              dt == DType::kF8E4M3 ? ", sparse modes with FP8 GEMMs (e4m3 x and W, e5m2 dY)" : "", steps);
  std::printf("| width | accum | mode | ms/step | tokens/s | speed-up | TFLOP/s (dense-eq., %% of peak) | "
              "micro-step | begin_step | with mask selection | AdamW | extra B/param | beyond dense |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Width& w : kWidths) {
    if ((quick && w.d != 768 && w.d != 1600) || (only_width && w.d != only_width)) continue;
    for (int accum : {1, 8}) {
      if (only_accum && accum != only_accum) continue;
      double dense_ms = 0, dense_bytes = 0;
      for (const Mode& m : kModes) {
        if (!only_mode.empty() && only_mode != m.name && m.mode != SparseMode::kDense) continue;
        const Result r = run(w.d, m, dt, accum, steps, with_timeline);
        if (m.mode == SparseMode::kDense) {
          dense_ms = r.step_ms;
          dense_bytes = r.bytes;
        }
        const double tokens = double(kTokens) * accum;
        const double tflops = 48.0 * double(w.d) * double(w.d) * tokens / (r.step_ms * 1e-3) / 1e12;
        std::printf("| %s (%lld) | %d | %s | %.2f | %.0fk | %.2fx | %.0f (%.0f%%) | %.2f | %.2f | %.2f | %.2f | "
                    "%.2f | %+.2f |\n",
                    w.name, (long long)w.d, accum, m.name, r.step_ms, tokens / r.step_ms, dense_ms / r.step_ms,
                    tflops, 100.0 * tflops / kDensePeakTflops, r.micro_ms, r.begin_ms, r.select_ms, r.opt_ms,
                    r.bytes, r.bytes - dense_bytes);
        if (with_timeline) {
          std::printf("|  | | timeline (ms) |");
          for (int k = 0; k < Ffn::kOps; ++k) std::printf(" %s %.3f;", Ffn::kOpNames[k], r.op_ms[k]);
          std::printf(" host issue %.3f | | | | | | | | | |\n", r.host_ms);
        }
        std::fflush(stdout);
      }
    }
  }
  std::printf("\nextra B/param: what the two layers hold beyond fp32 masters and gradients (and "
              "AdamW's two moments), per weight: dense keeps a 16-bit copy of W (2 B); FST its "
              "compressed W and W^T (1 B each in 16 bits), their metadata and the mask; S-STE the "
              "latest beta S(W) and its metadata, and a dense copy of it for the dense input "
              "gradient.\n");
  return 0;
}

}  // namespace sparse24::bench
