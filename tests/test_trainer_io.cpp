// tests/test_trainer_io.cpp: the trainer's input/output modules: token files and sampling,
// checkpoints and tensor blobs, the JSONL metrics log, PNG files and plots.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "trainer/checkpoint.h"
#include "trainer/data.h"
#include "trainer/metrics.h"
#include "trainer/plot.h"
#include "sparse24/sparse24.h"
#include "test_util.h"

namespace sparse24::trainer {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::test_dir;
using test::write_file;

size_t count_files(const fs::path& dir) {
  return size_t(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

template <typename T>
std::string le(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Expects fn() to throw sparse24::Error of `kind` whose message names `subject` (when given) and
// contains every word.
template <typename Fn>
void expect_error(Fn&& fn, ErrorKind kind, const std::string& subject, std::initializer_list<std::string> words) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.kind(), kind) << what;
    if (!subject.empty()) {
      EXPECT_EQ(what.rfind(std::string(error_kind_name(kind)) + ": " + subject, 0), 0u)
          << "message does not start with " << subject << ": " << what;
    }
    for (const std::string& w : words)
      EXPECT_NE(what.find(w), std::string::npos) << "\"" << w << "\" missing in: " << what;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a sparse24::Error: " << e.what();
    return;
  }
  ADD_FAILURE() << "no sparse24::Error thrown";
}
#define EXPECT_S24_ERROR(stmt, kind, subject, ...) \
  do {                                             \
    SCOPED_TRACE(#stmt);                           \
    expect_error([&] { stmt; }, ErrorKind::kind, subject, {__VA_ARGS__}); \
  } while (0)

// An llm.c shard header: magic, version, count, then zeros.
std::string llmc_header(int32_t magic, int32_t version, int32_t count) {
  std::vector<int32_t> h(256, 0);
  h[0] = magic;
  h[1] = version;
  h[2] = count;
  return raw(h);
}

// ---- Token files -------------------------------------------------------------------------------

TEST(TrainerIoData, NanoGptRoundTrip) {
  const fs::path dir = test_dir();
  const std::vector<int32_t> tokens = {0, 1, 50256, 65535, 7, 300, 2};
  const std::string path = (dir / "train.bin").string();
  write_nanogpt_tokens(path, tokens);
  EXPECT_EQ(read_file(path), raw(std::vector<uint16_t>(tokens.begin(), tokens.end())));  // raw uint16 LE
  for (TokenFormat f : {TokenFormat::kAuto, TokenFormat::kNanoGpt}) {
    const TokenData d = load_tokens(path, f);
    EXPECT_EQ(d.tokens, tokens);
    EXPECT_EQ(d.format, TokenFormat::kNanoGpt);
    EXPECT_EQ(d.vocab_hint, 65536);
    EXPECT_EQ(d.source, path);
  }
  // A hand-made file, and vocab_hint = max + 1.
  const std::string p2 = write_file(dir / "small.bin", raw(std::vector<uint16_t>{3, 1, 4, 1, 5}));
  const TokenData d = load_tokens(p2);
  EXPECT_EQ(d.tokens, (std::vector<int32_t>{3, 1, 4, 1, 5}));
  EXPECT_EQ(d.vocab_hint, 6);
  EXPECT_EQ(count_files(dir), 2u);  // no temporary files left
}

TEST(TrainerIoData, LlmcShardRoundTrip) {
  const fs::path dir = test_dir();
  std::vector<int32_t> tokens(3000);
  std::mt19937 rng(3);
  for (int32_t& t : tokens) t = int32_t(rng() % 50257);
  const std::string path = (dir / "fineweb_train_000001.bin").string();
  write_llmc_tokens(path, tokens);
  const std::string bytes = read_file(path);
  ASSERT_EQ(bytes.size(), 1024 + 2 * tokens.size());
  EXPECT_EQ(bytes.substr(0, 1024), llmc_header(20240520, 1, 3000));
  for (TokenFormat f : {TokenFormat::kAuto, TokenFormat::kLlmc}) {
    const TokenData d = load_tokens(path, f);
    EXPECT_EQ(d.tokens, tokens);
    EXPECT_EQ(d.format, TokenFormat::kLlmc);
    EXPECT_EQ(d.vocab_hint, *std::max_element(tokens.begin(), tokens.end()) + 1);
  }
  // A hand-made shard.
  const std::string p2 = write_file(dir / "s.bin", llmc_header(20240520, 1, 3) + raw(std::vector<uint16_t>{9, 8, 7}));
  EXPECT_EQ(load_tokens(p2).tokens, (std::vector<int32_t>{9, 8, 7}));
}

TEST(TrainerIoData, TextIsBytes) {
  const fs::path dir = test_dir();
  const std::string text = "h\xC3\xA9llo\n\x01\xFF";  // UTF-8 e-acute, a control byte, 0xFF
  for (const char* name : {"input.txt", "README", "data.bin.txt"}) {
    const std::string path = write_file(dir / name, text);
    const TokenData d = load_tokens(path);
    EXPECT_EQ(d.format, TokenFormat::kText) << name;
    EXPECT_EQ(d.vocab_hint, 256);
    ASSERT_EQ(d.tokens.size(), text.size());
    for (size_t i = 0; i < text.size(); ++i) EXPECT_EQ(d.tokens[i], int32_t(static_cast<unsigned char>(text[i])));
  }
  // An explicit format overrides the extension: a .bin read as text, a .txt read as nanoGPT.
  const std::string bin = write_file(dir / "x.bin", "abcd");
  EXPECT_EQ(load_tokens(bin, TokenFormat::kText).tokens, (std::vector<int32_t>{'a', 'b', 'c', 'd'}));
  EXPECT_EQ(load_tokens((dir / "input.txt").string(), TokenFormat::kText).tokens.size(), text.size());
  const std::string txt = write_file(dir / "y.txt", raw(std::vector<uint16_t>{258, 2}));
  EXPECT_EQ(load_tokens(txt, TokenFormat::kNanoGpt).tokens, (std::vector<int32_t>{258, 2}));
}

TEST(TrainerIoData, FormatNames) {
  for (TokenFormat f : {TokenFormat::kAuto, TokenFormat::kNanoGpt, TokenFormat::kLlmc, TokenFormat::kText})
    EXPECT_EQ(parse_token_format(token_format_name(f)), f);
  EXPECT_EQ(parse_token_format("bin"), TokenFormat::kNanoGpt);
  EXPECT_EQ(parse_token_format("shard"), TokenFormat::kLlmc);
  EXPECT_S24_ERROR(parse_token_format("parquet"), kValue, "", "parquet", "auto, nanogpt, llmc or text");
}

TEST(TrainerIoData, MalformedFiles) {
  const fs::path dir = test_dir();
  const auto file = [&](const char* name, const std::string& bytes) { return write_file(dir / name, bytes); };
  const std::string missing = (dir / "missing.bin").string();
  EXPECT_S24_ERROR(load_tokens(missing), kIO, missing, "cannot open");

  // Raw nanoGPT.
  std::string p = file("odd.bin", "abc");
  EXPECT_S24_ERROR(load_tokens(p), kIO, p, "odd size", "3 bytes");
  p = file("empty.bin", "");
  EXPECT_S24_ERROR(load_tokens(p), kIO, p, "empty file");
  EXPECT_S24_ERROR(load_tokens(p, TokenFormat::kNanoGpt), kIO, p, "empty file");

  // llm.c shards.
  EXPECT_S24_ERROR(load_tokens(p, TokenFormat::kLlmc), kIO, p, "empty file");
  p = file("notshard.bin", raw(std::vector<uint16_t>(600, 5)));
  EXPECT_S24_ERROR(load_tokens(p, TokenFormat::kLlmc), kIO, p, "bad magic", "20240520");
  p = file("tiny.bin", "ab");
  EXPECT_S24_ERROR(load_tokens(p, TokenFormat::kLlmc), kIO, p, "bad magic");
  p = file("version.bin", llmc_header(20240520, 2, 2) + raw(std::vector<uint16_t>{1, 2}));
  EXPECT_S24_ERROR(load_tokens(p), kIO, p, "unsupported llm.c shard version 2");
  p = file("header.bin", llmc_header(20240520, 1, 2).substr(0, 600));
  EXPECT_S24_ERROR(load_tokens(p), kIO, p, "truncated llm.c shard header", "600 bytes");
  p = file("short.bin", llmc_header(20240520, 1, 5) + raw(std::vector<uint16_t>{1, 2, 3}));
  EXPECT_S24_ERROR(load_tokens(p), kIO, p, "truncated", "header says 5 tokens", "1034");
  p = file("long.bin", llmc_header(20240520, 1, 2) + raw(std::vector<uint16_t>{1, 2, 3}));
  EXPECT_S24_ERROR(load_tokens(p), kIO, p, "size mismatch", "header says 2 tokens", "2 trailing bytes");
  p = file("negative.bin", llmc_header(20240520, 1, -4));
  EXPECT_S24_ERROR(load_tokens(p), kIO, p, "negative token count -4");
  p = file("zero.bin", llmc_header(20240520, 1, 0));
  EXPECT_S24_ERROR(load_tokens(p), kIO, p, "no tokens");

  // Text.
  p = file("empty.txt", "");
  EXPECT_S24_ERROR(load_tokens(p), kIO, p, "empty file");

  // The writers refuse tokens that do not fit uint16.
  const std::string out = (dir / "w.bin").string();
  EXPECT_S24_ERROR(write_nanogpt_tokens(out, {1, 65536}), kValue, out, "token 1 = 65536");
  EXPECT_S24_ERROR(write_llmc_tokens(out, {-1}), kValue, out, "token 0 = -1");
  EXPECT_FALSE(fs::exists(out));
}

// ---- Split and sampling ------------------------------------------------------------------------

std::vector<int32_t> iota_tokens(int n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[size_t(i)] = i;
  return t;
}

TEST(TrainerIoSampler, Split) {
  const std::vector<int32_t> tokens = iota_tokens(1000);
  const TokenSplit s = split(tokens, 0.1);
  EXPECT_EQ(s.train.data, tokens.data());
  EXPECT_EQ(s.train.size, 900);
  EXPECT_EQ(s.val.data, tokens.data() + 900);  // the validation part is the last fraction
  EXPECT_EQ(s.val.size, 100);
  EXPECT_EQ(split(iota_tokens(10), 0.3).val.size, 3);
  EXPECT_EQ(split(iota_tokens(7), 0.5).val.size, 4);  // round(3.5) = 4
  const TokenSplit none = split(tokens, 0.0);
  EXPECT_EQ(none.train.size, 1000);
  EXPECT_EQ(none.val.size, 0);
  for (double bad : {-0.1, 1.0, 1.5, double(NAN)})
    EXPECT_S24_ERROR(split(tokens, bad), kValue, "", "validation fraction", "[0, 1)");
}

TEST(TrainerIoSampler, DeterministicPerSeedAndStep) {
  const std::vector<int32_t> tokens = iota_tokens(5000);
  constexpr int B = 4, T = 16;
  const BatchSampler a(tokens, B, T, 1234), b(tokens, B, T, 1234), c(tokens, B, T, 1235);
  std::vector<int32_t> in1(B * T), tg1(B * T), in2(B * T), tg2(B * T);
  std::set<std::vector<int32_t>> distinct;
  for (int64_t step : {int64_t(0), int64_t(1), int64_t(2), int64_t(3), int64_t(1000), int64_t(1) << 33}) {
    a.batch(step, in1.data(), tg1.data());
    b.batch(step, in2.data(), tg2.data());
    EXPECT_EQ(in1, in2) << "step " << step;  // same (seed, step): same batch, other instance
    EXPECT_EQ(tg1, tg2);
    a.batch(step, in2.data(), tg2.data());  // and again: no hidden state
    EXPECT_EQ(in1, in2);
    distinct.insert(in1);
    c.batch(step, in2.data(), tg2.data());
    EXPECT_NE(in1, in2) << "another seed gives the same batch at step " << step;
  }
  EXPECT_EQ(distinct.size(), 6u);  // different steps differ
  // Rows are contiguous runs starting at offset(), and targets are the inputs shifted by one.
  for (int64_t step = 0; step < 50; ++step) {
    a.batch(step, in1.data(), tg1.data());
    for (int r = 0; r < B; ++r) {
      const int64_t o = a.offset(step, r);
      ASSERT_GE(o, 0);
      ASSERT_LE(o, 5000 - T - 1);
      for (int t = 0; t < T; ++t) {
        ASSERT_EQ(in1[size_t(r * T + t)], tokens[size_t(o + t)]);
        ASSERT_EQ(tg1[size_t(r * T + t)], tokens[size_t(o + t + 1)]);
      }
    }
  }
}

// The documented rule, written out independently: Philox4x32-10 keyed by the seed, counter
// (step, step >> 32, row, 0x64617461 ^ attempt), Lemire's multiply-shift with rejection.
int64_t reference_offset(uint64_t seed, uint64_t step, uint32_t row, uint64_t m) {
  for (uint32_t attempt = 0;; ++attempt) {
    const Philox4 r = philox4x32_10({{uint32_t(step), uint32_t(step >> 32), row, 0x64617461u ^ attempt}},
                                    uint32_t(seed), uint32_t(seed >> 32));
    for (int h = 0; h < 2; ++h) {
      const uint64_t x = uint64_t(r.v[2 * h]) | uint64_t(r.v[2 * h + 1]) << 32;
      // 128-bit product from 32-bit halves.
      const uint64_t xl = x & 0xFFFFFFFFu, xh = x >> 32, ml = m & 0xFFFFFFFFu, mh = m >> 32;
      const uint64_t ll = xl * ml, lh = xl * mh, hl = xh * ml, hh = xh * mh;
      const uint64_t mid = (ll >> 32) + (lh & 0xFFFFFFFFu) + (hl & 0xFFFFFFFFu);
      const uint64_t low = (ll & 0xFFFFFFFFu) | (mid << 32);
      const uint64_t high = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
      const uint64_t threshold = (0 - m) % m;
      if (low < threshold) continue;
      return int64_t(high);
    }
  }
}

TEST(TrainerIoSampler, MatchesTheDocumentedRule) {
  for (const int n : {18, 1000, 123457}) {
    const std::vector<int32_t> tokens = iota_tokens(n);
    const int T = 16;
    for (const uint64_t seed : {uint64_t(0), uint64_t(42), uint64_t(0xDEADBEEFCAFEF00Dull)}) {
      const BatchSampler s(tokens, 8, T, seed);
      for (int64_t step = 0; step < 40; ++step)
        for (int r = 0; r < 8; ++r)
          ASSERT_EQ(s.offset(step, r), reference_offset(seed, uint64_t(step), uint32_t(r), uint64_t(n - T)))
              << "n " << n << " seed " << seed << " step " << step << " row " << r;
    }
  }
}

TEST(TrainerIoSampler, OffsetsCoverTheRangeUniformly) {
  // n - T = 5 possible offsets (0..4): all appear, with about equal counts.
  const std::vector<int32_t> tokens = iota_tokens(21);
  const BatchSampler s(tokens, 8, 16, 7);
  std::vector<int> counts(5, 0);
  for (int64_t step = 0; step < 2500; ++step)
    for (int r = 0; r < 8; ++r) ++counts[size_t(s.offset(step, r))];
  for (int c : counts) EXPECT_NEAR(c, 4000, 300);  // 20000 draws; sd ~ 57
  // Exactly T + 1 tokens: the only offset is 0.
  const std::vector<int32_t> exact = iota_tokens(17);
  const BatchSampler one(exact, 3, 16, 9);
  for (int64_t step = 0; step < 20; ++step) EXPECT_EQ(one.offset(step, 2), 0);
}

TEST(TrainerIoSampler, Errors) {
  const std::vector<int32_t> tokens = iota_tokens(16);
  EXPECT_S24_ERROR(BatchSampler(tokens, 2, 16, 1, "train split"), kShape, "train split", "16 tokens", "T + 1 = 17");
  EXPECT_S24_ERROR(BatchSampler(TokenSpan(), 2, 4, 1), kShape, "training data", "0 tokens");
  EXPECT_S24_ERROR(BatchSampler(tokens, 0, 4, 1), kValue, "", "batch size B = 0");
  EXPECT_S24_ERROR(BatchSampler(tokens, 2, -1, 1), kValue, "", "sequence length T = -1");
  const BatchSampler s(tokens, 2, 4, 1);
  EXPECT_S24_ERROR(s.offset(-1, 0), kValue, "", "step -1");
  EXPECT_S24_ERROR(s.offset(0, 2), kValue, "", "row 2");
}

TEST(TrainerIoSampler, EvalBatchesAreSequential) {
  const std::vector<int32_t> tokens = iota_tokens(1000);
  const TokenSplit sp = split(tokens, 0.2);  // val = tokens 800..999
  constexpr int B = 3, T = 10;
  const EvalBatches ev = eval_batches(sp.val, B, T, 0);
  EXPECT_EQ(ev.size(), (199 / T) / B);  // 19 sequences -> 6 full batches
  std::vector<int32_t> in(B * T), tg(B * T);
  for (int64_t i = 0; i < ev.size(); ++i) {
    ev.batch(i, in.data(), tg.data());
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        ASSERT_EQ(in[size_t(b * T + t)], 800 + (i * B + b) * T + t);
        ASSERT_EQ(tg[size_t(b * T + t)], 800 + (i * B + b) * T + t + 1);
      }
  }
  EXPECT_EQ(eval_batches(sp.val, B, T, 4).size(), 4);
  EXPECT_EQ(eval_batches(sp.val, B, T, 100).size(), 6);
  EXPECT_EQ(eval_batches(iota_tokens(31), 3, 10, 0).size(), 1);  // exactly B * T + 1 tokens
  EXPECT_S24_ERROR(eval_batches(iota_tokens(30), 3, 10, 0), kShape, "validation data", "30 tokens",
                   "B * T + 1 = 31");
  EXPECT_S24_ERROR(eval_batches(split(tokens, 0.0).val, 1, 1, 0), kShape, "validation data", "0 tokens");
  EXPECT_S24_ERROR(ev.batch(6, in.data(), tg.data()), kValue, "", "evaluation batch 6");
}

// ---- Checkpoints -------------------------------------------------------------------------------

// Bit-by-bit CRC-64/XZ, independent of the library's table-driven one.
uint64_t slow_crc64(const std::string& s) {
  uint64_t c = ~uint64_t(0);
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0xC96C5795D7870F42ull : c >> 1;
  }
  return ~c;
}

