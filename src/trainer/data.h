// trainer/data.h: token datasets for the trainer: loading, the train/validation split, and
// stateless batch sampling.
//
// Formats (load_tokens):
//   * kNanoGpt: nanoGPT's raw .bin: little-endian uint16 token ids, no header (the file size must
//     be even).
//   * kLlmc: an llm.c token shard: a header of 256 little-endian int32 (header[0] = 20240520,
//     header[1] = 1 (the version: uint16 tokens), header[2] = the number of tokens N), then N
//     little-endian uint16 tokens; the file size must be exactly 1024 + 2 N.
//   * kText: the bytes of a file (UTF-8 or anything else), each byte one token (vocabulary 256).
//   * kAuto: a ".bin" file whose first four bytes are the llm.c magic is a shard, any other
//     ".bin" is raw nanoGPT, anything else is text. (A raw GPT-2 file cannot start with the magic:
//     its first token would be 54216, beyond GPT-2's 50257 ids.)
// A file with no tokens is an error in every format.
//
// Sampling (BatchSampler) is stateless: the batch of a step is a pure function of (seed, step),
// so a run resumed at step k sees bit for bit the batches it would have seen, with no sampler
// state in the checkpoint. Row b of step s starts at an offset drawn uniformly (exactly: Lemire's
// multiply-shift with rejection) from [0, n - T - 1] with Philox4x32-10:
//   counter = (s low 32 bits, s high 32 bits, b, 0x64617461 ^ attempt), key = (seed low, seed high)
// (0x64617461 = "data" keeps these draws apart from MVUE24's, whose word 3 is 0). Words (0, 1)
// form the 64-bit draw x = w0 | w1 << 32, words (2, 3) a second one; a draw is rejected with
// probability < (n - T) / 2^64, then the next is used (attempt is incremented after both).
// Targets are the inputs shifted by one token.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sparse24::trainer {

enum class TokenFormat { kAuto, kNanoGpt, kLlmc, kText };

// "auto", "nanogpt", "llmc", "text".
const char* token_format_name(TokenFormat f);
// Parses the names above (and the aliases "bin" = nanogpt, "shard" = llmc); throws kValue.
TokenFormat parse_token_format(const std::string& name);

constexpr int32_t kLlmcMagic = 20240520;
constexpr int32_t kLlmcVersion = 1;
constexpr int kLlmcHeaderInts = 256;

struct TokenData {
  std::vector<int32_t> tokens;
  // The smallest vocabulary that holds every token: max id + 1 for the uint16 formats, 256 for
  // text. The model's vocabulary must be at least this (the trainer checks).
  int vocab_hint = 0;
  std::string source;                      // the path read
  TokenFormat format = TokenFormat::kAuto; // the format it was read as (never kAuto)
};

// Reads a token file; every malformed input throws kIO naming the file and the problem.
TokenData load_tokens(const std::string& path, TokenFormat format = TokenFormat::kAuto);

// Writers for tests and tools (atomic, like every file of the library).
void write_nanogpt_tokens(const std::string& path, const std::vector<int32_t>& tokens);
void write_llmc_tokens(const std::string& path, const std::vector<int32_t>& tokens);

// A read-only view of tokens (C++17 has no std::span).
struct TokenSpan {
  const int32_t* data = nullptr;
  int64_t size = 0;
  TokenSpan() = default;
  TokenSpan(const int32_t* d, int64_t n) : data(d), size(n) {}
  TokenSpan(const std::vector<int32_t>& v) : data(v.data()), size(int64_t(v.size())) {}  // NOLINT
  int32_t operator[](int64_t i) const { return data[i]; }
};

struct TokenSplit {
  TokenSpan train;  // the first n - n_val tokens
  TokenSpan val;    // the last n_val = round(n * val_fraction) tokens (empty for 0)
};
// val_fraction must be in [0, 1) (kValue otherwise). Sizes are checked by the samplers.
TokenSplit split(TokenSpan tokens, double val_fraction);

// Random training batches, stateless and deterministic (see the top of this file).
class BatchSampler {
 public:
  // tokens must hold at least T + 1 tokens (kShape naming `what`, e.g. "train split"); B, T > 0.
  // The tokens are not copied: they must outlive the sampler.
  BatchSampler(TokenSpan tokens, int B, int T, uint64_t seed, const std::string& what = "training data");
  // Fills inputs and targets (each B * T, row-major: row b at b * T). step >= 0.
  void batch(int64_t step, int32_t* inputs, int32_t* targets) const;
  // The start offset of row `row` of `step`, in [0, n - T - 1].
  int64_t offset(int64_t step, int row) const;

  int B() const { return B_; }
  int T() const { return T_; }
  uint64_t seed() const { return seed_; }

 private:
  TokenSpan tokens_;
  int B_, T_;
  uint64_t seed_;
};

// Evaluation batches: the split cut into consecutive, non-overlapping sequences of T + 1 tokens
// sharing one token (sequence j reads tokens [j T, j T + T]), B sequences per batch; batch i holds
// sequences i B .. i B + B - 1. Only full batches are used (the last < B sequences are not), at
// most max_batches of them (<= 0: all). At least one batch must fit (kShape naming `what`).
class EvalBatches {
 public:
  EvalBatches(TokenSpan tokens, int B, int T, int64_t max_batches, const std::string& what = "validation data");
  int64_t size() const { return num_batches_; }
  // Batch i in [0, size()): inputs and targets as BatchSampler::batch.
  void batch(int64_t i, int32_t* inputs, int32_t* targets) const;

 private:
  TokenSpan tokens_;
  int B_, T_;
  int64_t num_batches_;
};
inline EvalBatches eval_batches(TokenSpan tokens, int B, int T, int64_t max_batches,
                                const std::string& what = "validation data") {
  return EvalBatches(tokens, B, T, max_batches, what);
}

}  // namespace sparse24::trainer
