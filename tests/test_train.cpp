// The GPT-2 trainer: the loss falls in every mode, a resumed run equals an uninterrupted one,
// bad data and checkpoints get clear errors, and the whole model's gradient matches finite
// differences.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "sparse24/sparse24.h"
#include "test_util.h"
#include "trainer/checkpoint.h"
#include "trainer/gpt2.h"
#include "trainer/metrics.h"
#include "trainer/train.h"

namespace sparse24::trainer {
namespace {

namespace fs = std::filesystem;
using test::test_dir;

// A small corpus with structure a tiny model learns quickly.
std::string write_corpus(const fs::path& dir) {
  const char* lines[] = {"the cat sat on the mat. ", "a dog ran in the park. ", "we like to read books. ",
                         "it is a sunny day today. ", "the bird can sing a song. "};
  std::string text;
  for (int i = 0; i < 400; ++i) text += lines[(i * 7 + i / 3) % 5];
  const fs::path p = dir / "corpus.txt";
  std::ofstream(p) << text;
  return p.string();
}

TrainConfig tiny(const std::string& data, const fs::path& out, SparseMode mode) {
  TrainConfig c;
  c.data = data;
  c.out_dir = out.string();
  c.model.layers = 2;
  c.model.heads = 2;
  c.model.channels = 32;
  c.model.max_seq = 16;
  c.model.mode = mode;
  c.model.mask_freq = 5;
  c.seq = 16;
  c.batch = 4;
  c.steps = 40;
  c.lr = 3e-3f;
  c.min_lr = 3e-4f;
  c.warmup = 5;
  c.eval_every = 20;
  c.eval_batches = 4;
  return c;
}

TEST(Train, LossFallsInEveryMode) {
  const fs::path dir = test_dir();
  const std::string data = write_corpus(dir);
  for (SparseMode mode : {SparseMode::kDense, SparseMode::kFst, SparseMode::kSste}) {
    const TrainConfig c = tiny(data, dir / sparse_mode_name(mode), mode);
    const TrainResult r = train(c, false);
    const std::vector<MetricsRow> rows = read_metrics((dir / sparse_mode_name(mode) / "metrics.jsonl").string());
    double first = NAN;
    for (const MetricsRow& row : rows)
      if (row.has("train_loss")) {
        first = row.get("train_loss");
        break;
      }
    EXPECT_NEAR(first, std::log(256.0), 0.3) << sparse_mode_name(mode);  // uniform over bytes at first
    EXPECT_LT(r.val_loss, first - 1.5) << sparse_mode_name(mode);
    EXPECT_LT(r.train_loss, first - 1.5) << sparse_mode_name(mode);
  }
}

TEST(Train, ResumedRunEqualsUninterrupted) {
  const fs::path dir = test_dir();
  const std::string data = write_corpus(dir);
  for (SparseMode mode : {SparseMode::kDense, SparseMode::kFst}) {
    TrainConfig whole = tiny(data, dir / (std::string("whole-") + sparse_mode_name(mode)), mode);
    whole.steps = 14;
    whole.dense_fraction = mode == SparseMode::kFst ? 0.2 : 0.0;
    whole.label = "run";
    train(whole, false);
    TrainConfig part = whole;
    part.out_dir = (dir / (std::string("part-") + sparse_mode_name(mode))).string();
    part.stop_after = 7;  // interrupted after step 7 (a mask update at step 5, dense from step 11)
    train(part, false);
    part.stop_after = -1;
    train(part, true);
    const Checkpoint a = read_checkpoint(whole.out_dir + "/checkpoint.bin");
    const Checkpoint b = read_checkpoint(part.out_dir + "/checkpoint.bin");
    ASSERT_EQ(a.blobs.size(), b.blobs.size());
    for (const auto& [name, blob] : a.blobs) EXPECT_TRUE(b.blob(name) == blob) << sparse_mode_name(mode) << ": " << name;
  }
}

TEST(Train, BadInputsGetClearErrors) {
  const fs::path dir = test_dir();
  const std::string data = write_corpus(dir);
  test::expect_error([&] { train(tiny((dir / "missing.txt").string(), dir / "a", SparseMode::kDense), false); },
                     ErrorKind::kIO, "missing.txt");
  {
    std::ofstream f(dir / "odd.bin", std::ios::binary);
    f.write("abc", 3);
  }
  test::expect_error([&] { train(tiny((dir / "odd.bin").string(), dir / "b", SparseMode::kDense), false); },
                     ErrorKind::kIO, "odd.bin");
  // A finished run's checkpoint is never overwritten by a new run.
  TrainConfig c = tiny(data, dir / "c", SparseMode::kDense);
  c.steps = 2;
  train(c, false);
  const std::string ckpt = c.out_dir + "/checkpoint.bin";
  std::string before;
  {
    std::ifstream f(ckpt, std::ios::binary);
    before.assign(std::istreambuf_iterator<char>(f), {});
  }
  test::expect_error([&] { train(c, false); }, ErrorKind::kIO, "--resume");
  // Resuming with another configuration names the mismatch.
  TrainConfig other = c;
  other.lr = 1e-2f;
  test::expect_error([&] { train(other, true); }, ErrorKind::kValue, "another configuration");
  // A corrupt checkpoint is reported, not used, and left as it is.
  std::string corrupt = before;
  corrupt[corrupt.size() / 2] ^= 0x5A;
  { std::ofstream(ckpt, std::ios::binary) << corrupt; }
  c.steps = 4;
  TrainConfig c4 = c;
  test::expect_error([&] { train(c4, true); }, ErrorKind::kIO, "checksum");
  std::ifstream f(ckpt, std::ios::binary);
  EXPECT_TRUE(std::string(std::istreambuf_iterator<char>(f), {}) == corrupt);
  // Token ids beyond the model's vocabulary.
  write_nanogpt_tokens((dir / "big.bin").string(), std::vector<int32_t>(200, 300));
  TrainConfig v = tiny((dir / "big.bin").string(), dir / "d", SparseMode::kDense);
  v.model.vocab = 256;
  test::expect_error([&] { train(v, false); }, ErrorKind::kValue, "vocabulary");
}

// A checkpoint whose checksum is right but whose contents are not (hand-edited, or written by a
// diverged run) fails with an error that names what is wrong, before anything large is allocated.
TEST(Train, EditedCheckpointsGetClearErrors) {
  const fs::path dir = test_dir();
  TrainConfig c = tiny(write_corpus(dir), dir / "e", SparseMode::kDense);
  c.steps = 2;
  train(c, false);
  const std::string path = c.out_dir + "/checkpoint.bin";
  const Checkpoint good = read_checkpoint(path);
  const std::string edited = (dir / "edited.bin").string();
  auto with_config = [&](const std::vector<std::pair<std::string, std::string>>& edits) {
    Checkpoint ck = good;
    for (const auto& [from, to] : edits) {
      const size_t at = ck.config_json.find(from);
      ASSERT_NE(at, std::string::npos) << from;
      ck.config_json.replace(at, from.size(), to);
    }
    write_checkpoint(edited, ck);
  };
  auto sample_edited = [&] { trainer::sample(edited, "the ", 5, 0.f, 1); };
  with_config({{"\"layers\": 2", "\"layers\": 1.5"}});
  test::expect_error(sample_edited, ErrorKind::kIO, "\"layers\" must be an integer");
  with_config({{"\"vocab\": 256", "\"vocab\": 1e+300"}});
  test::expect_error(sample_edited, ErrorKind::kIO, "\"vocab\" must be an integer");
  with_config({{"\"mode\": \"dense\"", "\"mode\": \"bogus\""}});
  test::expect_error(sample_edited, ErrorKind::kIO, "unknown mode \"bogus\"");
  // Sizes that the weights in the file do not have are refused before a model of that size is
  // built (a 38 KB file claiming 2^40 parameters allocated without bound); one the file does
  // have but no machine here can hold names the memory it needs.
  with_config({{"\"vocab\": 256", "\"vocab\": 16777216"}, {"\"channels\": 32", "\"channels\": 65536"}});
  test::expect_error(sample_edited,
                     ErrorKind::kIO,
                     "model.wte is [256 x 32] but the configuration says 16777216 x 65536");
  with_config({{"\"layers\": 2", "\"layers\": 100000"}});
  test::expect_error(sample_edited, ErrorKind::kIO, "the configuration says 100000 layers");
  with_config({{"\"layers\": 2", "\"layers\": 1"}});
  test::expect_error(sample_edited, ErrorKind::kIO, "the configuration says 1 layers");
  GptConfig huge;
  huge.vocab = 1 << 24;
  huge.channels = 1 << 16;
  test::expect_error([&] { Gpt2 g(huge); }, ErrorKind::kValue, "GB and this machine has");
  // Non-finite weights.
  Checkpoint nan = good;
  Tensor wte = tensor_from_blob(nan.blob("model.wte"), "model.wte");
  wte.data<float>()[7] = NAN;
  nan.blobs["model.wte"] = tensor_to_blob(wte.view());
  write_checkpoint(edited, nan);
  test::expect_error(sample_edited, ErrorKind::kIO, "model.wte holds a non-finite value (nan) at element 7");
  // Bytes after a layer's or the optimizer's state.
  Checkpoint extra = good;
  extra.blobs["model.h0.qkv"] += "x";
  write_checkpoint(edited, extra);
  test::expect_error(sample_edited, ErrorKind::kIO, "model.h0.qkv has bytes after the layer's state");
  extra = good;
  extra.blobs["optim.adamw"] += "x";
  write_checkpoint(path, extra);
  test::expect_error([&] { train(c, true); }, ErrorKind::kIO, "optim.adamw has bytes after the optimizer's state");
  // The step to resume from: a whole number in [0, steps].
  for (const std::string next : {"abc", "2abc", "1e3", "-5", "3", "99999999999999999999"}) {
    SCOPED_TRACE(next);
    Checkpoint ck = good;
    ck.blobs["trainer.next_step"] = next;
    write_checkpoint(path, ck);
    test::expect_error([&] { train(c, true); },
                       ErrorKind::kIO, "trainer.next_step \"" + next + "\" is not a step in [0, 2]");
  }
}

// A model of token ids reads its prompt as ids, and says which word is not one.
TEST(Train, TokenPromptsAreIds) {
  const fs::path dir = test_dir();
  std::vector<int32_t> ids(2000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7) % 50);
  write_nanogpt_tokens((dir / "t.bin").string(), ids);
  TrainConfig c = tiny((dir / "t.bin").string(), dir / "t", SparseMode::kDense);
  c.model.vocab = 64;
  c.steps = 2;
  train(c, false);
  const std::string ckpt = c.out_dir + "/checkpoint.bin";
  EXPECT_FALSE(trainer::sample(ckpt, "1 2 3", 4, 0.f, 1).empty());
  for (const std::string bad : {"x", "64", "-1", "99999999999999"})
    test::expect_error([&] { trainer::sample(ckpt, "1 2 " + bad + " 3", 4, 0.f, 1); },
                       ErrorKind::kValue, "\"" + bad + "\" is not an id in [0, 64)");
}

// The whole model's gradient (dense, a tiny configuration) against central finite differences.
TEST(Train, WholeModelGradientMatchesFiniteDifferences) {
  GptConfig m;
  m.vocab = 11;
  m.max_seq = 6;
  m.layers = 2;
  m.heads = 2;
  m.channels = 8;
  m.seed = 3;
  Gpt2 model(m);
  const int B = 2, T = 6;
  std::vector<int32_t> x(B * T), y(B * T);
  for (int i = 0; i < B * T; ++i) {
    x[size_t(i)] = (i * 5 + 1) % m.vocab;
    y[size_t(i)] = (i * 3 + 2) % m.vocab;
  }
  model.zero_grad();
  model.forward(x.data(), y.data(), B, T);
  model.backward(1.f, 0);
  const std::vector<TensorView> params = model.parameters(), grads = model.grads();
  ASSERT_EQ(params.size(), grads.size());
  int checked = 0;
  for (size_t p = 0; p < params.size(); ++p) {
    float* w = static_cast<float*>(params[p].data);
    const float* g = static_cast<const float*>(grads[p].data);
    const int64_t n = params[p].numel();
    for (int64_t i : {int64_t(0), n / 2, n - 1}) {
      const float keep = w[i], eps = 2e-3f;
      w[i] = keep + eps;
      const double up = model.forward(x.data(), y.data(), B, T);
      w[i] = keep - eps;
      const double down = model.forward(x.data(), y.data(), B, T);
      w[i] = keep;
      const double fd = (up - down) / (2.0 * eps);
      EXPECT_NEAR(g[i], fd, 2e-3 + 2e-2 * std::fabs(fd)) << "parameter " << p << " element " << i;
      ++checked;
    }
  }
  EXPECT_GT(checked, 50);
}

TEST(Train, SampleAndConfigRoundTrip) {
  const fs::path dir = test_dir();
  TrainConfig c = tiny(write_corpus(dir), dir / "s", SparseMode::kFst);
  c.steps = 3;
  train(c, false);
  const TrainConfig back = config_from_json(to_json(c));
  EXPECT_EQ(to_json(back), to_json(c));
  TrainConfig big = c;
  big.seed = 9007199254740993ull;  // 2^53 + 1: not a double
  big.label = "tab\there";
  EXPECT_EQ(config_from_json(to_json(big)).seed, big.seed);
  EXPECT_EQ(config_from_json(to_json(big)).label, big.label);
  const std::string a = sample(c.out_dir + "/checkpoint.bin", "the ", 20, 0.8f, 5);
  const std::string b = sample(c.out_dir + "/checkpoint.bin", "the ", 20, 0.8f, 5);
  EXPECT_EQ(a.size(), 20u);
  EXPECT_EQ(a, b);  // seeded
}

}  // namespace
}  // namespace sparse24::trainer