std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = char(rng());
  return s;
}

TEST(TrainerIoCheckpoint, Crc64) {
  EXPECT_EQ(crc64("123456789", 9), 0x995DC9BBDF1939FAull);  // the CRC-64/XZ check value
  EXPECT_EQ(crc64("", 0), 0u);
  const std::string s = random_bytes(1000, 1);
  EXPECT_EQ(crc64(s.data(), s.size()), slow_crc64(s));
  for (size_t cut : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(333), size_t(1000)})
    EXPECT_EQ(crc64(s.data() + cut, s.size() - cut, crc64(s.data(), cut)), slow_crc64(s));  // chaining
}

TEST(TrainerIoCheckpoint, ExactLayout) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "c.ckpt").string();
  write_checkpoint(path, "{\"n\":1}", {{"b", "xyz"}, {"a", ""}});
  std::string expect("S24CKPT\0", 8);
  expect += le<uint32_t>(1) + le<uint64_t>(7) + "{\"n\":1}" + le<uint32_t>(2);
  expect += le<uint32_t>(1) + "a" + le<uint64_t>(0);  // name order
  expect += le<uint32_t>(1) + "b" + le<uint64_t>(3) + "xyz";
  expect += le<uint64_t>(slow_crc64(expect));
  EXPECT_EQ(read_file(path), expect);
}

