// `sparse24 train` and `sparse24 sample`: the training loop around Gpt2 (see train.h).
#include "trainer/train.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include "sparse24/error.h"
#include "sparse24/philox.h"
#include "sparse24/optim.h"
#include "trainer/checkpoint.h"
#include "trainer/metrics.h"

namespace sparse24::trainer {

// ---- Configuration as flat JSON -------------------------------------------------------------
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;  // key -> JSON value text

std::string quote(const std::string& s) { return json_string(s); }
std::string num(double v) { return json_number(v); }

Fields fields(const TrainConfig& c) {
  const GptConfig& m = c.model;
  return {{"format_version", "1"},
          {"data", quote(c.data)},
          {"data_format", quote(token_format_name(c.format))},
          {"val_fraction", num(c.val_fraction)},
          {"vocab", num(m.vocab)},
          {"max_seq", num(m.max_seq)},
          {"layers", num(m.layers)},
          {"heads", num(m.heads)},
          {"channels", num(m.channels)},
          {"mode", quote(sparse_mode_name(m.mode))},
          {"sparse_linears", quote(sparse_linears_name(m.sparse_linears))},
          {"mask_freq", num(m.mask_freq)},
          {"decay_alpha", num(m.decay_alpha)},
          {"sparse_forward", m.gemms.forward ? "true" : "false"},
          {"sparse_input_grad", m.gemms.input_grad ? "true" : "false"},
          {"sparse_weight_grad", m.gemms.weight_grad ? "true" : "false"},
          {"weight_dtype", quote(dtype_name(m.weight_dtype))},
          {"model_seed", quote(std::to_string(m.seed))},  // a decimal string: all 64 bits
          {"batch", num(c.batch)},
          {"seq", num(c.seq)},
          {"grad_accum", num(c.grad_accum)},
          {"steps", num(double(c.steps))},
          {"lr", num(c.lr)},
          {"min_lr", num(c.min_lr)},
          {"warmup", num(double(c.warmup))},
          {"weight_decay", num(c.weight_decay)},
          {"beta1", num(c.beta1)},
          {"beta2", num(c.beta2)},
          {"grad_clip", num(c.grad_clip)},
          {"dense_fraction", num(c.dense_fraction)},
          {"eval_every", num(double(c.eval_every))},
          {"eval_batches", num(c.eval_batches)},
          {"ckpt_every", num(double(c.ckpt_every))},
          {"seed", quote(std::to_string(c.seed))},
          {"label", quote(c.label)}};
}

}  // namespace

std::string to_json(const TrainConfig& c) {
  std::string s = "{";
  bool first = true;
  for (const auto& [k, v] : fields(c)) {
    s += (first ? "" : ", ") + quote(k) + ": " + v;
    first = false;
  }
  return s + "}";
}

