// NumPy .npy reading and writing (format: numpy/lib/format.py, versions 1.0, 2.0 and 3.0).
//
// File layout: "\x93NUMPY", major and minor version bytes, the header length (little-endian u16
// in 1.0, u32 in 2.0 and 3.0), the header (a Python dict literal: 'descr', 'fortran_order',
// 'shape'; latin1 in 1.x/2.x, utf8 in 3.0; padded with spaces and ended by '\n'), then the data.
//
// Decisions beyond the header contract:
//   * Bytes after the data are an error ("trailing bytes"): a writer that appends them is broken,
//     and silently ignoring them would hide that.
//   * Fortran order: rank 1 is C order anyway, rank 2 becomes a column-major matrix (no copy),
//     rank 3 and 4 are converted to C order (a strided copy) since the library has no named
//     layout for them.
//   * Header keys other than the three, duplicate keys, rank 0 (scalars) and rank > kMaxRank are
//     errors. Dimensions may carry Python 2's 'L' suffix (old files); the shape "(5)" is accepted
//     like "(5,)".
//   * '<' or '=' (native; this code requires a little-endian host) is accepted for multi-byte
//     types; '>' is not. One-byte types accept any byte-order character.
//   * bool bytes are read as 0/1 (any non-zero byte becomes 1).
//   * The writer produces the same bytes as numpy >= 1.24's np.save: the keys sorted, 21 - digits
//     spaces of growth room after the dict, space padding to a multiple of 64 bytes, and '\n'.
//     It writes through AtomicFile (io/files.h).
#include "sparse24/npy.h"

#include "io/files.h"



#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "sparse24/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.cpp reads and writes little-endian data in place: a little-endian host is required"
#endif

namespace sparse24 {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;  // numpy's ARRAY_ALIGN: the data starts at a multiple of this

// ---- Header dict parsing -------------------------------------------------------------------

struct Header {
  std::string descr;
  bool descr_is_string = true;  // false: a list (structured dtype), kept as raw text
  bool fortran = false;
  std::vector<int64_t> shape;
};

// A recursive-descent parser for the small Python literal subset numpy writes.
class HeaderParser {
 public:
  HeaderParser(const std::string& path, const std::string& text) : path_(path), s_(text) {}

