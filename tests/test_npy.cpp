// tests/test_npy.cpp: .npy reading and writing: round trips, hand-made files of every supported
// descr and header variant, every error path, and atomic writes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

namespace sparse24 {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::test_dir;
using test::write_file;

// A .npy file with the given header dict text (plus '\n', unpadded) and data bytes.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  const std::string header = dict + "\n";
  const size_t n = header.size();
  std::string out("\x93NUMPY", 6);
  out += char(major);
  out += char(0);
  for (int b = 0; b < (major == 1 ? 2 : 4); ++b) out += char((n >> (8 * b)) & 0xFF);
  return out + header + data;
}

// The raw (little-endian) bytes of some values.
template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// The bytes of a tensor's memory (contiguous in some order).
std::string memory(const TensorView& t) {
  return std::string(static_cast<const char*>(t.data), size_t(t.numel()) * size_t(dtype_size(t.dtype)));
}

// Expects fn() to throw sparse24::Error of `kind` whose message starts with the path and contains
// every word.
template <typename Fn>
void expect_error(Fn&& fn, ErrorKind kind, const std::string& path, std::initializer_list<std::string> words) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.kind(), kind) << what;
    EXPECT_EQ(what.rfind(std::string(error_kind_name(kind)) + ": " + path, 0), 0u)
        << "message does not start with the path: " << what;
    for (const std::string& w : words)
      EXPECT_NE(what.find(w), std::string::npos) << "\"" << w << "\" missing in: " << what;
    return;
  }
  ADD_FAILURE() << "no sparse24::Error thrown";
}
#define EXPECT_NPY_ERROR(stmt, kind, path, ...) \
  do {                                          \
    SCOPED_TRACE(#stmt);                        \
    expect_error([&] { stmt; }, ErrorKind::kind, path, {__VA_ARGS__}); \
  } while (0)

// Reads a file made of `dict` and `data` (format version `major`).
NpyArray read_bytes(const fs::path& dir, const std::string& dict, const std::string& data, int major = 1) {
  return read_npy(write_file(dir / "in.npy", npy_bytes(dict, data, major)));
}

// Random rows x cols matrices of each writable dtype, in the given layout.
Tensor random_matrix(DType dtype, int64_t rows, int64_t cols, Layout layout, uint64_t seed) {
  if (dtype == DType::kF32 || dtype == DType::kF16)
    return test::convert(test::randn(rows, cols, seed, layout), dtype, layout);
  Tensor t = Tensor::matrix(rows, cols, dtype, layout);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) static_cast<uint8_t*>(t.view().data)[i] = uint8_t(rng());
  return t;
}

// ---- Round trips ---------------------------------------------------------------------------

TEST(NpyRoundTrip, EveryDtypeInCAndFortranOrder) {
  const fs::path dir = test_dir();
  for (DType dtype : {DType::kF32, DType::kF16, DType::kI8, DType::kU8}) {
    for (Layout layout : {Layout::kRowMajor, Layout::kColMajor}) {
      for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{7, 5}, {1, 9}, {12, 20}, {64, 3}}) {
        SCOPED_TRACE(std::string(dtype_name(dtype)) + (layout == Layout::kRowMajor ? " C " : " F ") +
                     std::to_string(rows) + "x" + std::to_string(cols));
        const Tensor t = random_matrix(dtype, rows, cols, layout, uint64_t(rows * 100 + cols));
        const std::string path = (dir / "m.npy").string();
        write_npy(path, t);
        const std::string bytes = read_file(path);
        const bool fortran = layout == Layout::kColMajor && rows > 1 && cols > 1;
        EXPECT_NE(bytes.find(fortran ? "'fortran_order': True" : "'fortran_order': False"), std::string::npos);

        const NpyArray a = read_npy(path);
        EXPECT_EQ(a.tensor.dtype(), dtype);
        EXPECT_EQ(a.tensor.device(), Device::kCPU);
        ASSERT_EQ(a.tensor.view().rank, 2);
        EXPECT_EQ(a.tensor.rows(), rows);
        EXPECT_EQ(a.tensor.cols(), cols);
        EXPECT_EQ(a.tensor.view().is_col_major(), fortran || t.view().is_col_major());
        EXPECT_EQ(memory(a.tensor), memory(t));  // same bytes in the same order: no transpose
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j) ASSERT_EQ(test::get(a.tensor, i, j), test::get(t, i, j));
      }
    }
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);  // no temp files left
}

