// The command-line tool end to end on .npy files: every method, check, and the error paths.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace sparse24 {
namespace {

struct CliResult {
  int code;
  std::string output;  // stdout and stderr
};

CliResult run(const std::string& args) {
  const std::string cmd = std::string(SPARSE24_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test: CTest runs tests in parallel.
    dir_ = std::filesystem::path(SPARSE24_TEST_TMPDIR) / "cli" /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

bool same(const TensorView& a, const TensorView& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (int64_t i = 0; i < a.rows(); ++i)
    for (int64_t j = 0; j < a.cols(); ++j)
      if (test::get(a, i, j) != test::get(b, i, j)) return false;
  return true;
}

// An 8 x 8 mask keeping (0,1) in every group, except row 1, group 1, which keeps three.
Tensor t_mask_with_bad_group() {
  Tensor m = Tensor::matrix(8, 8, DType::kU8);
  for (int i = 0; i < 64; ++i) m.data<uint8_t>()[i] = (i % 4) < 2;
  m.data<uint8_t>()[1 * 8 + 6] = 1;
  return m;
}

TEST_F(Cli, InfoAndHelp) {
  const CliResult info = run("info");
  EXPECT_EQ(info.code, 0) << info.output;
  EXPECT_NE(info.output.find(std::string("sparse24 ") + version()), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("GPU"), std::string::npos);
  EXPECT_EQ(run("--help").code, 0);
  EXPECT_EQ(run("").code, 2);
  const CliResult bad = run("frobnicate");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.output.find("unknown command 'frobnicate'"), std::string::npos);
  const CliResult extra = run("info now");
  EXPECT_EQ(extra.code, 2);
  EXPECT_NE(extra.output.find("expected 0 arguments (no arguments), got 1"), std::string::npos) << extra.output;
}

// "--" ends the options: what follows is positional even if it starts with "--", and "--" itself
// is no file name.
TEST_F(Cli, DoubleDashEndsTheOptions) {
  const std::filesystem::path cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_);
  const CliResult rel = run("randn --rows 4 --cols 8 -- --y.npy");
  std::filesystem::current_path(cwd);
  EXPECT_EQ(rel.code, 0) << rel.output;
  EXPECT_TRUE(std::filesystem::exists(dir_ / "--y.npy")) << rel.output;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "--")) << rel.output;
  const CliResult alone = run("randn --rows 4 --cols 8 --");
  EXPECT_EQ(alone.code, 2);
  EXPECT_NE(alone.output.find("expected 1 argument"), std::string::npos) << alone.output;
}

TEST_F(Cli, EveryMethodMatchesTheLibrary) {
  const Tensor w = test::randn(16, 24, 5);
  write_npy(path("w.npy"), w);
  struct Case { std::string args; Tensor want; };
  const Transposable24 t = prune_transposable(w);
  write_npy(path("mask.npy"), t.mask.to_dense());
  const float beta = float(sste_scale(w));
  const std::vector<Case> cases = {
      {"--method magnitude", decompress(prune_magnitude(w))},
      {"--method mvue --seed 42", decompress(prune_mvue(w, 42))},
      {"--method soft", decompress(prune_soft_threshold(w, beta))},
      {"--method soft --beta 1", decompress(prune_soft_threshold(w, 1.f))},
      {"--method transposable", decompress(t.w)},
      {"--method mask --mask " + path("mask.npy"), decompress(t.w)},
  };
  for (const Case& c : cases) {
    const CliResult r = run("prune " + path("w.npy") + " " + path("out.npy") + " " + c.args);
    ASSERT_EQ(r.code, 0) << c.args << "\n" << r.output;
    EXPECT_TRUE(same(read_npy(path("out.npy")).tensor, c.want)) << c.args;
  }
  // The mask written on request reads back as the transposable mask; the result checks as 2:4.
  ASSERT_EQ(run("prune " + path("w.npy") + " " + path("o.npy") + " --method transposable --mask-out " + path("m.npy")).code, 0);
  EXPECT_TRUE(Mask24::from_dense(read_npy(path("m.npy")).tensor) == t.mask);
  const CliResult check = run("check " + path("o.npy"));
  EXPECT_EQ(check.code, 0) << check.output;
  EXPECT_NE(check.output.find("transposable:      yes"), std::string::npos) << check.output;
}

