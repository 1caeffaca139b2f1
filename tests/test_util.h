// tests/test_util.h: random inputs and small helpers shared by the test files.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "sparse24/sparse24.h"

namespace sparse24::test {

// A rows x cols fp32 matrix of N(0, 1) values (row- or column-major), reproducible from seed.
inline Tensor randn(int64_t rows, int64_t cols, uint64_t seed, Layout layout = Layout::kRowMajor) {
  Tensor t = Tensor::matrix(rows, cols, DType::kF32, layout);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) *t.view().at<float>(i, j) = dist(rng);
  return t;
}

// Small integers in [-range, range]: many exact ties, for tie-break tests.
inline Tensor rand_ints(int64_t rows, int64_t cols, int range, uint64_t seed,
                        Layout layout = Layout::kRowMajor) {
  Tensor t = Tensor::matrix(rows, cols, DType::kF32, layout);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> dist(-range, range);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) *t.view().at<float>(i, j) = float(dist(rng));
  return t;
}

// The same matrix converted to `dtype` (fp32, fp16 or bf16), same layout.
inline Tensor convert(const TensorView& src, DType dtype, Layout layout = Layout::kRowMajor) {
  Tensor out = Tensor::matrix(src.rows(), src.cols(), dtype, layout);
  dispatch_dtype(src.dtype, [&](auto stag) {
    using S = typename decltype(stag)::type;
    dispatch_dtype(dtype, [&](auto dtag) {
      using D = typename decltype(dtag)::type;
      if constexpr (!std::is_same_v<D, uint8_t>)
      for (int64_t i = 0; i < src.rows(); ++i)
        for (int64_t j = 0; j < src.cols(); ++j)
          *out.view().at<D>(i, j) = from_f32<D>(to_f32(*src.at<const S>(i, j)), 1.f, Overflow::kPyTorch);
    });
  });
  return out;
}

// Element (i, j) of any CPU matrix as double (int8 unscaled).
inline double get(const TensorView& t, int64_t i, int64_t j) {
  return dispatch_dtype(t.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return double(to_f32(*t.at<const T>(i, j)));
  });
}

// Shapes (rows, cols) exercised by the shape sweeps: square, tall, wide, non-powers of two.
inline std::vector<std::pair<int64_t, int64_t>> sweep_shapes() {
  return {{4, 4}, {1, 8}, {8, 4}, {12, 20}, {36, 12}, {4, 100}, {100, 4}, {64, 64}, {60, 132}, {132, 44}};
}

// Runs fn and expects a sparse24::Error of `kind` whose message contains `words`.
inline void expect_error(const std::function<void()>& fn, ErrorKind kind, const std::string& words) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << words << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

// A fresh, empty directory for the running test: <SPARSE24_TEST_TMPDIR>/<suite>.<test> (CTest
// runs tests in parallel, so each has its own).
inline std::filesystem::path test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir =
      std::filesystem::path(SPARSE24_TEST_TMPDIR) / (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline std::string write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
  return p.string();
}

}  // namespace sparse24::test