TEST(TrainerIoCheckpoint, RoundTrip) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "run.ckpt").string();
  const std::string config = "{\n  \"model\": \"gpt2\", \"note\": \"caf\xC3\xA9 \\u00e9\", \"lr\": 6e-4\n}";
  std::map<std::string, std::string> blobs = {
      {"wte", random_bytes(1 << 20, 2)},
      {"empty", ""},
      {"zeros", std::string(100, '\0')},
      {"opt/m/h.0.attn", random_bytes(777, 3)},
      {"\xE2\x9C\x93 unicode name", "x"}};
  write_checkpoint(path, config, blobs);
  const Checkpoint c = read_checkpoint(path);
  EXPECT_EQ(c.config_json, config);
  EXPECT_EQ(c.blobs, blobs);
  EXPECT_EQ(c.source, path);
  EXPECT_TRUE(c.has("wte"));
  EXPECT_EQ(c.blob("zeros"), std::string(100, '\0'));
  EXPECT_S24_ERROR(c.blob("nope"), kIO, path, "no blob 'nope'");

  // Overwriting with a new complete checkpoint of the same run, from a Checkpoint.
  Checkpoint next = c;
  next.blobs["wte"] = "new";
  next.config_json = "";
  write_checkpoint(path, next);
  const Checkpoint d = read_checkpoint(path);
  EXPECT_EQ(d.blobs.at("wte"), "new");
  EXPECT_EQ(d.config_json, "");
  EXPECT_EQ(count_files(dir), 1u);  // no temporary files left

  // No blobs at all.
  write_checkpoint(path, "{}", {});
  EXPECT_TRUE(read_checkpoint(path).blobs.empty());
}