TrainConfig config_from_json(const std::string& json) {
  const MetricsRow f = parse_json_object(json, "configuration JSON");
  auto get = [&](const char* key) -> const std::string& {
    auto it = f.strings.find(key);
    S24_CHECK(it != f.strings.end(), kIO, "configuration JSON: missing string \"", key, "\"");
    return it->second;
  };
  auto number = [&](const char* key) {
    auto it = f.numbers.find(key);
    S24_CHECK(it != f.numbers.end(), kIO, "configuration JSON: missing number \"", key, "\"");
    return it->second;
  };
  auto boolean = [&](const char* key) { return number(key) != 0.0; };
  // Integral numbers in range: a hand-edited or corrupt configuration fails here, naming the key.
  auto integer = [&](const char* key, double lo, double hi) {
    const double v = number(key);
    S24_CHECK(v == std::floor(v) && v >= lo && v <= hi, kIO, "configuration JSON: \"", key,
              "\" must be an integer in [", lo, ", ", hi, "], got ", v);
    return v;
  };
  constexpr double kIntMax = double(std::numeric_limits<int>::max()), kI64Max = 9007199254740992.0;  // 2^53
  auto i32 = [&](const char* key) { return int(integer(key, -kIntMax, kIntMax)); };
  auto i64 = [&](const char* key) { return int64_t(integer(key, -kI64Max, kI64Max)); };
  auto u64 = [&](const char* key) {
    const std::string& v = get(key);
    char* end = nullptr;
    errno = 0;
    const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
    S24_CHECK(errno == 0 && end && *end == '\0' && !v.empty() && v[0] != '-', kIO, "configuration JSON: \"", key,
              "\" is not an unsigned integer: ", v);
    return uint64_t(x);
  };
  S24_CHECK(number("format_version") == 1.0, kIO, "configuration JSON: unsupported format_version ",
            number("format_version"));
  TrainConfig c;
  c.data = get("data");
  c.format = parse_token_format(get("data_format"));
  c.val_fraction = number("val_fraction");
  GptConfig& m = c.model;
  m.vocab = i32("vocab");
  m.max_seq = i32("max_seq");
  m.layers = i32("layers");
  m.heads = i32("heads");
  m.channels = i32("channels");
  const std::string mode = get("mode");
  S24_CHECK(mode == "dense" || mode == "fst" || mode == "sste", kIO, "configuration JSON: unknown mode \"", mode,
            "\" (dense, fst, sste)");
  m.mode = mode == "fst" ? SparseMode::kFst : mode == "sste" ? SparseMode::kSste : SparseMode::kDense;
  m.sparse_linears = parse_sparse_linears(get("sparse_linears"));
  m.mask_freq = i32("mask_freq");
  m.decay_alpha = float(number("decay_alpha"));
  m.gemms.forward = boolean("sparse_forward");
  m.gemms.input_grad = boolean("sparse_input_grad");
  m.gemms.weight_grad = boolean("sparse_weight_grad");
  m.weight_dtype = parse_dtype(get("weight_dtype").c_str());
  m.seed = u64("model_seed");
  c.batch = i32("batch");
  c.seq = i32("seq");
  c.grad_accum = i32("grad_accum");
  c.steps = i64("steps");
  c.lr = float(number("lr"));
  c.min_lr = float(number("min_lr"));
  c.warmup = i64("warmup");
  c.weight_decay = float(number("weight_decay"));
  c.beta1 = float(number("beta1"));
  c.beta2 = float(number("beta2"));
  c.grad_clip = float(number("grad_clip"));
  c.dense_fraction = number("dense_fraction");
  c.eval_every = i64("eval_every");
  c.eval_batches = i32("eval_batches");
  c.ckpt_every = i64("ckpt_every");
  c.seed = u64("seed");
  c.label = get("label");
  return c;
}

// ---- The training loop ----------------------------------------------------------------------
namespace {


// Cosine decay from lr to min_lr after a linear warm-up.
float learning_rate(const TrainConfig& c, int64_t step) {
  if (step < c.warmup) return c.lr * float(step + 1) / float(c.warmup);
  const double span = double(std::max<int64_t>(1, c.steps - c.warmup));
  const double progress = std::min(1.0, double(step - c.warmup) / span);
  return c.min_lr + float(0.5 * (1.0 + std::cos(3.14159265358979323846 * progress))) * (c.lr - c.min_lr);
}

std::string duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) / 60) % 60);
  return buf;
}

void validate(const TrainConfig& c) {
  S24_CHECK(c.batch > 0 && c.seq > 0 && c.grad_accum > 0 && c.steps > 0, kValue,
            "train: batch, seq, grad_accum and steps must be positive");
  S24_CHECK(c.seq <= c.model.max_seq, kValue, "train: seq (", c.seq, ") exceeds the model's max_seq (", c.model.max_seq, ")");
  S24_CHECK(c.model.mode == SparseMode::kDense || !c.model.gemms.weight_grad || (int64_t(c.batch) * c.seq) % 4 == 0,
            kShape, "train: batch x seq (", int64_t(c.batch) * c.seq,
            ") must be divisible by 4: MVUE24 prunes the output gradient along the tokens");
  S24_CHECK(c.lr > 0 && c.min_lr >= 0 && c.min_lr <= c.lr, kValue, "train: need 0 <= min_lr <= lr and lr > 0");
  S24_CHECK(c.warmup >= 0 && c.eval_every >= 0 && c.ckpt_every >= 0 && c.eval_batches > 0, kValue,
            "train: warmup, eval_every and ckpt_every must be >= 0 and eval_batches > 0");
  S24_CHECK(c.dense_fraction >= 0 && c.dense_fraction < 1, kValue, "train: dense_fraction must be in [0, 1)");
  S24_CHECK(std::isfinite(c.grad_clip) && c.grad_clip > 0, kValue, "train: the gradient clip must be finite and > 0, got ",
            c.grad_clip);
  S24_CHECK(c.weight_decay >= 0 && c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1, kValue,
            "train: need weight_decay >= 0 and betas in [0, 1)");
  S24_CHECK(c.val_fraction > 0 && c.val_fraction < 1, kValue, "train: val_fraction must be in (0, 1)");
}