  Header parse() {
    Header h;
    bool seen[3] = {false, false, false};  // descr, fortran_order, shape
    ws();
    if (!eat('{')) fail("header is not a dict");
    for (ws(); !eat('}'); ws()) {
      const std::string key = string_literal("a quoted key");
      ws();
      expect(':');
      ws();
      int k = key == "descr" ? 0 : key == "fortran_order" ? 1 : key == "shape" ? 2 : -1;
      if (k < 0) fail("unexpected key '" + key + "'");
      if (seen[k]) fail("duplicate key '" + key + "'");
      seen[k] = true;
      if (k == 0) descr(h);
      if (k == 1) h.fortran = boolean();
      if (k == 2) h.shape = shape();
      ws();
      if (!eat(',')) {  // no comma: the dict must end here
        expect('}');
        break;
      }
    }
    ws();
    if (i_ != s_.size()) fail("unexpected text after the dict");
    const char* names[3] = {"descr", "fortran_order", "shape"};
    for (int k = 0; k < 3; ++k)
      if (!seen[k]) fail(std::string("missing key '") + names[k] + "'");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    std::string shown = s_.substr(0, s_.find_last_not_of(" \t\r\n") + 1);  // without padding
    if (shown.size() > 200) shown = shown.substr(0, 200) + "...";
    S24_FAIL(kIO, path_, ": malformed .npy header: ", what, " at offset ", i_, " in \"", shown, "\"");
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    if (i_ >= s_.size() || s_[i_] != c) return false;
    ++i_;
    return true;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  // 'text' or "text"; a backslash takes the next character literally.
  std::string string_literal(const char* what) {
    const char q = peek();
    if (q != '\'' && q != '"') fail(std::string("expected ") + what);
    std::string out;
    for (++i_; i_ < s_.size() && s_[i_] != q; ++i_) {
      if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
      out += s_[i_];
    }
    expect(q);
    return out;
  }
  // A string, or a list/tuple (a structured dtype) kept as its raw text for the error message.
  void descr(Header& h) {
    if (peek() == '\'' || peek() == '"') {
      h.descr = string_literal("a descr string");
      return;
    }
    if (peek() != '[' && peek() != '(') fail("descr is neither a string nor a list");
    const size_t start = i_;
    int depth = 0;
    do {
      const char c = peek();
      if (c == '\0' && i_ >= s_.size()) fail("unterminated descr list");
      if (c == '\'' || c == '"') {
        string_literal("a string");
        continue;
      }
      depth += (c == '[' || c == '(') - (c == ']' || c == ')');
      ++i_;
    } while (depth > 0);
    h.descr = s_.substr(start, i_ - start);
    h.descr_is_string = false;
  }
  bool boolean() {
    for (const char* word : {"True", "False"}) {
      if (s_.compare(i_, std::strlen(word), word) == 0) {
        i_ += std::strlen(word);
        return word[0] == 'T';
      }
    }
    fail("fortran_order is not True or False");
  }
  // "()", "(5,)", "(2, 3)", "(2, 3,)"; each dimension a non-negative integer.
  std::vector<int64_t> shape() {
    std::vector<int64_t> dims;
    expect('(');
    for (ws(); !eat(')'); ws()) {
      if (peek() == '-') fail("negative dimension in shape");
      if (peek() < '0' || peek() > '9') fail("expected a dimension in shape");
      int64_t v = 0;
      for (; peek() >= '0' && peek() <= '9'; ++i_) {
        const int digit = peek() - '0';
        if (v > (std::numeric_limits<int64_t>::max() - digit) / 10) fail("dimension overflows int64");
        v = v * 10 + digit;
      }
      eat('L');  // Python 2 long literal
      dims.push_back(v);
      ws();
      if (!eat(',')) {
        expect(')');
        break;
      }
    }
    return dims;
  }

  const std::string& path_;
  const std::string& s_;
  size_t i_ = 0;
};

// ---- descr ---------------------------------------------------------------------------------

// Converts n little-endian elements of type S at src to fp32, rounding to nearest as numpy's
// astype does: float64 beyond fp32's range becomes +-Inf, or +-FLT_MAX below the rounding
// midpoint (a C++ cast of an out-of-range value is undefined, so those are set here).
template <typename S>
void convert_to_f32(const char* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    S v;
    std::memcpy(&v, src + i * sizeof(S), sizeof(S));
    if constexpr (std::is_floating_point_v<S>) {
      constexpr double kMax = std::numeric_limits<float>::max(), kMidpoint = 0x1.ffffffp127;  // FLT_MAX, 2^128
      if (std::fabs(v) > kMax && std::isfinite(v)) {
        const float big = std::fabs(v) >= kMidpoint ? std::numeric_limits<float>::infinity() : float(kMax);
        dst[i] = v > 0 ? big : -big;
        continue;
      }
    }
    dst[i] = static_cast<float>(v);
  }
}

// What a descr reads as: the file's element kind and size, and the tensor dtype it becomes.
struct ElementType {
  char kind;  // 'f', 'i', 'u' or 'b'
  int size;   // bytes per element in the file
  DType out;  // dtype of the tensor read
  void (*convert)(const char*, float*, size_t);  // to fp32; nullptr: the bytes are kept as is
};

ElementType parse_descr(const std::string& path, const Header& h) {
  static const ElementType kTypes[] = {
      {'f', 4, DType::kF32, nullptr},
      {'f', 2, DType::kF16, nullptr},
      {'i', 1, DType::kI8, nullptr},
      {'u', 1, DType::kU8, nullptr},
      {'b', 1, DType::kU8, nullptr},
      {'f', 8, DType::kF32, convert_to_f32<double>},
      {'i', 2, DType::kF32, convert_to_f32<int16_t>},
      {'i', 4, DType::kF32, convert_to_f32<int32_t>},
      {'i', 8, DType::kF32, convert_to_f32<int64_t>},
      {'u', 2, DType::kF32, convert_to_f32<uint16_t>},
      {'u', 4, DType::kF32, convert_to_f32<uint32_t>},
      {'u', 8, DType::kF32, convert_to_f32<uint64_t>}};
  const std::string& d = h.descr;
  const bool well_formed = h.descr_is_string && d.size() == 3 && std::strchr("<>=|", d[0]) &&
                           d[0] != '\0' && d[2] >= '1' && d[2] <= '8';
  if (well_formed) {
    for (const ElementType& t : kTypes) {
      if (t.kind != d[1] || t.size != d[2] - '0') continue;
      if (t.size == 1 || d[0] == '<' || d[0] == '=') return t;  // '=': native, little-endian here
      S24_FAIL(kIO, path, ": unsupported descr '", d, "' (",
               d[0] == '>' ? "big-endian" : "invalid byte order", "; only little-endian data is read)");
    }
  }
  S24_FAIL(kIO, path, ": unsupported descr ", h.descr_is_string ? "'" + d + "'" : d,
           " (supported: little-endian f8 f4 f2 i1 i2 i4 i8 u1 u2 u4 u8 b1)");
}

// ---- Reading -------------------------------------------------------------------------------

// Reads up to n bytes; returns how many were read (fewer only at the end of the file).
size_t read_some(const std::string& path, std::FILE* f, void* dst, size_t n) {
  const size_t got = n ? std::fread(dst, 1, n, f) : 0;
  S24_CHECK(!std::ferror(f), kIO, path, ": read error: ", std::strerror(errno));
  return got;
}

// A contiguous row-major tensor of any rank 1..kMaxRank.
Tensor empty_tensor(const std::vector<int64_t>& s, DType dtype) {
  switch (s.size()) {
    case 1: return Tensor::empty({s[0]}, dtype);
    case 2: return Tensor::empty({s[0], s[1]}, dtype);
    case 3: return Tensor::empty({s[0], s[1], s[2]}, dtype);
    default: return Tensor::empty({s[0], s[1], s[2], s[3]}, dtype);
  }
}

// Reads `count` file elements of type `et` into dst (of dtype et.out), converting in chunks.
void read_elements(const std::string& path, std::FILE* f, const ElementType& et, void* dst,
                   size_t count) {
  const size_t expected = count * size_t(et.size);
  if (!et.convert) {  // same bytes in file and tensor
    const size_t got = read_some(path, f, dst, expected);
    S24_CHECK(got == expected, kIO, path, ": truncated: expected ", expected,
              " bytes of data, found ", got);
    if (et.kind == 'b')
      for (size_t i = 0; i < count; ++i) static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t*>(dst)[i] != 0;
    return;
  }
  std::vector<char> buf(size_t(et.size) << 16);  // 64 Ki elements per chunk
  float* out = static_cast<float*>(dst);
  for (size_t done = 0; done < count;) {
    const size_t n = std::min(count - done, size_t(1) << 16), want = n * size_t(et.size);
    const size_t got = read_some(path, f, buf.data(), want);
    S24_CHECK(got == want, kIO, path, ": truncated: expected ", expected, " bytes of data, found ",
              done * size_t(et.size) + got);
    et.convert(buf.data(), out + done, n);
    done += n;
  }
}

// ---- Writing -------------------------------------------------------------------------------

// numpy's header for this dtype/shape/order, with the prefix, padding and '\n'.
std::string make_header(const char* descr, const TensorView& t, bool fortran) {
  std::string shape = "(";
  for (int i = 0; i < t.rank; ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
  shape += t.rank == 1 ? ",)" : ")";
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': " +
                     (fortran ? "True" : "False") + ", 'shape': " + shape + ", }";
  // Growth room for the axis np.save would append along (numpy's GROWTH_AXIS_MAX_DIGITS = 21).
  dict.append(21 - std::to_string(t.shape[fortran ? t.rank - 1 : 0]).size(), ' ');
  // Version 1.0 stores the header length in 2 bytes, 2.0 in 4.
  for (const size_t len_bytes : {size_t(2), size_t(4)}) {
    const size_t prefix = kMagicLen + 2 + len_bytes, hlen = dict.size() + 1;
    const size_t pad = kAlign - (prefix + hlen) % kAlign;  // 1..64 spaces, as numpy
    const size_t total = hlen + pad;
    if (len_bytes == 2 && total > 65535) continue;
    std::string out(kMagic, kMagicLen);
    out += char(len_bytes == 2 ? 1 : 2);
    out += char(0);
    for (size_t b = 0; b < len_bytes; ++b) out += char((total >> (8 * b)) & 0xFF);
    return out + dict + std::string(pad, ' ') + "\n";
  }
  return {};  // unreachable: a 4-byte length always fits the header of a rank <= 4 array
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  const File file = open_regular_file(path);
  std::FILE* f = file.get();

  // Magic string and version.
  unsigned char pre[kMagicLen + 2];
  const size_t got = read_some(path, f, pre, sizeof(pre));
  S24_CHECK(got >= kMagicLen && std::memcmp(pre, kMagic, kMagicLen) == 0, kIO, path,
            ": not a .npy file (bad magic string)");
  S24_CHECK(got == sizeof(pre), kIO, path, ": truncated header (no version bytes)");
  const int major = pre[kMagicLen], minor = pre[kMagicLen + 1];
  S24_CHECK(major >= 1 && major <= 3 && minor == 0, kIO, path, ": unsupported .npy format version ",
            major, ".", minor);

  // Header length (u16 in 1.0, u32 in 2.0/3.0, little-endian), then the header itself.
  const size_t len_bytes = major == 1 ? 2 : 4;
  unsigned char len[4] = {0, 0, 0, 0};
  S24_CHECK(read_some(path, f, len, len_bytes) == len_bytes, kIO, path,
            ": truncated header (no header length)");
  const size_t hlen = size_t(len[0]) | size_t(len[1]) << 8 | size_t(len[2]) << 16 | size_t(len[3]) << 24;
  const long header_end = long(kMagicLen + 2 + len_bytes + hlen);
  const long size = long(file_size(path, f));
  S24_CHECK(size >= header_end, kIO, path, ": truncated header: expected ", hlen,
            " bytes of header, found ", size - long(kMagicLen + 2 + len_bytes));
  S24_CHECK(std::fseek(f, long(kMagicLen + 2 + len_bytes), SEEK_SET) == 0, kIO, path, ": cannot seek: ",
            std::strerror(errno));
  std::string text(hlen, '\0');
  S24_CHECK(read_some(path, f, text.data(), hlen) == hlen, kIO, path, ": truncated header");
  const Header h = HeaderParser(path, text).parse();

  // Type and shape.
  const ElementType et = parse_descr(path, h);
  const int rank = int(h.shape.size());
  S24_CHECK(rank >= 1 && rank <= kMaxRank, kIO, path, ": rank ", rank, " arrays are not supported (",
            rank == 0 ? "a scalar" : "too many dimensions", "; rank must be 1..", kMaxRank, ")");
  int64_t numel = 1, nonzero = 1;  // the product of the non-zero dims must fit too (strides)
  for (int64_t d : h.shape) {
    S24_CHECK(d <= 1 || nonzero <= std::numeric_limits<int64_t>::max() / et.size / d, kIO, path,
              ": shape overflows (too many elements)");
    numel *= d;
    nonzero *= d ? d : 1;
  }

  // An empty array's other dimensions still bound every loop over it (the rows of a 2^61 x 0
  // matrix): at most 2^32 of them.
  S24_CHECK(numel > 0 || nonzero <= (int64_t(1) << 32), kIO, path, ": an empty array with ", nonzero,
            " elements along its non-zero dimensions (at most 2^32)");
  // The data must be exactly numel elements: no fewer, no more.
  const int64_t expected = numel * et.size, available = int64_t(size - header_end);
  S24_CHECK(available >= expected, kIO, path, ": truncated: expected ", expected,
            " bytes of data, found ", available);
  S24_CHECK(available == expected, kIO, path, ": trailing bytes: ", available - expected,
            " bytes after the ", expected, " bytes of data");

  // Read in file order into a tensor whose memory has that order, then fix up Fortran order.
  NpyArray out;
  out.descr = h.descr;
  if (!h.fortran || rank == 1) {
    out.tensor = empty_tensor(h.shape, et.out);
  } else if (rank == 2) {
    out.tensor = Tensor::matrix(h.shape[0], h.shape[1], et.out, Layout::kColMajor);
  } else {
    // Fortran memory of shape s is C memory of the reversed shape: read that, copy to C order.
    const Tensor reversed = empty_tensor(std::vector<int64_t>(h.shape.rbegin(), h.shape.rend()), et.out);
    read_elements(path, f, et, reversed.view().data, size_t(numel));
    TensorView v = reversed.view();
    for (int i = 0; i < rank; ++i) {
      v.shape[i] = h.shape[i];
      v.strides[i] = reversed.view().strides[rank - 1 - i];
    }
    out.tensor = empty_tensor(h.shape, et.out);
    copy_into(out.tensor.view(), v);
    return out;
  }
  read_elements(path, f, et, out.tensor.view().data, size_t(numel));
  return out;
}

void write_npy(const std::string& path, const TensorView& t) {
  S24_CHECK(t.device == Device::kCPU, kDevice, path, ": write_npy needs a CPU tensor, got ",
            t.describe());
  const char* descr = t.dtype == DType::kF32  ? "<f4"
                      : t.dtype == DType::kF16 ? "<f2"
                      : t.dtype == DType::kI8  ? "|i1"
                      : t.dtype == DType::kU8  ? "|u1"
                                               : nullptr;
  S24_CHECK(descr, kDType, path, ": cannot write ", dtype_name(t.dtype),
            " to .npy (numpy has no such type: convert to fp32 first)");
  S24_CHECK(t.rank >= 1 && t.rank <= kMaxRank, kShape, path, ": cannot write a rank ", t.rank,
            " tensor (rank must be 1..", kMaxRank, ")");

  // A column-major matrix is written as is, in Fortran order; anything else in C order.
  const bool fortran = t.is_col_major() && !t.is_row_major();
  Tensor copy;  // a C-order copy of a strided view
  const TensorView* v = &t;
  if (!fortran && !t.is_contiguous()) {
    copy = Tensor::copy_of(t, Device::kCPU);
    v = &copy.view();
  }
  AtomicFile out(path);
  out.write(make_header(descr, t, fortran));
  out.write(v->data, size_t(t.numel()) * size_t(dtype_size(t.dtype)));
  out.commit();
}

}  // namespace sparse24