TEST(NpyRoundTrip, Rank1Rank3Rank4AndEmpty) {
  const fs::path dir = test_dir();
  std::mt19937_64 rng(7);
  for (Tensor t : {Tensor::empty({5}, DType::kF32), Tensor::empty({2, 3, 4}, DType::kF16),
                   Tensor::empty({2, 1, 3, 2}, DType::kI8), Tensor::empty({0}, DType::kF32),
                   Tensor::empty({3, 0}, DType::kU8)}) {
    SCOPED_TRACE(t.view().describe());
    for (int64_t i = 0; i < t.numel() * dtype_size(t.dtype()); ++i) static_cast<uint8_t*>(t.view().data)[i] = uint8_t(rng());
    const std::string path = (dir / "t.npy").string();
    write_npy(path, t);
    const NpyArray a = read_npy(path);
    EXPECT_EQ(a.tensor.dtype(), t.dtype());
    ASSERT_EQ(a.tensor.view().rank, t.view().rank);
    for (int i = 0; i < t.view().rank; ++i) EXPECT_EQ(a.tensor.view().shape[i], t.view().shape[i]);
    EXPECT_TRUE(a.tensor.view().is_contiguous());
    EXPECT_EQ(memory(a.tensor), memory(t));
  }
}

TEST(NpyRoundTrip, StridedViewsAreWrittenInCOrder) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "s.npy").string();
  const Tensor big = test::randn(6, 8, 11);
  // Every other column: strides (8, 2).
  TensorView every_other = big.view();
  every_other.shape[1] = 4;
  every_other.strides[1] = 2;
  // A 3x5 block of a column-major 6x8 matrix: strides (1, 6), neither row- nor column-major.
  const Tensor big_f = test::randn(6, 8, 12, Layout::kColMajor);
  TensorView block = big_f.view();
  block.shape[0] = 3;
  block.shape[1] = 5;
  for (const TensorView& v : {every_other, block}) {
    write_npy(path, v);
    EXPECT_NE(read_file(path).find("'fortran_order': False, 'shape': (" + std::to_string(v.rows()) + ", " +
                                   std::to_string(v.cols()) + ")"),
              std::string::npos);
    const NpyArray a = read_npy(path);
    ASSERT_TRUE(a.tensor.view().is_row_major());
    for (int64_t i = 0; i < v.rows(); ++i)
      for (int64_t j = 0; j < v.cols(); ++j) ASSERT_EQ(test::get(a.tensor, i, j), test::get(v, i, j));
  }
  // The transpose of a row-major matrix is column-major: Fortran order, same memory.
  write_npy(path, big.view().t());
  EXPECT_NE(read_file(path).find("'fortran_order': True, 'shape': (8, 6)"), std::string::npos);
  const NpyArray a = read_npy(path);
  EXPECT_TRUE(a.tensor.view().is_col_major());
  EXPECT_EQ(memory(a.tensor), memory(big));
}

TEST(NpyRoundTrip, HeaderIsNumpysAndDataIsAligned) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "h.npy").string();
  const Tensor t = test::randn(2, 3, 1);
  write_npy(path, t);
  // What np.save(np.zeros((2, 3), np.float32)) writes (numpy >= 1.24): a 118-byte header.
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const std::string expected = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + dict + std::string(128 - 11 - dict.size(), ' ') + "\n";
  const std::string bytes = read_file(path);
  ASSERT_EQ(bytes.size(), 128u + 24u);
  EXPECT_EQ(bytes.substr(0, 128), expected);
  EXPECT_EQ(bytes.substr(128), memory(t));
  // Other shapes and dtypes: data always at a multiple of 64, header ends with '\n'.
  for (Tensor u : {Tensor::empty({123456789, 0, 7}, DType::kI8), Tensor::matrix(1, 1, DType::kF16),
                   Tensor::empty({1000, 0, 99999, 42}, DType::kU8)}) {
    write_npy(path, u);
    const std::string b = read_file(path);
    const size_t header_end = 10 + size_t(uint8_t(b[8])) + 256 * size_t(uint8_t(b[9]));
    EXPECT_EQ(header_end % 64, 0u);
    EXPECT_EQ(b[header_end - 1], '\n');
    EXPECT_EQ(b.size(), header_end + size_t(u.numel() * dtype_size(u.dtype())));
    EXPECT_EQ(read_npy(path).tensor.view().shape[0], u.view().shape[0]);
  }
}