struct Run {
  TrainConfig config;
  TokenData data;
  TokenSplit split;
  std::unique_ptr<Gpt2> model;
  std::unique_ptr<AdamW> opt;
};

double evaluate(Gpt2& model, const TokenSpan& val, const TrainConfig& c) {
  model.refresh_sparse_weights();  // the weights the last optimizer step wrote
  const EvalBatches batches(val, c.batch, c.seq, c.eval_batches);
  std::vector<int32_t> x(size_t(c.batch) * size_t(c.seq)), y(x.size());
  double sum = 0;
  for (int64_t i = 0; i < batches.size(); ++i) {
    batches.batch(i, x.data(), y.data());
    sum += model.forward(x.data(), y.data(), c.batch, c.seq);
  }
  return sum / double(batches.size());
}

std::string checkpoint_path(const TrainConfig& c) { return (std::filesystem::path(c.out_dir) / "checkpoint.bin").string(); }

void save(const Run& r, int64_t next_step) {
  std::map<std::string, std::string> blobs;
  for (auto& [k, v] : r.model->save()) blobs[k] = std::move(v);
  std::ostringstream os;
  r.opt->save(os);
  blobs["optim.adamw"] = os.str();
  blobs["trainer.next_step"] = std::to_string(next_step);
  write_checkpoint(checkpoint_path(r.config), to_json(r.config), blobs);
}

}  // namespace