TEST(TrainerIoCheckpoint, EveryFlippedByteIsDetected) {
  const fs::path dir = test_dir();
  const std::string good = (dir / "good.ckpt").string();
  write_checkpoint(good, "{\"a\": 1}", {{"w", "0123456789"}, {"m", "abc"}});
  const std::string bytes = read_file(good);
  const std::string path = (dir / "bad.ckpt").string();
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (unsigned char x : {0x01, 0x80, 0xFF}) {
      std::string b = bytes;
      b[i] = char(b[i] ^ x);
      write_file(path, b);
      SCOPED_TRACE("byte " + std::to_string(i) + " ^ " + std::to_string(x));
      try {
        read_checkpoint(path);
        ADD_FAILURE() << "corruption not detected";
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kIO) << e.what();
        EXPECT_EQ(std::string(e.what()).rfind("file error: " + path + ": ", 0), 0u) << e.what();
      }
    }
  }
  // A flipped byte in the configuration or in a blob: the checksum catches it.
  for (const std::string& needle : {std::string("\"a\""), std::string("0123"), std::string("abc")}) {
    std::string b = bytes;
    b[b.find(needle) + 1] ^= 0x20;
    write_file(path, b);
    EXPECT_S24_ERROR(read_checkpoint(path), kIO, path, "checksum mismatch: file corrupt");
  }
  // And in the stored checksum itself.
  std::string b = bytes;
  b.back() ^= 1;
  write_file(path, b);
  EXPECT_S24_ERROR(read_checkpoint(path), kIO, path, "checksum mismatch");
}

TEST(TrainerIoCheckpoint, TruncatedAtEveryLength) {
  const fs::path dir = test_dir();
  const std::string good = (dir / "good.ckpt").string();
  write_checkpoint(good, "{\"a\": 1}", {{"w", "0123456789"}, {"m", "abc"}});
  const std::string bytes = read_file(good);
  const std::string path = (dir / "cut.ckpt").string();
  write_file(path, "");
  EXPECT_S24_ERROR(read_checkpoint(path), kIO, path, "empty file");
  for (size_t n = 1; n < bytes.size(); ++n) {
    write_file(path, bytes.substr(0, n));
    SCOPED_TRACE("length " + std::to_string(n));
    EXPECT_S24_ERROR(read_checkpoint(path), kIO, path, "truncated");
  }
  // Bytes appended after a complete checkpoint.
  write_file(path, bytes + std::string(8, '\0'));
  EXPECT_S24_ERROR(read_checkpoint(path), kIO, path, "unexpected bytes");
}

TEST(TrainerIoCheckpoint, ForeignFilesAndVersions) {
  const fs::path dir = test_dir();
  std::string p = write_file(dir / "a.npy", std::string("\x93NUMPY\x01\x00", 8) + std::string(100, ' '));
  EXPECT_S24_ERROR(read_checkpoint(p), kIO, p, "not a sparse24 checkpoint");
  p = write_file(dir / "short", "S24X");
  EXPECT_S24_ERROR(read_checkpoint(p), kIO, p, "not a sparse24 checkpoint");
  const std::string missing = (dir / "missing.ckpt").string();
  EXPECT_S24_ERROR(read_checkpoint(missing), kIO, missing, "cannot open");

  // A later version is refused before anything else is read.
  const std::string good = (dir / "good.ckpt").string();
  write_checkpoint(good, "{}", {{"w", "x"}});
  std::string bytes = read_file(good);
  bytes[8] = 2;
  p = write_file(dir / "v2.ckpt", bytes);
  EXPECT_S24_ERROR(read_checkpoint(p), kIO, p, "unsupported version 2");
}

// A checkpoint made by hand (lengths of our choosing) with a correct checksum.
std::string handmade(const std::string& body_after_version) {
  std::string b = std::string("S24CKPT\0", 8) + le<uint32_t>(1) + body_after_version;
  return b + le<uint64_t>(slow_crc64(b));
}

TEST(TrainerIoCheckpoint, CorruptLengthsNeverAllocate) {
  const fs::path dir = test_dir();
  const std::string p = (dir / "h.ckpt").string();
  // Huge lengths: refused from the file size, with no attempt to allocate them.
  write_file(p, handmade(le<uint64_t>(uint64_t(1) << 62) + "{}" + le<uint32_t>(0)));
  EXPECT_S24_ERROR(read_checkpoint(p), kIO, p, "truncated", "the configuration");
  write_file(p, handmade(le<uint64_t>(0) + le<uint32_t>(0xFFFFFFFFu)));
  EXPECT_S24_ERROR(read_checkpoint(p), kIO, p, "truncated", "4294967295 blobs");
  write_file(p, handmade(le<uint64_t>(0) + le<uint32_t>(1) + le<uint32_t>(0xFFFFFFF0u) + "name" + le<uint64_t>(0)));
  EXPECT_S24_ERROR(read_checkpoint(p), kIO, p, "truncated", "the name of blob 0");
  write_file(p, handmade(le<uint64_t>(0) + le<uint32_t>(1) + le<uint32_t>(1) + "w" + le<uint64_t>(~uint64_t(0)) + "data"));
  EXPECT_S24_ERROR(read_checkpoint(p), kIO, p, "truncated", "blob 'w'");
  // Structure errors with a valid checksum.
  write_file(p, handmade(le<uint64_t>(0) + le<uint32_t>(1) + le<uint32_t>(0) + le<uint64_t>(0)));
  EXPECT_S24_ERROR(read_checkpoint(p), kIO, p, "empty name");
  const std::string blob = le<uint32_t>(1) + "w" + le<uint64_t>(1) + "x";
  write_file(p, handmade(le<uint64_t>(0) + le<uint32_t>(2) + blob + blob));
  EXPECT_S24_ERROR(read_checkpoint(p), kIO, p, "duplicate blob 'w'");
  write_file(p, handmade(le<uint64_t>(0) + le<uint32_t>(1) + blob));  // and the well-formed one reads
  EXPECT_EQ(read_checkpoint(p).blobs.at("w"), "x");
}

