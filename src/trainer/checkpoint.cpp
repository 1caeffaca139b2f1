// Checkpoints, tensor blobs and atomic files: see checkpoint.h for the format.
#include "trainer/checkpoint.h"


#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "sparse24/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.cpp writes little-endian data in place: a little-endian host is required"
#endif

namespace sparse24::trainer {

// ---- CRC-64/XZ ---------------------------------------------------------------------------------

namespace {

// Slicing-by-8 tables: t[0] the classic byte table, t[k][i] the CRC of byte i followed by k zeros.
struct Crc64Tables {
  uint64_t t[8][256];
  Crc64Tables() {
    constexpr uint64_t kPoly = 0xC96C5795D7870F42ull;
    for (int i = 0; i < 256; ++i) {
      uint64_t c = uint64_t(i);
      for (int b = 0; b < 8; ++b) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
      t[0][i] = c;
    }
    for (int k = 1; k < 8; ++k)
      for (int i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
  }
};

const Crc64Tables& crc_tables() {
  static const Crc64Tables tables;
  return tables;
}

}  // namespace

uint64_t crc64(const void* data, size_t n, uint64_t crc) {
  const auto& t = crc_tables().t;
  const unsigned char* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    crc ^= w;
    crc = t[7][crc & 0xFF] ^ t[6][(crc >> 8) & 0xFF] ^ t[5][(crc >> 16) & 0xFF] ^
          t[4][(crc >> 24) & 0xFF] ^ t[3][(crc >> 32) & 0xFF] ^ t[2][(crc >> 40) & 0xFF] ^
          t[1][(crc >> 48) & 0xFF] ^ t[0][crc >> 56];
  }
  for (; n; --n, ++p) crc = t[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// ---- Writing -----------------------------------------------------------------------------------

namespace {

// Writes through an AtomicFile while computing the checksum.
class CrcWriter {
 public:
  explicit CrcWriter(AtomicFile& out) : out_(out) {}
  void write(const void* p, size_t n) {
    out_.write(p, n);
    crc_ = crc64(p, n, crc_);
  }
  void u32(uint32_t v) { write(&v, 4); }
  void u64(uint64_t v) { write(&v, 8); }
  uint64_t crc() const { return crc_; }

 private:
  AtomicFile& out_;
  uint64_t crc_ = 0;
};

}  // namespace

void write_checkpoint(const std::string& path, const std::string& config_json,
                      const std::map<std::string, std::string>& blobs) {
  S24_CHECK(blobs.size() <= std::numeric_limits<uint32_t>::max(), kValue, path, ": too many blobs (",
            blobs.size(), ")");
  for (const auto& [name, bytes] : blobs) {
    S24_CHECK(!name.empty(), kValue, path, ": a checkpoint blob needs a non-empty name");
    S24_CHECK(name.size() <= std::numeric_limits<uint32_t>::max(), kValue, path, ": blob name too long");
  }
  AtomicFile out(path);
  CrcWriter w(out);
  w.write(kCheckpointMagic, sizeof(kCheckpointMagic));
  w.u32(kCheckpointVersion);
  w.u64(config_json.size());
  w.write(config_json.data(), config_json.size());
  w.u32(uint32_t(blobs.size()));
  for (const auto& [name, bytes] : blobs) {
    w.u32(uint32_t(name.size()));
    w.write(name.data(), name.size());
    w.u64(bytes.size());
    w.write(bytes.data(), bytes.size());
  }
  const uint64_t crc = w.crc();
  out.write(&crc, 8);
  out.commit();
}

// ---- Reading -----------------------------------------------------------------------------------

namespace {

// Sequential reads of a checkpoint's body (everything before the checksum), with the checksum
// and bounds checks.
class BodyReader {
 public:
  BodyReader(const std::string& path, std::FILE* f, uint64_t body_end)
      : path_(path), f_(f), end_(body_end) {}

  uint64_t remaining() const { return end_ - pos_; }
  uint64_t pos() const { return pos_; }
  uint64_t crc() const { return crc_; }

  // Checks that n bytes of `what` fit before the checksum (before anything is allocated).
  void need(uint64_t n, const std::string& what) const {
    S24_CHECK(n <= remaining(), kIO, path_, ": truncated: ", what, " needs ", n, " bytes at offset ",
              pos_, " but only ", remaining(), " remain before the checksum (file incomplete or corrupt)");
  }
  void read(void* dst, uint64_t n, const std::string& what) {
    need(n, what);
    raw(dst, n);
    crc_ = crc64(dst, size_t(n), crc_);
    pos_ += n;
  }
  uint32_t u32(const std::string& what) {
    uint32_t v;
    read(&v, 4, what);
    return v;
  }
  uint64_t u64(const std::string& what) {
    uint64_t v;
    read(&v, 8, what);
    return v;
  }
  std::string bytes(uint64_t n, const std::string& what) {
    need(n, what);
    std::string s(size_t(n), '\0');
    read(s.data(), n, what);
    return s;
  }
  // Counts n bytes already read with raw() into the position and the checksum.
  void account(const void* p, uint64_t n) {
    crc_ = crc64(p, size_t(n), crc_);
    pos_ += n;
  }
  // Reads n bytes with no bounds or checksum bookkeeping (the caller checked the file size).
  void raw(void* dst, uint64_t n) {
    const size_t got = n ? std::fread(dst, 1, size_t(n), f_) : 0;
    S24_CHECK(!std::ferror(f_), kIO, path_, ": read error: ", std::strerror(errno));
    S24_CHECK(got == n, kIO, path_, ": truncated: the file shrank while being read");
  }

 private:
  const std::string& path_;
  std::FILE* f_;
  uint64_t end_, pos_ = 0, crc_ = 0;
};

}  // namespace

Checkpoint read_checkpoint(const std::string& path) {
  const File file = open_regular_file(path);
  std::FILE* f = file.get();
  const uint64_t size = uint64_t(file_size(path, f));
  S24_CHECK(size > 0, kIO, path, ": empty file: not a sparse24 checkpoint");

  // Magic and version, checked before the size so that a foreign file is named as such. They
  // are the first 12 bytes of the checksummed body.
  constexpr uint64_t kMagicLen = sizeof(kCheckpointMagic);
  char head[kMagicLen + 4];
  const uint64_t nmagic = size < kMagicLen ? size : kMagicLen;
  BodyReader body(path, f, size >= 8 ? size - 8 : 0);
  body.raw(head, nmagic);
  S24_CHECK(std::memcmp(head, kCheckpointMagic, size_t(nmagic)) == 0, kIO, path,
            ": not a sparse24 checkpoint (bad magic)");
  S24_CHECK(size >= kMagicLen + 4, kIO, path, ": truncated: ", size, " bytes, not even a header");
  body.raw(head + kMagicLen, 4);
  uint32_t version;
  std::memcpy(&version, head + kMagicLen, 4);
  S24_CHECK(version == kCheckpointVersion, kIO, path, ": unsupported version ", version,
            " (this build reads version ", kCheckpointVersion, ")");
  constexpr uint64_t kMinSize = kMagicLen + 4 + 8 + 4 + 8;  // empty config, no blobs
  S24_CHECK(size >= kMinSize, kIO, path, ": truncated: ", size, " bytes, the smallest checkpoint is ",
            kMinSize);
  body.account(head, sizeof(head));

  Checkpoint ck;
  ck.source = path;
  const uint64_t config_len = body.u64("the configuration length");
  ck.config_json = body.bytes(config_len, "the configuration");
  const uint32_t count = body.u32("the blob count");
  body.need(uint64_t(count) * 12, std::to_string(count) + " blobs");  // each at least 12 bytes
  for (uint32_t i = 0; i < count; ++i) {
    const std::string which = "blob " + std::to_string(i);
    const uint32_t name_len = body.u32("the name length of " + which);
    S24_CHECK(name_len > 0, kIO, path, ": ", which, " at offset ", body.pos() - 4,
              " has an empty name (file corrupt)");
    std::string name = body.bytes(name_len, "the name of " + which);
    const std::string named = "blob '" + name + "'";
    S24_CHECK(!ck.blobs.count(name), kIO, path, ": duplicate ", named, " (file corrupt)");
    const uint64_t len = body.u64("the length of " + named);
    ck.blobs.emplace(std::move(name), body.bytes(len, named));
  }
  S24_CHECK(body.remaining() == 0, kIO, path, ": ", body.remaining(),
            " unexpected bytes between the last blob and the checksum (file corrupt)");
  uint64_t stored;
  body.raw(&stored, 8);
  const uint64_t computed = body.crc();
  if (stored != computed) {
    char detail[80];
    std::snprintf(detail, sizeof(detail), "stored CRC-64 %016llx, computed %016llx",
                  (unsigned long long)stored, (unsigned long long)computed);
    S24_FAIL(kIO, path, ": checksum mismatch: file corrupt (", detail, ")");
  }
  return ck;
}

const std::string& Checkpoint::blob(const std::string& name) const {
  const auto it = blobs.find(name);
  S24_CHECK(it != blobs.end(), kIO, source.empty() ? std::string("checkpoint") : source,
            ": checkpoint has no blob '", name, "'");
  return it->second;
}

// ---- Tensor blobs ------------------------------------------------------------------------------

namespace {

constexpr char kTensorMagic[4] = {'S', '2', '4', 'T'};

// The file codes of the dtypes (fixed: see checkpoint.h), indexed by code.
constexpr DType kDTypeCodes[] = {DType::kF32,    DType::kF16,    DType::kBF16, DType::kI8,
                                 DType::kF8E4M3, DType::kF8E5M2, DType::kU8,   DType::kI32};

uint32_t dtype_code(DType t) {
  for (uint32_t c = 0; c < sizeof(kDTypeCodes) / sizeof(kDTypeCodes[0]); ++c)
    if (kDTypeCodes[c] == t) return c;
  S24_FAIL(kInternal, "dtype ", int(t), " has no checkpoint code");
}

struct BlobHeader {
  DType dtype;
  int rank;
  int64_t shape[kMaxRank];
  size_t header_bytes;
  size_t data_bytes;
};

BlobHeader parse_blob_header(const std::string& blob, const std::string& what) {
  BlobHeader h{};
  S24_CHECK(blob.size() >= 12 && std::memcmp(blob.data(), kTensorMagic, 4) == 0, kIO, what,
            ": not a tensor blob (", blob.size() < 12 ? "too short" : "bad magic", ")");
  uint32_t code, rank;
  std::memcpy(&code, blob.data() + 4, 4);
  std::memcpy(&rank, blob.data() + 8, 4);
  S24_CHECK(code < sizeof(kDTypeCodes) / sizeof(kDTypeCodes[0]), kIO, what, ": tensor blob has unknown dtype code ", code);
  S24_CHECK(rank >= 1 && rank <= uint32_t(kMaxRank), kIO, what, ": tensor blob has rank ", rank,
            " (must be 1..", kMaxRank, ")");
  h.dtype = kDTypeCodes[code];
  h.rank = int(rank);
  h.header_bytes = 12 + 8 * size_t(rank);
  S24_CHECK(blob.size() >= h.header_bytes, kIO, what, ": tensor blob truncated in its shape");
  const uint64_t elem = uint64_t(dtype_size(h.dtype));
  uint64_t bytes = elem;
  bool overflow = false;
  for (int i = 0; i < h.rank; ++i) {
    std::memcpy(&h.shape[i], blob.data() + 12 + 8 * i, 8);
    S24_CHECK(h.shape[i] >= 0, kIO, what, ": tensor blob has a negative dimension ", h.shape[i]);
    if (h.shape[i] != 0 && bytes > std::numeric_limits<uint64_t>::max() / 2 / uint64_t(h.shape[i])) overflow = true;
    bytes *= uint64_t(h.shape[i]);
  }
  const uint64_t available = blob.size() - h.header_bytes;
  S24_CHECK(!overflow && bytes == available, kIO, what, ": tensor blob holds ", available,
            " bytes of data, its ", dtype_name(h.dtype), " shape needs ",
            overflow ? std::string("more than 2^63") : std::to_string(bytes));
  h.data_bytes = size_t(bytes);
  return h;
}

}  // namespace

std::string shape_text(const int64_t* shape, int rank) {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? " x " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string tensor_to_blob(const TensorView& t) {
  S24_CHECK(t.device == Device::kCPU, kDevice, "tensor_to_blob needs a CPU tensor, got ", t.describe());
  S24_CHECK(t.rank >= 1 && t.rank <= kMaxRank, kShape, "tensor_to_blob: rank ", t.rank,
            " (must be 1..", kMaxRank, ")");
  const uint32_t code = dtype_code(t.dtype), rank = uint32_t(t.rank);
  const size_t data_bytes = size_t(t.numel()) * size_t(dtype_size(t.dtype));
  std::string out(12 + 8 * size_t(rank) + data_bytes, '\0');
  char* p = out.data();
  std::memcpy(p, kTensorMagic, 4);
  std::memcpy(p + 4, &code, 4);
  std::memcpy(p + 8, &rank, 4);
  for (int i = 0; i < t.rank; ++i) std::memcpy(p + 12 + 8 * i, &t.shape[i], 8);
  // Copy into the blob's memory through a contiguous view of it (copy_into handles any strides).
  TensorView dst = t;
  dst.data = p + 12 + 8 * rank;
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    dst.strides[d] = stride;
    stride *= t.shape[d];
  }
  if (data_bytes) copy_into(dst, t);
  return out;
}

std::vector<int64_t> tensor_blob_shape(const std::string& blob, const std::string& what) {
  const BlobHeader h = parse_blob_header(blob, what);
  return std::vector<int64_t>(h.shape, h.shape + h.rank);
}

Tensor tensor_from_blob(const std::string& blob, const std::string& what) {
  const BlobHeader h = parse_blob_header(blob, what);
  const int64_t* s = h.shape;
  Tensor t = h.rank == 1   ? Tensor::empty({s[0]}, h.dtype)
             : h.rank == 2 ? Tensor::empty({s[0], s[1]}, h.dtype)
             : h.rank == 3 ? Tensor::empty({s[0], s[1], s[2]}, h.dtype)
                           : Tensor::empty({s[0], s[1], s[2], s[3]}, h.dtype);
  if (h.data_bytes) std::memcpy(t.view().data, blob.data() + h.header_bytes, h.data_bytes);
  return t;
}

void tensor_from_blob_into(const std::string& blob, const TensorView& dst, const std::string& what) {
  S24_CHECK(dst.device == Device::kCPU, kDevice, what, ": restoring needs a CPU tensor, got ", dst.describe());
  const BlobHeader h = parse_blob_header(blob, what);
  S24_CHECK(h.dtype == dst.dtype, kDType, what, ": the checkpoint holds ", dtype_name(h.dtype),
            ", the destination is ", dst.describe());
  bool same = h.rank == dst.rank;
  for (int i = 0; same && i < h.rank; ++i) same = h.shape[i] == dst.shape[i];
  S24_CHECK(same, kShape, what, ": the checkpoint holds shape ", shape_text(h.shape, h.rank),
            ", the destination is ", dst.describe());
  TensorView src = dst;
  src.data = const_cast<char*>(blob.data() + h.header_bytes);  // read only
  int64_t stride = 1;
  for (int d = h.rank - 1; d >= 0; --d) {
    src.strides[d] = stride;
    stride *= h.shape[d];
  }
  if (h.data_bytes) copy_into(dst, src);
}

}  // namespace sparse24::trainer
