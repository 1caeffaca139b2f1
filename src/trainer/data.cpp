// Token datasets: see data.h for the formats and the sampling rule.
#include "trainer/data.h"


#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "sparse24/error.h"
#include "sparse24/philox.h"
#include "io/files.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "data.cpp reads little-endian token files in place: a little-endian host is required"
#endif

namespace sparse24::trainer {
namespace {

// Reads exactly n bytes (the size was checked before: a short read means the file changed).
void read_exact(const std::string& path, std::FILE* f, void* dst, size_t n) {
  const size_t got = n ? std::fread(dst, 1, n, f) : 0;
  S24_CHECK(!std::ferror(f), kIO, path, ": read error: ", std::strerror(errno));
  S24_CHECK(got == n, kIO, path, ": truncated: expected ", n, " more bytes, found ", got,
            " (was the file modified while being read?)");
}

// Reads n little-endian uint16 tokens into out, in chunks; returns max id + 1.
int read_u16_tokens(const std::string& path, std::FILE* f, int64_t n, std::vector<int32_t>& out) {
  out.resize(size_t(n));
  std::vector<uint16_t> buf(size_t(1) << 20);
  int max_id = -1;
  for (int64_t done = 0; done < n;) {
    const size_t k = size_t(std::min<int64_t>(n - done, int64_t(buf.size())));
    read_exact(path, f, buf.data(), k * 2);
    for (size_t i = 0; i < k; ++i) {
      out[size_t(done) + i] = buf[i];
      max_id = std::max(max_id, int(buf[i]));
    }
    done += int64_t(k);
  }
  return max_id + 1;
}

__extension__ typedef unsigned __int128 u128;  // GCC/Clang; __extension__: no -Wpedantic warning

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

TokenData load_nanogpt(const std::string& path, std::FILE* f, int64_t size) {
  S24_CHECK(size > 0, kIO, path, ": empty file: no tokens (raw nanoGPT .bin)");
  S24_CHECK(size % 2 == 0, kIO, path, ": odd size (", size,
            " bytes): a raw nanoGPT .bin holds 2-byte uint16 tokens, so its size must be even");
  TokenData d;
  d.vocab_hint = read_u16_tokens(path, f, size / 2, d.tokens);
  d.format = TokenFormat::kNanoGpt;
  return d;
}

TokenData load_llmc(const std::string& path, std::FILE* f, int64_t size) {
  constexpr int64_t kHeaderBytes = kLlmcHeaderInts * 4;
  S24_CHECK(size > 0, kIO, path, ": empty file: not an llm.c token shard");
  int32_t header[kLlmcHeaderInts];
  const size_t got = std::fread(header, 1, size_t(std::min(size, kHeaderBytes)), f);
  S24_CHECK(!std::ferror(f), kIO, path, ": read error: ", std::strerror(errno));
  S24_CHECK(got >= 4 && header[0] == kLlmcMagic, kIO, path,
            ": not an llm.c token shard (bad magic: expected ", kLlmcMagic, " in the first 4 bytes)");
  S24_CHECK(size >= kHeaderBytes, kIO, path, ": truncated llm.c shard header: ", size,
            " bytes, the header alone is ", kHeaderBytes);
  S24_CHECK(header[1] == kLlmcVersion, kIO, path, ": unsupported llm.c shard version ", header[1],
            " (only version ", kLlmcVersion, ", uint16 tokens, is read)");
  const int64_t n = header[2];
  S24_CHECK(n >= 0, kIO, path, ": llm.c shard header has a negative token count ", n);
  S24_CHECK(n > 0, kIO, path, ": llm.c shard holds no tokens (header says 0)");
  const int64_t expected = kHeaderBytes + 2 * n;
  S24_CHECK(size >= expected, kIO, path, ": truncated llm.c shard: header says ", n, " tokens (",
            expected, " bytes with the header), file has ", size, " bytes");
  S24_CHECK(size == expected, kIO, path, ": size mismatch: header says ", n, " tokens (", expected,
            " bytes with the header), file has ", size, " bytes (", size - expected, " trailing bytes)");
  TokenData d;
  d.vocab_hint = read_u16_tokens(path, f, n, d.tokens);
  d.format = TokenFormat::kLlmc;
  return d;
}

TokenData load_text(const std::string& path, std::FILE* f, int64_t size) {
  S24_CHECK(size > 0, kIO, path, ": empty file: no tokens (text)");
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  read_exact(path, f, bytes.data(), bytes.size());
  TokenData d;
  d.tokens.assign(bytes.begin(), bytes.end());
  d.vocab_hint = 256;
  d.format = TokenFormat::kText;
  return d;
}

void check_u16_tokens(const std::string& path, const std::vector<int32_t>& tokens) {
  for (size_t i = 0; i < tokens.size(); ++i)
    S24_CHECK(tokens[i] >= 0 && tokens[i] <= 65535, kValue, path, ": token ", i, " = ", tokens[i],
              " does not fit uint16");
}

}  // namespace

const char* token_format_name(TokenFormat f) {
  switch (f) {
    case TokenFormat::kAuto: return "auto";
    case TokenFormat::kNanoGpt: return "nanogpt";
    case TokenFormat::kLlmc: return "llmc";
    case TokenFormat::kText: return "text";
  }
  return "?";
}

TokenFormat parse_token_format(const std::string& name) {
  if (name == "auto") return TokenFormat::kAuto;
  if (name == "nanogpt" || name == "bin") return TokenFormat::kNanoGpt;
  if (name == "llmc" || name == "shard") return TokenFormat::kLlmc;
  if (name == "text") return TokenFormat::kText;
  S24_FAIL(kValue, "unknown token format '", name, "' (expected auto, nanogpt, llmc or text)");
}

TokenData load_tokens(const std::string& path, TokenFormat format) {
  File file = open_regular_file(path);
  std::FILE* f = file.get();
  const int64_t size = file_size(path, f);
  if (format == TokenFormat::kAuto) {
    format = TokenFormat::kText;
    if (ends_with(path, ".bin")) {
      int32_t magic = 0;
      const size_t got = std::fread(&magic, 1, 4, f);
      S24_CHECK(!std::ferror(f), kIO, path, ": read error: ", std::strerror(errno));
      format = got == 4 && magic == kLlmcMagic ? TokenFormat::kLlmc : TokenFormat::kNanoGpt;
      S24_CHECK(std::fseek(f, 0, SEEK_SET) == 0, kIO, path, ": cannot seek: ", std::strerror(errno));
    }
  }
  TokenData d = format == TokenFormat::kNanoGpt ? load_nanogpt(path, f, size)
                : format == TokenFormat::kLlmc  ? load_llmc(path, f, size)
                                                : load_text(path, f, size);
  d.source = path;
  return d;
}

void write_nanogpt_tokens(const std::string& path, const std::vector<int32_t>& tokens) {
  check_u16_tokens(path, tokens);
  std::vector<uint16_t> u(tokens.begin(), tokens.end());
  AtomicFile out(path);
  out.write(u.data(), u.size() * 2);
  out.commit();
}

void write_llmc_tokens(const std::string& path, const std::vector<int32_t>& tokens) {
  check_u16_tokens(path, tokens);
  S24_CHECK(tokens.size() <= size_t(INT32_MAX), kValue, path, ": ", tokens.size(),
            " tokens do not fit an llm.c shard header (int32 count)");
  int32_t header[kLlmcHeaderInts] = {kLlmcMagic, kLlmcVersion, int32_t(tokens.size())};
  std::vector<uint16_t> u(tokens.begin(), tokens.end());
  AtomicFile out(path);
  out.write(header, sizeof(header));
  out.write(u.data(), u.size() * 2);
  out.commit();
}

TokenSplit split(TokenSpan tokens, double val_fraction) {
  S24_CHECK(val_fraction >= 0.0 && val_fraction < 1.0, kValue, "validation fraction ", val_fraction,
            " is not in [0, 1)");
  S24_CHECK(tokens.size >= 0, kValue, "negative token count ", tokens.size);
  const int64_t n_val = std::min<int64_t>(tokens.size, std::llround(double(tokens.size) * val_fraction));
  const int64_t n_train = tokens.size - n_val;
  return {TokenSpan(tokens.data, n_train), TokenSpan(tokens.data + n_train, n_val)};
}

// ---- BatchSampler ------------------------------------------------------------------------------

BatchSampler::BatchSampler(TokenSpan tokens, int B, int T, uint64_t seed, const std::string& what)
    : tokens_(tokens), B_(B), T_(T), seed_(seed) {
  S24_CHECK(B > 0, kValue, "batch size B = ", B, " must be positive");
  S24_CHECK(T > 0, kValue, "sequence length T = ", T, " must be positive");
  S24_CHECK(tokens.size >= int64_t(T) + 1, kShape, what, " has ", tokens.size,
            " tokens: fewer than T + 1 = ", int64_t(T) + 1, " needed for one sequence of T = ", T,
            " (use more data, a smaller T, or a different validation fraction)");
}

int64_t BatchSampler::offset(int64_t step, int row) const {
  S24_CHECK(step >= 0, kValue, "batch step ", step, " must be >= 0");
  S24_CHECK(row >= 0 && row < B_, kValue, "batch row ", row, " not in [0, ", B_, ")");
  const uint64_t m = uint64_t(tokens_.size - T_);  // number of valid offsets: [0, n - T - 1]
  const uint64_t s = uint64_t(step);
  for (uint32_t attempt = 0;; ++attempt) {
    const Philox4 r = philox4x32_10({{uint32_t(s), uint32_t(s >> 32), uint32_t(row), 0x64617461u ^ attempt}},
                                    uint32_t(seed_), uint32_t(seed_ >> 32));
    for (int half = 0; half < 2; ++half) {
      const uint64_t x = uint64_t(r.v[2 * half]) | uint64_t(r.v[2 * half + 1]) << 32;
      const u128 p = u128(x) * m;
      const uint64_t low = uint64_t(p);
      if (low < m && low < (0 - m) % m) continue;  // Lemire: reject to stay exactly uniform
      return int64_t(p >> 64);
    }
  }
}

void BatchSampler::batch(int64_t step, int32_t* inputs, int32_t* targets) const {
  for (int b = 0; b < B_; ++b) {
    const int32_t* src = tokens_.data + offset(step, b);
    std::memcpy(inputs + int64_t(b) * T_, src, size_t(T_) * 4);
    std::memcpy(targets + int64_t(b) * T_, src + 1, size_t(T_) * 4);
  }
}

// ---- EvalBatches -------------------------------------------------------------------------------

EvalBatches::EvalBatches(TokenSpan tokens, int B, int T, int64_t max_batches, const std::string& what)
    : tokens_(tokens), B_(B), T_(T) {
  S24_CHECK(B > 0, kValue, "batch size B = ", B, " must be positive");
  S24_CHECK(T > 0, kValue, "sequence length T = ", T, " must be positive");
  const int64_t sequences = tokens.size > 0 ? (tokens.size - 1) / T : 0;
  num_batches_ = sequences / B;
  S24_CHECK(num_batches_ > 0, kShape, what, " has ", tokens.size, " tokens: fewer than B * T + 1 = ",
            int64_t(B) * T + 1, " needed for one evaluation batch of B = ", B, " sequences of T = ", T,
            " (use more data, a larger validation fraction, or a smaller B or T)");
  if (max_batches > 0) num_batches_ = std::min(num_batches_, max_batches);
}

void EvalBatches::batch(int64_t i, int32_t* inputs, int32_t* targets) const {
  S24_CHECK(i >= 0 && i < num_batches_, kValue, "evaluation batch ", i, " not in [0, ", num_batches_, ")");
  for (int b = 0; b < B_; ++b) {
    const int32_t* src = tokens_.data + (i * B_ + b) * int64_t(T_);
    std::memcpy(inputs + int64_t(b) * T_, src, size_t(T_) * 4);
    std::memcpy(targets + int64_t(b) * T_, src + 1, size_t(T_) * 4);
  }
}

}  // namespace sparse24::trainer