TEST(TrainerIoCheckpoint, BadArgumentsCreateNothing) {
  const fs::path dir = test_dir();
  const std::string p = (dir / "x.ckpt").string();
  EXPECT_S24_ERROR(write_checkpoint(p, "{}", {{"", "x"}}), kValue, p, "non-empty name");
  EXPECT_EQ(count_files(dir), 0u);
}

TEST(TrainerIoCheckpoint, FailedWriteLeavesTheOldFile) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "run.ckpt").string();
  write_checkpoint(path, "{\"old\": true}", {{"w", random_bytes(1000, 5)}});
  const std::string old = read_file(path);

  // (a) No such directory: nothing is created.
  const std::string nodir = (dir / "no" / "such" / "dir" / "run.ckpt").string();
  EXPECT_S24_ERROR(write_checkpoint(nodir, "{}", {}), kIO, nodir, "cannot create temporary file",
                   "file left unchanged");
  EXPECT_FALSE(fs::exists(dir / "no"));

  // (b) The write itself fails midway (file size limit: works as root too): the old file stays
  // byte for byte, and the temporary file is removed.
  {
    struct rlimit saved;
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
    auto previous = std::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of the signal
    struct rlimit small = saved;
    small.rlim_cur = 64 * 1024;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    EXPECT_S24_ERROR(write_checkpoint(path, "{\"new\": true}", {{"w", random_bytes(1 << 20, 6)}}), kIO, path,
                     "failed", "file left unchanged");
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
    std::signal(SIGXFSZ, previous);
  }
  EXPECT_EQ(read_file(path), old);
  EXPECT_EQ(count_files(dir), 1u);

  // (c) The target is a directory: the rename fails, nothing changes.
  fs::create_directories(dir / "adir");
  const std::string adir = (dir / "adir").string();
  EXPECT_S24_ERROR(write_checkpoint(adir, "{}", {}), kIO, adir, "rename failed");
  EXPECT_TRUE(fs::is_directory(dir / "adir"));
  EXPECT_EQ(count_files(dir), 2u);
  EXPECT_EQ(read_checkpoint(path).config_json, "{\"old\": true}");
}

TEST(TrainerIoCheckpoint, ReadOnlyDirectory) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: permissions do not stop writes";
  const fs::path dir = test_dir();
  const std::string path = (dir / "run.ckpt").string();
  write_checkpoint(path, "{}", {{"w", "old"}});
  const std::string old = read_file(path);
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  EXPECT_S24_ERROR(write_checkpoint(path, "{}", {{"w", "new"}}), kIO, path, "cannot create temporary file");
  fs::permissions(dir, fs::perms::owner_all);
  EXPECT_EQ(read_file(path), old);
}

// ---- Tensor blobs ------------------------------------------------------------------------------

Tensor random_tensor(std::initializer_list<int64_t> shape, DType dtype, uint64_t seed) {
  Tensor t = Tensor::empty(shape, dtype);
  std::mt19937_64 rng(seed);
  uint8_t* p = static_cast<uint8_t*>(t.view().data);
  for (int64_t i = 0; i < t.numel() * dtype_size(dtype); ++i) p[i] = uint8_t(rng());
  return t;
}

std::string memory(const TensorView& t) {
  return std::string(static_cast<const char*>(t.data), size_t(t.numel()) * size_t(dtype_size(t.dtype)));
}

TEST(TrainerIoCheckpoint, TensorBlobsRoundTrip) {
  uint64_t seed = 1;
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kI8, DType::kF8E4M3, DType::kF8E5M2, DType::kU8,
                   DType::kI32}) {
    for (const Tensor& t : {random_tensor({5}, dt, seed++), random_tensor({3, 7}, dt, seed++),
                            random_tensor({2, 3, 4}, dt, seed++), random_tensor({2, 1, 3, 2}, dt, seed++),
                            random_tensor({0, 4}, dt, seed++)}) {
      SCOPED_TRACE(t.view().describe());
      const std::string blob = tensor_to_blob(t);
      EXPECT_EQ(blob.size(), 12 + 8 * size_t(t.view().rank) + memory(t).size());
      EXPECT_EQ(blob.substr(0, 4), "S24T");
      const Tensor back = tensor_from_blob(blob, "blob");
      EXPECT_EQ(back.dtype(), dt);
      ASSERT_EQ(back.view().rank, t.view().rank);
      for (int i = 0; i < t.view().rank; ++i) EXPECT_EQ(back.view().shape[i], t.view().shape[i]);
      EXPECT_TRUE(back.view().is_contiguous());
      EXPECT_EQ(memory(back), memory(t));
    }
  }
  // The dtype codes are fixed.
  EXPECT_EQ(tensor_to_blob(random_tensor({1}, DType::kBF16, 1)).substr(4, 4), le<uint32_t>(2));
  EXPECT_EQ(tensor_to_blob(random_tensor({1}, DType::kI32, 1)).substr(4, 4), le<uint32_t>(7));

  // A strided view (a transpose) is stored in row-major order of its logical shape.
  const Tensor m = random_tensor({3, 5}, DType::kF32, 99);
  const TensorView mt = m.view().t();  // 5 x 3
  const Tensor back = tensor_from_blob(tensor_to_blob(mt), "blob");
  ASSERT_EQ(back.rows(), 5);
  ASSERT_EQ(back.cols(), 3);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(*back.view().at<float>(i, j), *mt.at<float>(i, j));

  // Into an existing tensor, including a column-major one.
  Tensor dst = Tensor::matrix(5, 3, DType::kF32, Layout::kColMajor);
  tensor_from_blob_into(tensor_to_blob(mt), dst, "ckpt: blob 'w'");
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(*dst.view().at<float>(i, j), *mt.at<float>(i, j));
  EXPECT_S24_ERROR(tensor_from_blob_into(tensor_to_blob(m), dst, "ckpt: blob 'w'"), kShape, "ckpt: blob 'w'",
                   "[3 x 5]", "fp32[5 x 3");
  const Tensor h = random_tensor({5, 3}, DType::kF16, 3);
  EXPECT_S24_ERROR(tensor_from_blob_into(tensor_to_blob(h), dst, "ckpt: blob 'w'"), kDType, "ckpt: blob 'w'",
                   "fp16", "fp32");
}