TEST(NpyRoundTrip, OverwritesAnExistingFile) {
  const fs::path dir = test_dir();
  const std::string path = write_file(dir / "o.npy", "old contents");
  const Tensor t = test::randn(4, 4, 3);
  write_npy(path, t);
  EXPECT_EQ(memory(read_npy(path).tensor), memory(t));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

// ---- Reading hand-made files ---------------------------------------------------------------

TEST(NpyRead, F8IsConvertedToF32) {
  const fs::path dir = test_dir();
  // Beyond fp32's range: +-Inf from the rounding midpoint (2^128 - 2^103) on, +-FLT_MAX below it.
  const std::vector<double> v = {0.1, -2.5, 1e300, -1e-300, std::numeric_limits<double>::quiet_NaN(), 3.0,
                                 -1e300, 0x1.fffffefp127, -0x1.ffffffp127, 0x1.fffffe8p127};
  const NpyArray a = read_bytes(dir, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 5), }", raw(v));
  EXPECT_EQ(a.descr, "<f8");
  EXPECT_EQ(a.tensor.dtype(), DType::kF32);
  ASSERT_EQ(a.tensor.rows(), 2);
  ASSERT_EQ(a.tensor.cols(), 5);
  const float* f = a.tensor.data<float>();
  EXPECT_EQ(f[0], 0.1f);
  EXPECT_EQ(f[1], -2.5f);
  EXPECT_EQ(f[2], std::numeric_limits<float>::infinity());  // overflow: +Inf, as numpy's astype
  EXPECT_EQ(f[3], 0.f);
  EXPECT_TRUE(std::signbit(f[3]));
  EXPECT_TRUE(std::isnan(f[4]));
  EXPECT_EQ(f[5], 3.f);
  EXPECT_EQ(f[6], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(f[7], std::numeric_limits<float>::max());
  EXPECT_EQ(f[8], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(f[9], std::numeric_limits<float>::max());
}

TEST(NpyRead, SameSizeTypesAreKeptBitExact) {
  const fs::path dir = test_dir();
  const std::vector<float> f4 = {1.5f, -0.f, std::numeric_limits<float>::infinity(), 1e-45f};
  NpyArray a = read_bytes(dir, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", raw(f4));
  EXPECT_EQ(a.tensor.dtype(), DType::kF32);
  EXPECT_EQ(memory(a.tensor), raw(f4));

  const std::vector<uint16_t> f2 = {0x3C00, 0xC000, 0x7C00, 0x0001, 0x7E01};
  a = read_bytes(dir, "{'descr': '<f2', 'fortran_order': False, 'shape': (5,), }", raw(f2));
  EXPECT_EQ(a.tensor.dtype(), DType::kF16);
  EXPECT_EQ(memory(a.tensor), raw(f2));

  const std::vector<int8_t> i1 = {-128, -1, 0, 1, 127, 5};
  for (const char* descr : {"|i1", "<i1", "=i1"}) {
    a = read_bytes(dir, std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (2, 3), }", raw(i1));
    EXPECT_EQ(a.tensor.dtype(), DType::kI8) << descr;
    EXPECT_EQ(memory(a.tensor), raw(i1)) << descr;
    EXPECT_EQ(a.descr, descr);
  }

  const std::vector<uint8_t> u1 = {0, 1, 200, 255};
  a = read_bytes(dir, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", raw(u1));
  EXPECT_EQ(a.tensor.dtype(), DType::kU8);
  EXPECT_EQ(memory(a.tensor), raw(u1));
}

TEST(NpyRead, BoolBecomesU8ZeroOrOne) {
  const fs::path dir = test_dir();
  const NpyArray a = read_bytes(dir, "{'descr': '|b1', 'fortran_order': False, 'shape': (5,), }",
                                raw(std::vector<uint8_t>{0, 1, 1, 0, 7}));
  EXPECT_EQ(a.descr, "|b1");
  EXPECT_EQ(a.tensor.dtype(), DType::kU8);
  EXPECT_EQ(memory(a.tensor), raw(std::vector<uint8_t>{0, 1, 1, 0, 1}));
}

TEST(NpyRead, WiderIntegersAreConvertedToF32) {
  const fs::path dir = test_dir();
  auto check = [&](const char* descr, const std::string& data, const std::vector<float>& expected) {
    SCOPED_TRACE(descr);
    const NpyArray a = read_bytes(dir, std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" +
                                           std::to_string(expected.size()) + ",), }", data);
    EXPECT_EQ(a.descr, descr);
    EXPECT_EQ(a.tensor.dtype(), DType::kF32);
    EXPECT_EQ(memory(a.tensor), raw(expected));
  };
  check("<i2", raw(std::vector<int16_t>{-32768, -1, 0, 32767}), {-32768.f, -1.f, 0.f, 32767.f});
  check("<i4", raw(std::vector<int32_t>{INT32_MIN, -7, 16777217}), {-2147483648.f, -7.f, 16777216.f});
  check("=i4", raw(std::vector<int32_t>{3, -3}), {3.f, -3.f});
  check("<i8", raw(std::vector<int64_t>{INT64_MIN, -5, int64_t(1) << 40, 123456789012345LL}),
        {-9223372036854775808.f, -5.f, 1099511627776.f, float(123456789012345LL)});
  check("<u2", raw(std::vector<uint16_t>{0, 65535}), {0.f, 65535.f});
  check("<u4", raw(std::vector<uint32_t>{4294967295u, 9}), {4294967296.f, 9.f});
  check("<u8", raw(std::vector<uint64_t>{UINT64_MAX, 42}), {18446744073709551616.f, 42.f});
  // More than one conversion chunk (65536 elements).
  std::vector<int16_t> many(70000);
  std::vector<float> many_f(many.size());
  for (size_t i = 0; i < many.size(); ++i) many_f[i] = float(many[i] = int16_t(i * 7 - 30000));
  check("<i2", raw(many), many_f);
}

TEST(NpyRead, HeaderVariants) {
  const fs::path dir = test_dir();
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  for (const char* dict : {
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
           "{'shape': (2, 3), 'descr': '<f4', 'fortran_order': False}",
           "{'fortran_order':False,'shape':(2,3),'descr':'<f4'}",
           "  {  \"descr\" : \"<f4\" ,\t'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }   ",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }",
       }) {
    SCOPED_TRACE(dict);
    const NpyArray a = read_bytes(dir, dict, raw(v));
    ASSERT_EQ(a.tensor.view().rank, 2);
    EXPECT_EQ(a.tensor.rows(), 2);
    EXPECT_EQ(a.tensor.cols(), 3);
    EXPECT_EQ(memory(a.tensor), raw(v));
  }
}

TEST(NpyRead, Versions2And3) {
  const fs::path dir = test_dir();
  const std::vector<float> v = {1, 2, 3, 4, 5};
  for (int major : {1, 2, 3}) {
    const NpyArray a = read_bytes(dir, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", raw(v), major);
    ASSERT_EQ(a.tensor.view().rank, 1) << major;
    EXPECT_EQ(a.tensor.view().shape[0], 5);
    EXPECT_EQ(memory(a.tensor), raw(v));
  }
  // A 2.0 header longer than 65535 bytes (numpy pads with spaces).
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }" + std::string(70000, ' ');
  EXPECT_EQ(memory(read_bytes(dir, dict, raw(v), 2).tensor), raw(v));
}

TEST(NpyRead, ThreeDimensionalCAndFortranOrder) {
  const fs::path dir = test_dir();
  std::vector<int16_t> v(24);
  for (int k = 0; k < 24; ++k) v[k] = int16_t(k);
  NpyArray a = read_bytes(dir, "{'descr': '<i2', 'fortran_order': False, 'shape': (2, 3, 4), }", raw(v));
  ASSERT_EQ(a.tensor.view().rank, 3);
  EXPECT_TRUE(a.tensor.view().is_contiguous());
  for (int k = 0; k < 24; ++k) EXPECT_EQ(a.tensor.data<float>()[k], float(k));
  // Fortran order: element (i, j, k) at i + 2 j + 6 k in the file; converted to C order.
  a = read_bytes(dir, "{'descr': '<i2', 'fortran_order': True, 'shape': (2, 3, 4), }", raw(v));
  ASSERT_EQ(a.tensor.view().rank, 3);
  EXPECT_TRUE(a.tensor.view().is_contiguous());
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) EXPECT_EQ(a.tensor.data<float>()[(i * 3 + j) * 4 + k], float(i + 2 * j + 6 * k));
}

TEST(NpyRead, FortranMatrixIsColumnMajor) {
  const fs::path dir = test_dir();
  const std::vector<double> v = {1, 2, 3, 4, 5, 6};  // columns (1, 2), (3, 4), (5, 6)
  const NpyArray a = read_bytes(dir, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", raw(v));
  ASSERT_TRUE(a.tensor.view().is_col_major());
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(test::get(a.tensor, i, j), double(1 + i + 2 * j));
}

// ---- Read errors ---------------------------------------------------------------------------

TEST(NpyReadError, MissingOrUnreadableFile) {
  const fs::path dir = test_dir();
  const std::string missing = (dir / "missing.npy").string();
  EXPECT_NPY_ERROR(read_npy(missing), kIO, missing, "cannot open", "No such file or directory");
  const std::string directory = dir.string();
  EXPECT_NPY_ERROR(read_npy(directory), kIO, directory, "not a regular file");
}

TEST(NpyReadError, BadMagicOrVersion) {
  const fs::path dir = test_dir();
  for (const std::string& bytes : {std::string(), std::string("\x93NUM"), std::string("PK\x03\x04 a zip file"),
                                  std::string("\x93numpy\x01\x00", 8)}) {
    const std::string path = write_file(dir / "m.npy", bytes);
    EXPECT_NPY_ERROR(read_npy(path), kIO, path, "bad magic string");
  }
  std::string v4 = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", "abcd");
  v4[6] = 4;
  std::string path = write_file(dir / "v.npy", v4);
  EXPECT_NPY_ERROR(read_npy(path), kIO, path, "version 4.0");
  path = write_file(dir / "v.npy", std::string("\x93NUMPY\x01", 7));
  EXPECT_NPY_ERROR(read_npy(path), kIO, path, "truncated header");
}

TEST(NpyReadError, TruncatedHeader) {
  const fs::path dir = test_dir();
  const std::string full = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", "");
  for (size_t keep : {size_t(9), size_t(20), full.size() - 1}) {
    const std::string path = write_file(dir / "h.npy", full.substr(0, keep));
    EXPECT_NPY_ERROR(read_npy(path), kIO, path, "truncated header");
  }
  // A 2.0 header length of 4 GB in a tiny file.
  const std::string path = write_file(dir / "h.npy", std::string("\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14));
  EXPECT_NPY_ERROR(read_npy(path), kIO, path, "truncated header");
}

TEST(NpyReadError, MalformedHeaders) {
  const fs::path dir = test_dir();
  const std::pair<std::string, std::string> cases[] = {
      {"['descr', '<f4']", "header is not a dict"},
      {"", "header is not a dict"},
      {"{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'"},
      {"{'shape': (1,), 'fortran_order': False}", "missing key 'descr'"},
      {"{'descr': '<f4', 'shape': (1,)}", "missing key 'fortran_order'"},
      {"{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}", "expected '}'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", "unexpected key 'extra'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", "duplicate key 'descr'"},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", "not True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [1]}", "expected '('"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, x)}", "expected a dimension"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", "expected"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", "malformed"},
      {"{'descr': <f4, 'fortran_order': False, 'shape': (1,)}", "descr is neither"},
      {"{descr: '<f4', 'fortran_order': False, 'shape': (1,)}", "expected a quoted key"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", "unexpected text after the dict"},
  };
  for (const auto& [dict, words] : cases) {
    SCOPED_TRACE(dict);
    const std::string path = write_file(dir / "bad.npy", npy_bytes(dict, "abcd"));
    EXPECT_NPY_ERROR(read_npy(path), kIO, path, "malformed .npy header", words);
  }
}

TEST(NpyReadError, BadShapes) {
  const fs::path dir = test_dir();
  const std::pair<std::string, std::string> cases[] = {
      {"(-3,)", "negative dimension"},
      {"(99999999999999999999,)", "overflows"},
      {"(4294967296, 4294967296)", "overflows"},
      {"(3037000499, 3037000499)", "overflows"},  // fits int64 elements, not int64 bytes
      {"()", "rank 0"},
      {"(1, 1, 1, 1, 1)", "rank 5"},
  };
  for (const auto& [shape, words] : cases) {
    SCOPED_TRACE(shape);
    const std::string path = write_file(dir / "s.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }", "abcd"));
    EXPECT_NPY_ERROR(read_npy(path), kIO, path, words);
  }
}

// An empty array whose other dimensions are huge would make every loop over it run for ever
// (the rows of a 2^61 x 0 matrix): refused, in C and Fortran order; small empty ones still read.
TEST(NpyReadError, EmptyArraysWithHugeDimensions) {
  const fs::path dir = test_dir();
  for (const std::string order : {"False", "True"})
    for (const std::string shape : {"(2305843009213693951, 0)", "(0, 2305843009213693951)", "(1000000, 1000000, 0)"}) {
      SCOPED_TRACE(order + " " + shape);
      const std::string path =
          write_file(dir / "e.npy", npy_bytes("{'descr': '<f4', 'fortran_order': " + order + ", 'shape': " + shape + ", }", ""));
      EXPECT_NPY_ERROR(read_npy(path), kIO, path, "an empty array with");
    }
  const std::string path = write_file(dir / "e.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 0), }", ""));
  EXPECT_EQ(read_npy(path).tensor.view().shape[0], int64_t(1) << 32);
}

TEST(NpyReadError, UnsupportedDescr) {
  const fs::path dir = test_dir();
  for (const std::string& descr : std::vector<std::string>{"'>f4'", "'>i8'", "'|f4'", "'<c8'", "'|O'", "'<U5'", "'|S3'", "'<f16'", "'<V8'",
                                  "'<m8[ns]'", "'f4'", "[('a', '<f4'), ('b', '<i4')]"}) {
    SCOPED_TRACE(descr);
    const std::string path = write_file(dir / "d.npy", npy_bytes("{'descr': " + descr + ", 'fortran_order': False, 'shape': (1,), }", std::string(16, '\0')));
    EXPECT_NPY_ERROR(read_npy(path), kIO, path, "unsupported descr", descr);
  }
  const std::string path = write_file(dir / "d.npy", npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", "abcd"));
  EXPECT_NPY_ERROR(read_npy(path), kIO, path, "big-endian");
}

TEST(NpyReadError, TruncatedOrTrailingData) {
  const fs::path dir = test_dir();
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  std::string path = write_file(dir / "t.npy", npy_bytes(dict, std::string(20, 'x')));
  EXPECT_NPY_ERROR(read_npy(path), kIO, path, "truncated: expected 24 bytes of data, found 20");
  path = write_file(dir / "t.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }", ""));
  EXPECT_NPY_ERROR(read_npy(path), kIO, path, "truncated: expected 40 bytes of data, found 0");
  path = write_file(dir / "t.npy", npy_bytes(dict, std::string(25, 'x')));
  EXPECT_NPY_ERROR(read_npy(path), kIO, path, "trailing bytes", "1 bytes after the 24 bytes");
  // A huge shape in a small file is "truncated", not an allocation failure.
  path = write_file(dir / "t.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000), }", "abcd"));
  EXPECT_NPY_ERROR(read_npy(path), kIO, path, "truncated: expected 4000000000000 bytes of data, found 4");
}

// ---- Write errors: the target is never touched ---------------------------------------------

TEST(NpyWriteError, UnsupportedDtypeLeavesFileUntouched) {
  const fs::path dir = test_dir();
  const Tensor good = test::randn(3, 4, 5);
  const std::string path = (dir / "keep.npy").string();
  write_npy(path, good);
  const std::string before = read_file(path);
  for (DType dtype : {DType::kBF16, DType::kF8E4M3, DType::kF8E5M2}) {
    const Tensor bad = Tensor::matrix(3, 4, dtype);
    std::memset(bad.view().data, 0, size_t(bad.numel() * dtype_size(dtype)));
    EXPECT_NPY_ERROR(write_npy(path, bad), kDType, path, dtype_name(dtype), "convert to fp32");
  }
  EXPECT_EQ(read_file(path), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

TEST(NpyWriteError, UnwritablePathLeavesFileUntouched) {
  const fs::path dir = test_dir();
  const Tensor t = test::randn(3, 4, 6);
  const std::string no_dir = (dir / "no_such_dir" / "x.npy").string();
  EXPECT_NPY_ERROR(write_npy(no_dir, t), kIO, no_dir, "No such file or directory");
  EXPECT_FALSE(fs::exists(dir / "no_such_dir"));
  // The target is a (non-empty) directory: the rename fails, the temporary file is removed.
  const fs::path target = dir / "target.npy";
  fs::create_directories(target);
  write_file(target / "inside", "keep me");
  EXPECT_NPY_ERROR(write_npy(target.string(), t), kIO, target.string(), "rename failed");
  EXPECT_EQ(read_file(target / "inside"), "keep me");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

TEST(NpyWriteError, BadRankOrDevice) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "x.npy").string();
  const TensorView scalar;  // rank 0
  EXPECT_NPY_ERROR(write_npy(path, scalar), kShape, path, "rank 0");
  const Tensor cpu = test::randn(2, 2, 1);
  TensorView gpu = cpu.view();
  gpu.device = Device::kCUDA;  // never dereferenced: rejected first
  EXPECT_NPY_ERROR(write_npy(path, gpu), kDevice, path, "CPU");
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace
}  // namespace sparse24