TEST_F(Cli, StorageDtypes) {
  const Tensor w = test::randn(8, 16, 6);
  write_npy(path("w.npy"), w);
  ASSERT_EQ(run("prune " + path("w.npy") + " " + path("h.npy") + " --dtype fp16").code, 0);
  const NpyArray h = read_npy(path("h.npy"));
  EXPECT_EQ(h.descr, "<f2");
  CompressOptions o;
  o.dtype = DType::kF16;
  EXPECT_TRUE(same(h.tensor, decompress(prune_magnitude(w, o))));
  ASSERT_EQ(run("prune " + path("w.npy") + " " + path("q.npy") + " --dtype int8 --scale 0.05").code, 0);
  o.dtype = DType::kI8;
  o.scale = 0.05f;
  EXPECT_TRUE(same(read_npy(path("q.npy")).tensor, decompress(prune_magnitude(w, o))));
  ASSERT_EQ(run("prune " + path("w.npy") + " " + path("e.npy") + " --dtype e4m3 --scale 0.001 --saturate").code, 0);
  o.dtype = DType::kF8E4M3;
  o.scale = 0.001f;
  o.overflow = Overflow::kSaturate;
  EXPECT_TRUE(same(read_npy(path("e.npy")).tensor, decompress(prune_magnitude(w, o))));
}

TEST_F(Cli, CheckReportsAndExitCodes) {
  const Tensor w = test::randn(8, 8, 7);
  write_npy(path("dense.npy"), w);
  const CliResult dense = run("check " + path("dense.npy"));
  EXPECT_EQ(dense.code, 1);
  EXPECT_NE(dense.output.find("2:4 along rows:    no (row 0, columns 0..3"), std::string::npos) << dense.output;
  write_npy(path("rows.npy"), decompress(prune_magnitude(w)));
  EXPECT_EQ(run("check " + path("rows.npy")).code, 0);
  write_npy(path("odd.npy"), test::randn(5, 6, 1));
  const CliResult odd = run("check " + path("odd.npy"));
  EXPECT_EQ(odd.code, 1);
  EXPECT_NE(odd.output.find("6 columns, not divisible by 4"), std::string::npos) << odd.output;
}

TEST_F(Cli, ErrorsAreClearAndExitTwo) {
  const Tensor w = test::randn(8, 8, 8);
  write_npy(path("w.npy"), w);
  const std::string in = path("w.npy"), out = path("x.npy");
  // A truncated file.
  {
    std::ifstream f(in, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), {});
    std::ofstream(path("cut.npy"), std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() - 10));
  }
  // A mask with three ones in row 1, group 1.
  write_npy(path("badmask.npy"), t_mask_with_bad_group());
  struct Case { std::string args, words; };
  const std::vector<Case> cases = {
      {"prune " + path("missing.npy") + " " + out, "missing.npy"},
      {"prune " + path("cut.npy") + " " + out, "truncated"},
      {"prune " + in + " " + out + " --method mask --mask " + path("badmask.npy"), "row 1, group 1"},
      {"prune " + in + " " + out + " --method mask", "needs --mask"},
      {"prune " + in + " " + out + " --method bogus", "unknown --method 'bogus'"},
      {"prune " + in + " " + out + " --frobnicate", "unknown option --frobnicate"},
      {"prune " + in + " " + out + " --dtype int8", "explicit scale"},
      {"prune " + in + " " + out + " --dtype fp64", "unknown dtype 'fp64'"},
      {"prune " + in + " " + out + " --seed 3", "only for --method mvue"},
      {"prune " + in, "expected 2 arguments"},
      {"check", "expected 1 argument"},
      {"randn " + out + " --rows 0 --cols 4", "bad shape"},
      {"randn " + out + " --rows 4611686018427387904 --cols 4", "at most 2^32 elements"},  // no overflow
      {"prune " + in + " " + out + " --method soft --beta -1", "--beta must be finite and > 0"},
      {"prune " + in + " " + out + " --method soft --beta 1e39", "--beta is 1e39, outside the range of fp32"},
  };
  for (const Case& c : cases) {
    const CliResult r = run(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.words), std::string::npos) << c.args << "\n" << r.output;
  }
  // NaN input: an error naming the position by default, NaN in the output on request.
  Tensor n = Tensor::copy_of(w, Device::kCPU);
  n.data<float>()[2 * 8 + 5] = NAN;
  write_npy(path("nan.npy"), n);
  const CliResult r = run("prune " + path("nan.npy") + " " + out);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("row 2, column 5"), std::string::npos) << r.output;
  EXPECT_EQ(run("prune " + path("nan.npy") + " " + out + " --nan propagate").code, 0);
  // A given --beta is used as is: S-STE's default scale (which needs finite weights) is not computed.
  EXPECT_EQ(run("prune " + path("nan.npy") + " " + out + " --method soft --nan propagate --beta 1").code, 0);
  const Tensor zero = Tensor::matrix(8, 8, DType::kF32);
  fill_zeros(zero);
  write_npy(path("zero.npy"), zero);  // a zero matrix: no default scale
  const CliResult z = run("prune " + path("zero.npy") + " " + out + " --method soft");
  EXPECT_EQ(z.code, 2);
  EXPECT_EQ(run("prune " + path("zero.npy") + " " + out + " --method soft --beta 1").code, 0) << z.output;
}

}  // namespace
}  // namespace sparse24