TEST(TrainerIoCheckpoint, MalformedTensorBlobs) {
  const std::string good = tensor_to_blob(random_tensor({2, 3}, DType::kF32, 1));
  const std::string what = "run.ckpt: blob 'w'";
  EXPECT_S24_ERROR(tensor_from_blob("", what), kIO, what, "not a tensor blob", "too short");
  EXPECT_S24_ERROR(tensor_from_blob("XXXX" + good.substr(4), what), kIO, what, "bad magic");
  std::string b = good;
  b.replace(4, 4, le<uint32_t>(8));
  EXPECT_S24_ERROR(tensor_from_blob(b, what), kIO, what, "unknown dtype code 8");
  for (uint32_t rank : {0u, 5u}) {
    b = good;
    b.replace(8, 4, le<uint32_t>(rank));
    EXPECT_S24_ERROR(tensor_from_blob(b, what), kIO, what, "rank " + std::to_string(rank));
  }
  EXPECT_S24_ERROR(tensor_from_blob(good.substr(0, 20), what), kIO, what, "truncated in its shape");
  b = good;
  b.replace(12, 8, le<int64_t>(-2));
  EXPECT_S24_ERROR(tensor_from_blob(b, what), kIO, what, "negative dimension -2");
  EXPECT_S24_ERROR(tensor_from_blob(good.substr(0, good.size() - 1), what), kIO, what, "holds 23 bytes",
                   "needs 24");
  EXPECT_S24_ERROR(tensor_from_blob(good + "x", what), kIO, what, "holds 25 bytes");
  b = good;
  b.replace(12, 8, le<int64_t>(int64_t(1) << 40));
  b.replace(20, 8, le<int64_t>(int64_t(1) << 40));
  EXPECT_S24_ERROR(tensor_from_blob(b, what), kIO, what, "more than 2^63");
}

// ---- Metrics -----------------------------------------------------------------------------------

TEST(TrainerIoMetrics, LineFormat) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "m.jsonl").string();
  {
    MetricsLog log(path, false);
    log.write({{"step", 10}, {"loss", 2.5}, {"lr", 0.1}, {"bad", NAN}, {"inf", -INFINITY}},
              {{"phase", "train"}, {"q", "a\"b\\c\nd\te\x01"}});
    EXPECT_EQ(read_file(path),  // flushed per line: visible before the log is closed
              "{\"step\": 10, \"loss\": 2.5, \"lr\": 0.1, \"bad\": null, \"inf\": null, \"phase\": \"train\", "
              "\"q\": \"a\\\"b\\\\c\\nd\\te\\u0001\"}\n");
    EXPECT_S24_ERROR(log.write({{"a", 1}}, {{"a", "x"}}), kValue, path, "'a' given twice");
  }
  const std::vector<MetricsRow> rows = read_metrics(path);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].get("step"), 10);
  EXPECT_TRUE(std::isnan(rows[0].get("bad")));
  EXPECT_TRUE(std::isnan(rows[0].get("inf")));
  EXPECT_TRUE(rows[0].has("bad"));
  EXPECT_FALSE(rows[0].has("phase"));
  EXPECT_EQ(rows[0].strings.at("phase"), "train");
  EXPECT_EQ(rows[0].strings.at("q"), "a\"b\\c\nd\te\x01");
  EXPECT_EQ(rows[0].line, 1);
  EXPECT_EQ(rows[0].get("missing", -1.0), -1.0);
}

TEST(TrainerIoMetrics, NumbersRoundTripExactly) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "m.jsonl").string();
  std::vector<double> values = {0.0, -0.0, 1.0, 0.1, 1.0 / 3, 6e-4, 1e-300, 4.9e-324, 1.7976931348623157e308,
                                123456789012345678.0, -2.5e-7, 3.0517578125e-05};
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200; ++i) {
    const uint64_t bits = rng();
    double d;
    std::memcpy(&d, &bits, 8);
    if (std::isfinite(d)) values.push_back(d);
  }
  {
    MetricsLog log(path, false);
    for (double v : values) log.write({{"v", v}});
  }
  const std::vector<MetricsRow> rows = read_metrics(path);
  ASSERT_EQ(rows.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const double got = rows[i].get("v");
    EXPECT_EQ(std::memcmp(&got, &values[i], 8), 0) << values[i] << " read back as " << got;
  }
  EXPECT_EQ(json_number(0.1), "0.1");
  EXPECT_EQ(json_number(100), "100");
  EXPECT_EQ(json_number(NAN), "null");
}

TEST(TrainerIoMetrics, TruncatedLastLineIsSkipped) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "m.jsonl").string();
  {
    MetricsLog log(path, false);
    log.write({{"step", 1}, {"loss", 3}});
    log.write({{"step", 2}, {"loss", 2}});
  }
  const std::string complete = read_file(path);
  write_file(path, complete + "{\"step\": 3, \"lo");  // a run killed mid-line
  std::vector<MetricsRow> rows = read_metrics(path);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].get("step"), 2);
  write_file(path, complete + "{\"step\": 3}");  // complete but without its newline: kept
  EXPECT_EQ(read_metrics(path).size(), 3u);
  write_file(path, complete + "\n  \n");  // blank lines
  EXPECT_EQ(read_metrics(path).size(), 2u);

  // Appending cuts the partial line off first, so the new line is whole.
  write_file(path, complete + "{\"step\": 3, \"lo");
  {
    MetricsLog log(path, true);
    log.write({{"step", 3}, {"loss", 1}});
  }
  EXPECT_EQ(read_file(path), complete + "{\"step\": 3, \"loss\": 1}\n");
  rows = read_metrics(path);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2].get("loss"), 1);
  // Appending to a file that is only a partial line, and to a missing file.
  write_file(path, "{\"st");
  MetricsLog(path, true).write({{"a", 1}});
  EXPECT_EQ(read_file(path), "{\"a\": 1}\n");
  const std::string fresh = (dir / "new.jsonl").string();
  MetricsLog(fresh, true).write({{"a", 2}});
  MetricsLog(fresh, true).write({{"a", 3}});
  EXPECT_EQ(read_file(fresh), "{\"a\": 2}\n{\"a\": 3}\n");
  // Not appending truncates.
  MetricsLog(fresh, false).write({{"a", 4}});
  EXPECT_EQ(read_file(fresh), "{\"a\": 4}\n");
}

TEST(TrainerIoMetrics, ParserAndErrors) {
  const fs::path dir = test_dir();
  const std::string path = write_file(
      dir / "m.jsonl",
      "{}\n{ \"a\" :1e3 ,\"b\":-0.5E-2,\"t\":true,\"f\":false,\"n\":null, \"s\":\"\\u00e9\\ud83d\\ude00\\/\"}\r\n");
  const std::vector<MetricsRow> rows = read_metrics(path);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(rows[0].numbers.empty());
  EXPECT_EQ(rows[1].get("a"), 1000);
  EXPECT_EQ(rows[1].get("b"), -0.005);
  EXPECT_EQ(rows[1].get("t"), 1);
  EXPECT_EQ(rows[1].get("f"), 0);
  EXPECT_TRUE(std::isnan(rows[1].get("n")));
  EXPECT_EQ(rows[1].strings.at("s"), "\xC3\xA9\xF0\x9F\x98\x80/");
  EXPECT_EQ(rows[1].line, 2);

  const std::string missing = (dir / "missing.jsonl").string();
  EXPECT_S24_ERROR(read_metrics(missing), kIO, missing, "cannot open");
  const std::pair<const char*, const char*> bad[] = {
      {"{\"a\": 1}\n{\"a\": 1,}\n{\"a\": 2}\n", ":2: malformed metrics line: expected a quoted key"},
      {"{\"a\": [1]}\n", ":1: malformed metrics line: nested"},
      {"{\"a\": 1} x\n", "unexpected text"},
      {"{\"a\": 1.2.3}\n", "malformed number"},
      {"{\"a\": NaN}\n", "expected a value"},
      {"[1]\n", "expected '{'"},
      {"{\"a\": \"x\\q\"}\n", "bad escape"},
      {"{\"a\" 1}\n", "expected ':'"},
      {"{\"a\": 1 \"b\": 2}\n{}\n", "expected ',' or '}'"}};
  for (const auto& [text, words] : bad) {
    write_file(path, text);
    EXPECT_S24_ERROR(read_metrics(path), kIO, path, words);
  }
  const std::string nodir = (dir / "no" / "m.jsonl").string();
  EXPECT_S24_ERROR(MetricsLog(nodir, false), kIO, nodir, "cannot open");
}