TrainResult train(const TrainConfig& config, bool resume) {
  Run r;
  r.config = config;
  TrainConfig& c = r.config;
  if (c.label.empty()) c.label = sparse_mode_name(c.model.mode);
  r.data = load_tokens(c.data, c.format);
  c.format = r.data.format;
  if (c.model.vocab <= 0) c.model.vocab = r.data.vocab_hint;
  S24_CHECK(c.model.vocab >= r.data.vocab_hint, kValue, "train: the data holds token ids up to ",
            r.data.vocab_hint - 1, " but the model's vocabulary is ", c.model.vocab);
  if (c.model.mode != SparseMode::kDense && c.dense_fraction > 0)
    c.model.dense_from_step = c.steps - int64_t(std::llround(double(c.steps) * c.dense_fraction));
  validate(c);
  r.split = split(r.data.tokens, c.val_fraction);
  const BatchSampler sampler(r.split.train, c.batch, c.seq, c.seed, "the training split of " + c.data);
  (void)EvalBatches(r.split.val, c.batch, c.seq, c.eval_batches, "the validation split of " + c.data);

  try {
    std::filesystem::create_directories(c.out_dir);
  } catch (const std::filesystem::filesystem_error& e) {
    S24_FAIL(kIO, "train: cannot create the output folder ", c.out_dir, ": ", e.code().message());
  }
  const std::string ckpt = checkpoint_path(c), metrics_path = (std::filesystem::path(c.out_dir) / "metrics.jsonl").string();
  r.model = std::make_unique<Gpt2>(c.model);
  AdamWConfig oc;
  oc.lr = c.lr;
  oc.beta1 = c.beta1;
  oc.beta2 = c.beta2;
  oc.weight_decay = c.weight_decay;
  r.opt = std::make_unique<AdamW>(oc);
  r.model->add_parameters(*r.opt);

  int64_t start = 0;
  if (resume) {
    const Checkpoint ck = read_checkpoint(ckpt);
    S24_CHECK(ck.config_json == to_json(c), kValue, "train --resume: ", ckpt,
              " was written by a run with another configuration.\n  checkpoint: ", ck.config_json, "\n  this run:   ",
              to_json(c));
    std::vector<std::pair<std::string, std::string>> blobs(ck.blobs.begin(), ck.blobs.end());
    r.model->load(blobs);
    std::istringstream is(ck.blob("optim.adamw"));
    r.opt->load(is);
    S24_CHECK(is.peek() == std::char_traits<char>::eof(), kIO, "train --resume: ", ckpt,
              ": optim.adamw has bytes after the optimizer's state");
    const std::string& next = ck.blob("trainer.next_step");
    const auto [end, ec] = std::from_chars(next.data(), next.data() + next.size(), start);
    S24_CHECK(ec == std::errc() && end == next.data() + next.size() && start >= 0 && start <= c.steps, kIO,
              "train --resume: ", ckpt, ": trainer.next_step \"", next, "\" is not a step in [0, ", c.steps, "]");
    std::fprintf(stderr, "resuming %s at step %lld\n", ckpt.c_str(), (long long)start);
  } else {
    std::error_code ec;
    S24_CHECK(!std::filesystem::exists(ckpt, ec), kIO, "train: ", ckpt,
              " already exists; continue it with --resume or choose another --out (it is never overwritten by a new run)");
  }
  MetricsLog log(metrics_path, resume);
  if (!resume)
    log.write({{"params", double(r.model->num_parameters())}, {"sparse_extra_bytes", double(r.model->sparse_extra_bytes())}},
              {{"label", c.label}, {"config", to_json(c)}});
  std::fprintf(stderr, "%s: %lld parameters, %s linears %s, %lld train / %lld val tokens from %s\n", c.label.c_str(),
               (long long)r.model->num_parameters(), sparse_linears_name(c.model.sparse_linears),
               sparse_mode_name(c.model.mode), (long long)r.split.train.size, (long long)r.split.val.size, c.data.c_str());

  const bool tty = isatty(fileno(stderr));
  const int64_t tokens_per_step = int64_t(c.batch) * c.seq * c.grad_accum;
  std::vector<int32_t> x(size_t(c.batch) * size_t(c.seq)), y(x.size());
  TrainResult res;
  const auto t0 = std::chrono::steady_clock::now();
  double train_loss = NAN;
  const int64_t end = c.stop_after >= 0 ? std::min(c.steps, c.stop_after) : c.steps;
  for (int64_t step = start; step < end; ++step) {
    const auto ts = std::chrono::steady_clock::now();
    r.model->begin_step(step);
    r.model->zero_grad();
    double loss = 0;
    for (int micro = 0; micro < c.grad_accum; ++micro) {
      sampler.batch(step * c.grad_accum + micro, x.data(), y.data());
      loss += r.model->forward(x.data(), y.data(), c.batch, c.seq);
      r.model->backward(1.f / float(c.grad_accum), mix_seed(c.seed ^ mix_seed(uint64_t(step * c.grad_accum + micro))));
    }
    train_loss = loss / c.grad_accum;
    S24_CHECK(std::isfinite(train_loss), kValue, "train: the loss became ", train_loss, " at step ", step,
              " (lower --lr, or check the data)");
    const double grad_norm = clip_grad_norm(r.model->grads(), c.grad_clip);
    const float lr = learning_rate(c, step);
    r.opt->step(lr);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tps = double(tokens_per_step) * double(step + 1 - start) / elapsed;
    const double eta = elapsed / double(step + 1 - start) * double(c.steps - step - 1);
    std::vector<std::pair<std::string, double>> row = {{"step", double(step)},   {"train_loss", train_loss},
                                                      {"lr", lr},                {"grad_norm", grad_norm},
                                                      {"tokens_per_s", tps},     {"step_seconds", secs}};
    const double flips = r.model->mean_flip_rate();
    if (std::isfinite(flips)) row.push_back({"flip_rate", flips});
    const bool last = step + 1 == c.steps;
    if ((c.eval_every && (step + 1) % c.eval_every == 0) || last) {
      const double val = evaluate(*r.model, r.split.val, c);
      row.push_back({"val_loss", val});
      res.val_loss = val;
      std::fprintf(stderr, "%sstep %lld/%lld | train %.4f | val %.4f | lr %.2e | %.0f tok/s | ETA %s\n",
                   tty ? "\r\033[K" : "", (long long)step + 1, (long long)c.steps, train_loss, val, lr, tps,
                   duration(eta).c_str());
    } else if (tty) {
      std::fprintf(stderr, "\r\033[Kstep %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s", (long long)step + 1,
                   (long long)c.steps, train_loss, lr, tps, duration(eta).c_str());
    } else if ((step + 1) % std::max<int64_t>(1, c.steps / 20) == 0) {
      std::fprintf(stderr, "step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s\n", (long long)step + 1,
                   (long long)c.steps, train_loss, lr, tps, duration(eta).c_str());
    }
    log.write(row);
    if ((c.ckpt_every && (step + 1) % c.ckpt_every == 0) || last || step + 1 == end) save(r, step + 1);
    res.tokens_per_second = tps;
  }
  res.steps = end;
  res.train_loss = train_loss;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (start >= end) res.val_loss = evaluate(*r.model, r.split.val, c);
  return res;
}

