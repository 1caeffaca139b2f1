// sparse24: the command-line tool.
//   sparse24 info                      version, build options, GPUs found
//   sparse24 prune IN.npy OUT.npy ...  2:4-prune a matrix with any method
//   sparse24 check IN.npy              is a matrix 2:4 along rows / columns / transposable?
//   sparse24 randn OUT.npy ...         write a random N(0,1) matrix (for trying the others)
//   sparse24 train ...                 pre-train a GPT-2 model (dense, FST or S-STE linears)
//   sparse24 sample ...                text from a checkpoint
//   sparse24 plot OUT.png RUN...       loss curves of several runs as a PNG
// Exit codes: 0 success (check: 2:4 along rows), 1 check found the matrix not 2:4, 2 error.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <new>
#include <optional>
#include <random>
#include <string>

#include "cli_args.h"
#include "sparse24/sparse24.h"
#include "trainer/plot.h"
#include "trainer/train.h"
#ifdef SPARSE24_WITH_CUDA
#include "bench/bench.h"
#endif

namespace sparse24::cli {
namespace {

const char* kUsage = R"(usage: sparse24 <command> [options]

commands:
  info                         version, build options and the GPUs found
  prune IN.npy OUT.npy         2:4-prune a 2-D matrix (groups of 4 along each row) and write the
                               pruned dense matrix
      --method M               magnitude (default) | mask | mvue | soft | transposable
      --mask FILE.npy          the mask for --method mask (non-zero = keep; exactly 2 per group)
      --seed N                 seed of --method mvue (default 0)
      --beta X                 scale of --method soft (default: S-STE's beta = <W,S(W)>/<S(W),S(W)>)
      --dtype T                storage dtype of kept values: fp32 fp16 bf16 int8 e4m3 e5m2
                               (default: the input's); OUT holds the stored values, dequantized:
                               fp16 is written as float16, everything else as float32
      --scale S                stored = value / S (required for int8; default 1)
      --saturate               clamp out-of-range values to the dtype's max (default: PyTorch's
                               cast: Inf, or NaN for e4m3)
      --nan error|propagate    NaN/Inf in the input: fail naming it (default), or store NaN
      --mask-out FILE.npy      also write the mask (uint8 0/1)
  check IN.npy                 report whether a matrix is 2:4 along rows, along columns, and
                               transposable; exit 0 if 2:4 along rows, 1 if not
  randn OUT.npy --rows R --cols C [--seed N] [--dtype fp32|fp16]
                               write a matrix of N(0,1) values
  bench transforms [--quick] [--only TEXT]
                               time every CUDA transform kernel at GPT-2/LLaMA-7B shapes against
                               a device-to-device copy (needs a CUDA build and a GPU); --only: the
                               rows whose "kernel shape in -> out" contains TEXT
  bench gemm [--quick] [--all-kernels] [--only CASE] [--shape MxNxK]... [--dtype fp16|bf16|e4m3]
                               time the sparse GEMM backends (native, cuSPARSELt default and
                               searched) against cuBLAS dense at training shapes (e4m3: S-STE's
                               FP8 products against cuBLAS FP8); --shape: forward-type products
                               of these shapes instead; each column's timed calls are an NVTX
                               range named after it (for ncu --nvtx-include "native/")
  bench ffn [--quick] [--dtype fp16|bf16|e4m3] [--width D] [--accum A] [--mode NAME] [--timeline]
                               train an FFN block (Linear, GELU, Linear) dense, FST and S-STE on
                               the GPU at GPT-2 widths, 16384 tokens: time per step, speed-up,
                               memory per parameter (--timeline: per-op times; e4m3: the sparse
                               modes with FP8 GEMMs on bf16 activations)
  train --data FILE --out DIR  pre-train a GPT-2 model on a token file (text bytes, nanoGPT .bin
                               or llm.c shard), with a progress line, DIR/metrics.jsonl and
                               DIR/checkpoint.bin
      --format F               auto (default: .bin = nanoGPT or llm.c, else text) | nanogpt | llmc | text
      --vocab N                vocabulary size (default: from the data; 256 for text)
      --mode M                 dense (default) | fst | sste
      --sparse L               which linears are 2:4: ffn (default) | attention | all
      --layers N --heads N --channels N --seq N     model size (default 4, 4, 128, 64)
      --batch N --grad-accum N --steps N            (default 8, 1, 500)
      --lr X --min-lr X --warmup N                  cosine schedule (default 1e-3, 1e-4, 50)
      --weight-decay X --clip X                     AdamW decay and global-norm clip (0.1, 1)
      --dense-fraction X       sparse modes: the last fraction of steps runs dense (default 0)
      --mask-freq N --decay-alpha X                 FST mask update period and masked decay
      --weight-dtype T         dtype of the compressed weights in the GEMMs (fp32; e4m3 = FP8)
      --sparse-wgrad           run the weight-gradient GEMM 2:4 too, on MVUE24(dY^T) (the
                               papers' recipe; default: dense and exact, as GemmChoice,
                               since the 2:4 form does not pay on GPUs: docs/TRAINING.md)
      --eval-every N --eval-batches N --ckpt-every N --seed N --label NAME
      --resume                 continue DIR/checkpoint.bin bit for bit
  sample --checkpoint FILE [--prompt TEXT] [--tokens N] [--temperature X] [--seed N]
                               continue a prompt with a trained model
  plot OUT.png METRICS.jsonl... [--y FIELD[,FIELD]] [--labels A,B] [--title T]
                               loss curves of runs (default field val_loss) as a PNG

"--" ends the options (a file named "--x.npy": sparse24 randn --rows 4 --cols 4 -- --x.npy).
errors print 'sparse24: <what>' and exit 2.
)";

// Reads a .npy matrix as a transform input (fp32/fp16/bf16; integer files become fp32).
Tensor read_matrix(const std::string& path) {
  NpyArray a = read_npy(path);
  S24_CHECK(a.tensor.view().is_matrix(), kShape, path, ": expected a 2-D matrix, got ", a.tensor.view().describe());
  if (!is_input_dtype(a.tensor.dtype())) return to_f32_row_major(a.tensor);
  return a.tensor;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int cmd_info(int argc, char** argv) {
  Args(argc, argv, {}, {}).expect_positional(0, "no arguments");
  std::printf("sparse24 %s\n", version());
  std::printf("build: CUDA backend %s, OpenMP %s (%d CPU threads)\n", built_with_cuda() ? "on" : "off",
              built_with_openmp() ? "on" : "off", cpu_threads());
  std::string why;
  const std::vector<GpuInfo> gpus = list_gpus(&why);
  if (gpus.empty()) std::printf("GPUs: none (%s)\n", why.c_str());
  for (const GpuInfo& g : gpus)
    std::printf("GPU %d: %s, sm_%d%d, %.1f GiB\n", g.index, g.name.c_str(), g.cc_major, g.cc_minor,
                double(g.memory_bytes) / (1 << 30));
  std::printf("CUDA kernels: %s\n", built_with_cuda() ? "every transform (sparse24 bench "
              "transforms times them)" : "none (CPU-only build)");
  if (built_with_cuda())
    std::printf("GEMM backends: native sm90 sparse %s (%zu kernels), cuSPARSELt %s, 2:4 expanded "
                "to dense yes (where native does not run), cuBLASLt dense yes (sparse24 bench gemm times "
                "them)\n",
                gemm_backend_built(GemmBackend::kNative) ? "yes" : "no (no CUTLASS headers)",
                native_kernel_info().size(),
                gemm_backend_built(GemmBackend::kCusparselt) ? "yes" : "no (no cuSPARSELt)");
  return 0;
}

int cmd_prune(int argc, char** argv) {
  const Args args(argc, argv, {"method", "mask", "seed", "beta", "dtype", "scale", "nan", "mask-out"}, {"saturate"});
  args.expect_positional(2, "IN.npy OUT.npy");
  const std::string in_path = args.positional()[0], out_path = args.positional()[1];
  const std::string method = args.get_or("method", "magnitude");
  S24_CHECK(method == "magnitude" || method == "mask" || method == "mvue" || method == "soft" ||
                method == "transposable", kValue, "unknown --method '", method,
            "' (magnitude, mask, mvue, soft, transposable)");
  S24_CHECK(args.has("mask") == (method == "mask"), kValue,
            method == "mask" ? "--method mask needs --mask FILE.npy" : "--mask is only for --method mask");
  S24_CHECK(!args.has("seed") || method == "mvue", kValue, "--seed is only for --method mvue");
  S24_CHECK(!args.has("beta") || method == "soft", kValue, "--beta is only for --method soft");

  CompressOptions opts;
  if (auto d = args.get("dtype")) opts.dtype = parse_dtype(d->c_str());
  opts.scale = args.get_float("scale");
  opts.overflow = args.has("saturate") ? Overflow::kSaturate : Overflow::kPyTorch;
  const std::string nan = args.get_or("nan", "error");
  S24_CHECK(nan == "error" || nan == "propagate", kValue, "--nan expects error or propagate, got '", nan, "'");
  opts.non_finite = nan == "error" ? NonFinite::kError : NonFinite::kPropagate;

  const Tensor w = read_matrix(in_path);
  const auto t0 = std::chrono::steady_clock::now();
  Sparse24Matrix s;
  std::string detail;
  if (method == "magnitude") {
    s = prune_magnitude(w, opts);
  } else if (method == "mask") {
    const NpyArray m = read_npy(*args.get("mask"));
    S24_CHECK(m.tensor.view().is_matrix(), kShape, *args.get("mask"), ": expected a 2-D mask, got ",
              m.tensor.view().describe());
    s = prune_with_mask(w, Mask24::from_dense(m.tensor), opts);
  } else if (method == "mvue") {
    const uint64_t seed = args.get_u64("seed", 0);
    s = prune_mvue(w, seed, opts);
    detail = ", seed " + std::to_string(seed);
  } else if (method == "soft") {
    S24_CHECK(args.has("beta") || opts.non_finite == NonFinite::kError, kValue,
              "--method soft --nan propagate needs --beta: S-STE's default beta needs finite weights");
    const std::optional<float> given = args.get_float("beta");
    S24_CHECK(!given || (std::isfinite(*given) && *given > 0), kValue, "--beta must be finite and > 0, got ", *given);
    const float beta = given ? *given : float(sste_scale(w));  // the default needs finite weights
    s = prune_soft_threshold(w, beta, opts);
    char buf[64];
    std::snprintf(buf, sizeof buf, ", beta %.6g", double(beta));
    detail = buf;
  } else {
    s = prune_transposable(w, opts).w;
  }
  const double secs = seconds_since(t0);

  const DType out_dtype = s.dtype == DType::kF16 ? DType::kF16 : DType::kF32;
  const Tensor pruned = decompress(s, out_dtype);
  write_npy(out_path, pruned);
  if (auto mask_path = args.get("mask-out")) write_npy(*mask_path, s.mask.to_dense());

  // How far the pruned matrix is from the input: ||out - in|| / ||in||.
  double diff = 0, total = 0;
  const Tensor wf = to_f32_row_major(w), pf = to_f32_row_major(pruned);
  for (int64_t i = 0; i < wf.numel(); ++i) {
    const double a = wf.data<float>()[i], b = pf.data<float>()[i];
    total += a * a;
    diff += (b - a) * (b - a);
  }
  std::printf("%s: %lld x %lld %s, %s%s -> %s (%s, stored as %s): relative error %.3f, %.1f ms\n",
              in_path.c_str(), (long long)w.rows(), (long long)w.cols(), dtype_name(w.dtype()), method.c_str(),
              detail.c_str(), out_path.c_str(), dtype_name(out_dtype), dtype_name(s.dtype),
              total > 0 ? std::sqrt(diff / total) : 0.0, secs * 1e3);
  return 0;
}

int cmd_check(int argc, char** argv) {
  const Args args(argc, argv, {}, {});
  args.expect_positional(1, "IN.npy");
  const std::string path = args.positional()[0];
  const NpyArray a = read_npy(path);
  const TensorView v = a.tensor;
  S24_CHECK(v.is_matrix(), kShape, path, ": expected a 2-D matrix, got ", v.describe());
  const SparsityReport r = check_24(v);
  std::printf("%s: %lld x %lld (%s)\n", path.c_str(), (long long)v.rows(), (long long)v.cols(), a.descr.c_str());
  if (r.rows_24)
    std::printf("  2:4 along rows:    yes\n");
  else if (v.cols() % 4)
    std::printf("  2:4 along rows:    no (%lld columns, not divisible by 4)\n", (long long)v.cols());
  else
    std::printf("  2:4 along rows:    no (row %lld, columns %lld..%lld hold more than 2 non-zeros)\n",
                (long long)r.bad_row, (long long)(4 * r.bad_row_group), (long long)(4 * r.bad_row_group + 3));
  if (r.cols_24)
    std::printf("  2:4 along columns: yes\n");
  else if (v.rows() % 4)
    std::printf("  2:4 along columns: no (%lld rows, not divisible by 4)\n", (long long)v.rows());
  else
    std::printf("  2:4 along columns: no (column %lld, rows %lld..%lld hold more than 2 non-zeros)\n",
                (long long)r.bad_col, (long long)(4 * r.bad_col_group), (long long)(4 * r.bad_col_group + 3));
  std::printf("  transposable:      %s\n", r.transposable() ? "yes" : "no");
  return r.rows_24 ? 0 : 1;
}

int cmd_randn(int argc, char** argv) {
  const Args args(argc, argv, {"rows", "cols", "seed", "dtype"}, {});
  args.expect_positional(1, "OUT.npy");
  S24_CHECK(args.has("rows") && args.has("cols"), kValue, "randn needs --rows R --cols C");
  const int64_t rows = args.get_int("rows", 0), cols = args.get_int("cols", 0);
  S24_CHECK(rows > 0 && cols > 0 && rows <= (int64_t(1) << 32) / cols, kShape, "randn: bad shape ", rows, " x ", cols,
            " (rows and cols > 0, at most 2^32 elements)");
  const DType dt = parse_dtype(args.get_or("dtype", "fp32").c_str());
  S24_CHECK(dt == DType::kF32 || dt == DType::kF16, kDType, "randn writes fp32 or fp16, not ", dtype_name(dt));
  Tensor t = Tensor::matrix(rows, cols, dt);
  std::mt19937_64 rng(args.get_u64("seed", 0));
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float x = dist(rng);
    if (dt == DType::kF32) t.data<float>()[i] = x;
    else t.data<f16_t>()[i] = {f32_to_f16(x)};
  }
  write_npy(args.positional()[0], t);
  std::printf("wrote %s: %lld x %lld %s, N(0,1)\n", args.positional()[0].c_str(), (long long)rows, (long long)cols,
              dtype_name(dt));
  return 0;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : s) {
    if (ch == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty() || !out.empty()) out.push_back(cur);
  return out;
}

int cmd_train(int argc, char** argv) {
  const Args args(argc, argv,
                  {"data", "format", "out", "mode", "sparse", "layers", "heads", "channels", "seq", "batch", "grad-accum",
                   "steps", "lr", "min-lr", "warmup", "weight-decay", "clip", "dense-fraction", "mask-freq",
                   "decay-alpha", "weight-dtype", "eval-every", "eval-batches", "ckpt-every", "seed", "label", "vocab"},
                  {"resume", "sparse-wgrad"});
  args.expect_positional(0, "options only");
  S24_CHECK(args.has("data"), kValue, "train needs --data FILE (a text file, a nanoGPT .bin or an llm.c shard)");
  trainer::TrainConfig c;
  c.data = *args.get("data");
  c.format = trainer::parse_token_format(args.get_or("format", "auto"));
  c.out_dir = args.get_or("out", "out/run");
  const std::string mode = args.get_or("mode", "dense");
  S24_CHECK(mode == "dense" || mode == "fst" || mode == "sste", kValue, "unknown --mode '", mode, "' (dense, fst, sste)");
  c.model.mode = mode == "fst" ? SparseMode::kFst : mode == "sste" ? SparseMode::kSste : SparseMode::kDense;
  c.model.sparse_linears = trainer::parse_sparse_linears(args.get_or("sparse", "ffn"));
  c.model.layers = int(args.get_int("layers", 4, 1, 1024));
  c.model.heads = int(args.get_int("heads", 4, 1, 4096));
  c.model.channels = int(args.get_int("channels", 128, 1, 1 << 16));
  c.model.vocab = int(args.get_int("vocab", 0, 0, 1 << 24));
  c.seq = int(args.get_int("seq", 64, 1, 1 << 16));
  c.model.max_seq = c.seq;
  c.batch = int(args.get_int("batch", 8, 1, 1 << 20));
  c.grad_accum = int(args.get_int("grad-accum", 1, 1, 1 << 20));
  c.steps = args.get_int("steps", 500, 1, int64_t(1) << 40);
  c.lr = args.get_float("lr").value_or(1e-3f);
  c.min_lr = args.get_float("min-lr").value_or(1e-4f);
  c.warmup = args.get_int("warmup", 50, 0, int64_t(1) << 40);
  c.weight_decay = args.get_float("weight-decay").value_or(0.1f);
  c.grad_clip = args.get_float("clip").value_or(1.f);
  c.dense_fraction = args.get_float("dense-fraction").value_or(0.f);
  c.model.mask_freq = int(args.get_int("mask-freq", 40, 1, 1 << 30));
  c.model.decay_alpha = args.get_float("decay-alpha").value_or(6e-5f);
  c.model.weight_dtype = parse_dtype(args.get_or("weight-dtype", "fp32").c_str());
  c.model.gemms.weight_grad = args.has("sparse-wgrad");
  c.eval_every = args.get_int("eval-every", 100, 0, int64_t(1) << 40);
  c.eval_batches = int(args.get_int("eval-batches", 16, 1, 1 << 20));
  c.ckpt_every = args.get_int("ckpt-every", 0, 0, int64_t(1) << 40);
  c.seed = args.get_u64("seed", 1);
  c.model.seed = c.seed;
  c.label = args.get_or("label", "");
  const trainer::TrainResult r = trainer::train(c, args.has("resume"));
  std::printf("%s: final val loss %.4f (train %.4f) after %lld steps, %.0f s, %.0f tokens/s; %s/checkpoint.bin, %s/metrics.jsonl\n",
              c.label.empty() ? mode.c_str() : c.label.c_str(), r.val_loss, r.train_loss, (long long)r.steps, r.seconds,
              r.tokens_per_second, c.out_dir.c_str(), c.out_dir.c_str());
  return 0;
}

int cmd_sample(int argc, char** argv) {
  const Args args(argc, argv, {"checkpoint", "prompt", "tokens", "temperature", "seed"}, {});
  args.expect_positional(0, "options only");
  S24_CHECK(args.has("checkpoint"), kValue, "sample needs --checkpoint FILE");
  const std::string prompt = args.get_or("prompt", "");
  const std::string text = trainer::sample(*args.get("checkpoint"), prompt, int(args.get_int("tokens", 200, 0, 1 << 24)),
                                           args.get_float("temperature").value_or(0.8f), args.get_u64("seed", 1));
  const std::string out = prompt + text + "\n";  // byte-level text may hold NUL bytes: written whole
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int cmd_plot(int argc, char** argv) {
  const Args args(argc, argv, {"y", "labels", "title"}, {});
  S24_CHECK(args.positional().size() >= 2, kValue, "plot needs OUT.png and at least one metrics.jsonl");
  const std::vector<std::string> files(args.positional().begin() + 1, args.positional().end());
  trainer::MetricsPlotOptions opt;
  opt.fields_y = split_commas(args.get_or("y", "val_loss"));
  if (auto l = args.get("labels")) opt.labels = split_commas(*l);
  if (auto t = args.get("title")) opt.title = *t;
  trainer::plot_from_metrics(args.positional()[0], files, opt);
  std::printf("wrote %s\n", args.positional()[0].c_str());
  return 0;
}

int cmd_bench(int argc, char** argv) {
  S24_CHECK(argc >= 1, kValue, "bench needs a suite: transforms, gemm or ffn");
  const std::string suite = argv[0];
  S24_CHECK(suite == "transforms" || suite == "gemm" || suite == "ffn", kValue, "unknown bench suite '",
            suite, "' (transforms, gemm, ffn)");
#ifdef SPARSE24_WITH_CUDA
  std::string why;
  S24_CHECK(!list_gpus(&why).empty(), kDevice, "bench ", suite, " needs a GPU (", why, ")");
  std::printf("%s\n\n", bench::sm_clock_report("before the run").c_str());
  const int rc = suite == "ffn"    ? bench::ffn(argc - 1, argv + 1)
                 : suite == "gemm" ? bench::gemm(argc - 1, argv + 1)
                                   : bench::transforms(argc - 1, argv + 1);
  std::printf("\n%s\n", bench::sm_clock_report("after the run").c_str());
  return rc;
#else
  S24_FAIL(kDevice, "bench ", suite, " times CUDA kernels: this build has no CUDA backend");
#endif
}

}  // namespace
}  // namespace sparse24::cli

int main(int argc, char** argv) {
  using namespace sparse24::cli;
  if (argc < 2 || std::string(argv[1]) == "help" || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "info") return cmd_info(argc - 2, argv + 2);
    if (cmd == "prune") return cmd_prune(argc - 2, argv + 2);
    if (cmd == "check") return cmd_check(argc - 2, argv + 2);
    if (cmd == "randn") return cmd_randn(argc - 2, argv + 2);
    if (cmd == "bench") return cmd_bench(argc - 2, argv + 2);
    if (cmd == "train") return cmd_train(argc - 2, argv + 2);
    if (cmd == "sample") return cmd_sample(argc - 2, argv + 2);
    if (cmd == "plot") return cmd_plot(argc - 2, argv + 2);
    std::fprintf(stderr, "sparse24: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const sparse24::Error& e) {
    std::fprintf(stderr, "sparse24: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "sparse24: out of memory (an allocation failed; a smaller shape, batch or model may fit)\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sparse24: unexpected failure: %s\n", e.what());
    return 2;
  }
}