// ---- PNG ---------------------------------------------------------------------------------------

// Bit-by-bit CRC-32 (PNG's), independent of the library's.
uint32_t slow_crc32(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
  }
  return ~c;
}

uint32_t be32(const std::string& s, size_t at) {
  return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 | uint32_t(uint8_t(s[at + 2])) << 8 |
         uint32_t(uint8_t(s[at + 3]));
}

struct DecodedPng {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
  int stored_blocks = 0;
};

// Checks a PNG of ours: signature, IHDR, IDAT, IEND with verified CRCs; a zlib stream of stored
// blocks with a verified Adler-32; filter 0 on every row. Returns the pixels.
DecodedPng decode_png(const std::string& png) {
  DecodedPng out;
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  size_t pos = 8;
  std::vector<std::string> types;
  std::string idat;
  while (pos + 12 <= png.size()) {
    const uint32_t len = be32(png, pos);
    const std::string type = png.substr(pos + 4, 4), data = png.substr(pos + 8, len);
    EXPECT_EQ(be32(png, pos + 8 + len), slow_crc32(type + data)) << "chunk " << type;
    types.push_back(type);
    if (type == "IHDR") {
      EXPECT_EQ(len, 13u);
      out.width = int(be32(data, 0));
      out.height = int(be32(data, 4));
      EXPECT_EQ(data.substr(8), std::string("\x08\x02\x00\x00\x00", 5));  // 8-bit RGB, no interlace
    }
    if (type == "IDAT") idat += data;
    pos += 12 + len;
  }
  EXPECT_EQ(pos, png.size());
  EXPECT_EQ(types, (std::vector<std::string>{"IHDR", "IDAT", "IEND"}));
  // zlib header, stored blocks, Adler-32.
  if (idat.size() < 6) {
    ADD_FAILURE() << "IDAT too short";
    return out;
  }
  EXPECT_EQ(uint8_t(idat[0]) & 0x0F, 8);  // deflate
  EXPECT_EQ((uint8_t(idat[0]) * 256 + uint8_t(idat[1])) % 31, 0);
  EXPECT_EQ(uint8_t(idat[1]) & 0x20, 0);  // no preset dictionary
  std::string raw_data;
  size_t p = 2;
  for (bool final = false; !final;) {
    if (p + 5 > idat.size()) {
      ADD_FAILURE() << "truncated deflate stream";
      return out;
    }
    const uint8_t hdr = uint8_t(idat[p]);
    final = hdr & 1;
    EXPECT_EQ((hdr >> 1) & 3, 0) << "not a stored block";
    const uint32_t len = uint8_t(idat[p + 1]) | uint32_t(uint8_t(idat[p + 2])) << 8;
    const uint32_t nlen = uint8_t(idat[p + 3]) | uint32_t(uint8_t(idat[p + 4])) << 8;
    EXPECT_EQ(len ^ 0xFFFFu, nlen);
    raw_data += idat.substr(p + 5, len);
    p += 5 + len;
    ++out.stored_blocks;
  }
  EXPECT_EQ(p + 4, idat.size());
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw_data) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  EXPECT_EQ(be32(idat, p), b << 16 | a) << "Adler-32";
  // Scanlines.
  const size_t row = size_t(out.width) * 3;
  EXPECT_EQ(raw_data.size(), (row + 1) * size_t(out.height));
  for (int y = 0; y < out.height && (row + 1) * size_t(y + 1) <= raw_data.size(); ++y) {
    EXPECT_EQ(raw_data[(row + 1) * size_t(y)], 0) << "filter of row " << y;
    const char* r = raw_data.data() + (row + 1) * size_t(y) + 1;
    out.rgb.insert(out.rgb.end(), r, r + row);
  }
  return out;
}

TEST(TrainerIoPng, EncodeAndDecode) {
  for (auto [w, h] : std::vector<std::pair<int, int>>{{1, 1}, {7, 5}, {300, 100}, {900, 560}}) {
    SCOPED_TRACE(std::to_string(w) + "x" + std::to_string(h));
    std::vector<uint8_t> rgb(size_t(w) * size_t(h) * 3);
    std::mt19937 rng(uint32_t(w * h));
    for (uint8_t& v : rgb) v = uint8_t(rng());
    const DecodedPng d = decode_png(encode_png(w, h, rgb.data()));
    EXPECT_EQ(d.width, w);
    EXPECT_EQ(d.height, h);
    EXPECT_EQ(d.rgb, rgb);
    EXPECT_EQ(d.stored_blocks, int(((size_t(w) * 3 + 1) * size_t(h) + 65534) / 65535));
  }
  EXPECT_S24_ERROR(encode_png(0, 5, nullptr), kValue, "", "0 x 5");
}

TEST(TrainerIoPng, WriteIsAtomic) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "img.png").string();
  const std::vector<uint8_t> rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9};
  write_png(path, 2, 2, rgb.data());
  EXPECT_EQ(read_file(path), encode_png(2, 2, rgb.data()));
  EXPECT_EQ(count_files(dir), 1u);
  const std::string nodir = (dir / "no" / "img.png").string();
  EXPECT_S24_ERROR(write_png(nodir, 2, 2, rgb.data()), kIO, nodir, "cannot create temporary file");
}

// ---- Plots -------------------------------------------------------------------------------------

bool has_color(const DecodedPng& d, Color c) {
  for (size_t i = 0; i + 2 < d.rgb.size(); i += 3)
    if (d.rgb[i] == c.r && d.rgb[i + 1] == c.g && d.rgb[i + 2] == c.b) return true;
  return false;
}

std::vector<Series> noisy_curves() {
  std::mt19937 rng(5);
  std::normal_distribution<double> noise(0, 0.05);
  std::vector<Series> s = {{"dense", {}, palette(0)}, {"2:4 sparse", {}, palette(1)}};
  for (int step = 0; step <= 2000; step += 10) {
    const double base = 3 + 8 * std::exp(-step / 300.0);
    s[0].points.emplace_back(step, base + noise(rng));
    s[1].points.emplace_back(step, base + 0.2 + noise(rng));
  }
  return s;
}