std::string sample(const std::string& checkpoint, const std::string& prompt, int tokens, float temperature,
                   uint64_t seed) {
  S24_CHECK(tokens >= 0 && temperature >= 0 && std::isfinite(temperature), kValue,
            "sample: tokens must be >= 0 and the temperature finite and >= 0");
  const Checkpoint ck = read_checkpoint(checkpoint);
  const TrainConfig c = config_from_json(ck.config_json);
  // The configuration must describe the weights the file holds before a model of its size is
  // built: the embedding's shape, and blocks 0 .. layers - 1 and no more.
  const std::vector<int64_t> wte = tensor_blob_shape(ck.blob("model.wte"), "model.wte");
  const bool wte_matches = wte.size() == 2 && wte[0] == c.model.vocab && wte[1] == c.model.channels;
  S24_CHECK(wte_matches, kIO, checkpoint, ": model.wte is ",
            shape_text(wte.data(), int(wte.size())), " but the configuration says ", c.model.vocab, " x ",
            c.model.channels);
  auto block = [&](int l) { return ck.has("model.h" + std::to_string(l) + ".ln1.w"); };
  S24_CHECK(block(c.model.layers - 1) && !block(c.model.layers), kIO, checkpoint, ": the configuration says ",
            c.model.layers, " layers, the file holds another number");
  Gpt2 model(c.model);
  std::vector<std::pair<std::string, std::string>> blobs(ck.blobs.begin(), ck.blobs.end());
  model.load(blobs);
  const bool bytes = c.format == TokenFormat::kText;  // a byte-level model: text in, text out
  std::vector<int32_t> ctx;
  if (bytes) {
    for (unsigned char ch : prompt) ctx.push_back(ch);
  } else {
    std::istringstream is(prompt);
    for (std::string word; is >> word;) {
      int32_t id = -1;
      const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
      S24_CHECK(ec == std::errc() && end == word.data() + word.size() && id >= 0 && id < c.model.vocab, kValue,
                "sample: this model reads its prompt as token ids separated by spaces; \"", word,
                "\" is not an id in [0, ", c.model.vocab, ")");
      ctx.push_back(id);
    }
  }
  if (ctx.empty()) ctx.push_back(bytes ? '\n' : 0);
  std::mt19937_64 rng(seed);
  std::string out;
  for (int i = 0; i < tokens; ++i) {
    const int T = int(std::min<size_t>(ctx.size(), size_t(c.model.max_seq)));
    const std::vector<int32_t> window(ctx.end() - T, ctx.end());
    model.forward(window.data(), nullptr, 1, T);
    const float* p = model.probs(0, T - 1);
    int next = 0;
    if (temperature == 0) {
      for (int v = 1; v < c.model.vocab; ++v)
        if (p[v] > p[next]) next = v;
    } else {
      // p^(1/T), computed in log space relative to the most likely token (never all zero).
      double top = 0;
      for (int v = 0; v < c.model.vocab; ++v) top = std::max(top, double(p[v]));
      std::vector<double> w(size_t(c.model.vocab));
      for (int v = 0; v < c.model.vocab; ++v)
        w[size_t(v)] = p[v] > 0 ? std::exp((std::log(double(p[v])) - std::log(top)) / temperature) : 0.0;
      next = std::discrete_distribution<int>(w.begin(), w.end())(rng);
    }
    ctx.push_back(next);
    out += bytes ? std::string(1, char(next)) : std::to_string(next) + " ";
  }
  return out;
}

}  // namespace sparse24::trainer