TEST(TrainerIoPlot, CurvesAsPng) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "loss.png").string();
  plot_curves(path, "validation loss", noisy_curves(), "step", "loss");
  const DecodedPng d = decode_png(read_file(path));
  EXPECT_EQ(d.width, 900);
  EXPECT_EQ(d.height, 560);
  EXPECT_TRUE(has_color(d, palette(0)));  // both curves drawn (full-coverage pixels)
  EXPECT_TRUE(has_color(d, palette(1)));
  EXPECT_TRUE(has_color(d, {0x22, 0x22, 0x22}));  // text
  EXPECT_EQ(d.rgb[0], 255);                       // white background at the corner
  size_t white = 0;
  for (size_t i = 0; i < d.rgb.size(); i += 3) white += d.rgb[i] == 255 && d.rgb[i + 1] == 255 && d.rgb[i + 2] == 255;
  EXPECT_GT(white, d.rgb.size() / 3 / 2);  // mostly background

  // Same input, same pixels.
  EXPECT_EQ(render_plot("validation loss", noisy_curves(), "step", "loss"),
            render_plot("validation loss", noisy_curves(), "step", "loss"));
}

TEST(TrainerIoPlot, DegenerateInputs) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "p.png").string();
  PlotOptions small;
  small.width = 320;
  small.height = 200;
  // No series, empty series, a single point, NaN gaps, a constant curve, a very long title.
  plot_curves(path, "", {}, "", "", small);
  EXPECT_EQ(decode_png(read_file(path)).width, 320);
  plot_curves(path, std::string(300, 'T'), {{"empty", {}, palette(0)}, {"one", {{5, 5}}, palette(1)}}, "x", "y");
  EXPECT_TRUE(has_color(decode_png(read_file(path)), palette(1)));  // the single point is a dot
  plot_curves(path, "gaps", {{"g", {{0, 1}, {1, NAN}, {2, 3}, {3, 4}, {INFINITY, 1}, {5, 2}}, palette(2)},
                             {"flat", {{0, 2}, {10, 2}}, palette(3)}},
              "x", "y");
  EXPECT_TRUE(has_color(decode_png(read_file(path)), palette(2)));
  // A fixed y range clips the curves.
  PlotOptions clip;
  clip.y_min = 3;
  clip.y_max = 5;
  plot_curves(path, "clipped", noisy_curves(), "step", "loss", clip);
  EXPECT_EQ(decode_png(read_file(path)).height, 560);

  PlotOptions bad;
  bad.width = 10;
  EXPECT_S24_ERROR(render_plot("", {}, "", "", bad), kValue, "", "plot size 10 x 560");
  bad = PlotOptions();
  bad.x_min = 5;
  bad.x_max = 1;
  EXPECT_S24_ERROR(render_plot("", {}, "", "", bad), kValue, "", "axis range is empty");
  bad = PlotOptions();
  bad.line_width = 0;
  EXPECT_S24_ERROR(render_plot("", {}, "", "", bad), kValue, "", "line width");
  // Ranges that doubles cannot divide into ticks fail at once (they hung, or drew nothing): a span
  // under 1e-12 of the values, one beyond the doubles, subnormal values.
  const std::vector<std::vector<std::pair<double, double>>> undrawable = {
      {{1e17, 1}, {1e17 + 16, 2}}, {{0, 1e308}, {1, -1e308}}, {{-1e308, 1}, {1e308, 2}}, {{0, 5e-324}, {1, 1e-323}}};
  for (const auto& points : undrawable)
    EXPECT_S24_ERROR(render_plot("", {{"s", points, palette(0)}}, "", "", PlotOptions()), kValue, "",
                     "axis range cannot be drawn");
}

TEST(TrainerIoPlot, FromMetricsLogs) {
  const fs::path dir = test_dir();
  fs::create_directories(dir / "run1");
  fs::create_directories(dir / "run2");
  const std::string a = (dir / "run1" / "metrics.jsonl").string(), b = (dir / "run2" / "metrics.jsonl").string();
  {
    MetricsLog log(a, false);
    for (int step = 0; step <= 300; step += 10) {
      log.write({{"step", step}, {"train_loss", 10.0 - step / 50.0}});
      if (step % 100 == 0) log.write({{"step", step}, {"val_loss", 10.5 - step / 50.0}});
    }
    // The run is resumed from its checkpoint at step 200: its rows from 200 on are replaced.
    for (int step = 200; step <= 400; step += 10) {
      log.write({{"step", step}, {"train_loss", 1.0}});
      if (step % 100 == 0) log.write({{"step", step}, {"val_loss", 0.5}});
    }
  }
  {
    MetricsLog log(b, false);
    log.write({{"step", 0}, {"val_loss", 11.0}}, {{"note", "x"}});
    log.write({{"step", 100}, {"val_loss", NAN}});
    log.write({{"step", 200}, {"val_loss", 7.0}});
  }
  MetricsPlotOptions opt;
  std::vector<Series> s = metrics_series({a, b}, opt);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].label, "run1");  // both files are metrics.jsonl: their directories name them
  EXPECT_EQ(s[1].label, "run2");
  EXPECT_EQ(s[0].points, (std::vector<std::pair<double, double>>{{0, 10.5}, {100, 8.5}, {200, 0.5}, {300, 0.5}, {400, 0.5}}));
  EXPECT_EQ(s[1].points, (std::vector<std::pair<double, double>>{{0, 11.0}, {200, 7.0}}));  // NaN skipped

  opt.fields_y = {"train_loss", "val_loss"};
  s = metrics_series({a}, opt);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].label, "train_loss");
  EXPECT_EQ(s[0].points.size(), 41u);  // 0..190 from the first run, 200..400 from the resumed one
  EXPECT_EQ(s[0].points[20], (std::pair<double, double>{200, 1.0}));
  s = metrics_series({a, b}, MetricsPlotOptions{"step", {"train_loss"}, {"d", "s"}, "", "", "", {}});
  EXPECT_EQ(s[0].label, "d");
  EXPECT_EQ(s[1].label, "s (no data)");

  const std::string png = (dir / "val.png").string();
  plot_from_metrics(png, {a, b}, "step", "val_loss");
  const DecodedPng d = decode_png(read_file(png));
  EXPECT_EQ(d.width, 900);
  EXPECT_TRUE(has_color(d, palette(0)));
  EXPECT_TRUE(has_color(d, palette(1)));

  EXPECT_S24_ERROR(plot_from_metrics(png, {a}, "step", "nothing"), kValue, png, "no rows with both 'step' and 'nothing'");
  EXPECT_S24_ERROR(plot_from_metrics(png, {a, b}, "step", "val_loss", {"one"}), kValue, png, "1 labels for 2");
  EXPECT_S24_ERROR(plot_from_metrics(png, {}, "step", "val_loss"), kValue, png, "no metrics files");
  const std::string missing = (dir / "missing.jsonl").string();
  EXPECT_S24_ERROR(plot_from_metrics(png, {missing}), kIO, missing, "cannot open");
}

}  // namespace
}  // namespace sparse24::trainer
