// The GPT-2 layers (sparse24/nn.h) on the CPU.
//
// Every forward is compared with a naive double-precision reference written here. Every backward
// is compared with central finite differences of the reference forward (in double, so the
// numerical gradient is accurate to ~1e-8) of L = sum(dout * forward(...)) for a fixed random
// dout: the library's fp32 gradients must match to a relative 1e-3. Outputs are allocated
// poisoned (NaN) so an element a kernel forgets to write shows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "sparse24/error.h"
#include "sparse24/nn.h"
#include "sparse24/tensor.h"

namespace sparse24 {
namespace {

using Vec = std::vector<double>;
using Ids = std::vector<int>;

constexpr double kFwdTol = 1e-5;   // fp32 forward vs double reference
constexpr double kGradTol = 1e-3;  // fp32 backward vs finite differences in double

// While alive, every new tensor starts as 0xFF bytes (NaN).
struct Poison {
  Poison() { set_alloc_poison(true); }
  ~Poison() { set_alloc_poison(false); }
};

// N(mean, scale^2) values, rounded to float so that the library and the reference see the same
// numbers.
Vec randn(size_t n, uint64_t seed, double scale = 1.0, double mean = 0.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, scale);
  Vec v(n);
  for (double& x : v) x = double(float(dist(rng)));
  return v;
}

Ids rand_ids(size_t n, int V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> dist(0, V - 1);
  Ids v(n);
  for (int& x : v) x = dist(rng);
  return v;
}

// An fp32 tensor of the given shape holding `values` (or uninitialised / poisoned when empty).
Tensor f32(std::initializer_list<int64_t> shape, const Vec& values = {}) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  if (!values.empty()) {
    EXPECT_EQ(int64_t(values.size()), t.numel());
    for (size_t i = 0; i < values.size(); ++i) t.data<float>()[i] = float(values[i]);
  }
  return t;
}
Tensor zeros(std::initializer_list<int64_t> shape) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  std::fill(t.data<float>(), t.data<float>() + t.numel(), 0.f);
  return t;
}
Tensor i32(const Ids& ids) {
  Tensor t = Tensor::empty({int64_t(ids.size())}, DType::kI32);
  std::copy(ids.begin(), ids.end(), t.data<int32_t>());
  return t;
}
Vec values(const TensorView& t) {
  const float* p = static_cast<const float*>(t.data);
  return Vec(p, p + t.numel());
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// got (fp32) against want (double): |got - want| <= rtol * max(|want|, 0.1 * max|want|), so
// elements far below the largest are held to an absolute tolerance at that scale.
void expect_close(const TensorView& got, const Vec& want, double rtol, const std::string& what) {
  ASSERT_EQ(got.numel(), int64_t(want.size())) << what;
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  const float* g = static_cast<const float*>(got.data);
  int failures = 0;
  for (size_t i = 0; i < want.size() && failures < 5; ++i) {
    const double tol = rtol * std::max(std::abs(want[i]), 0.1 * scale) + 1e-30;
    if (!(std::abs(double(g[i]) - want[i]) <= tol)) {
      ADD_FAILURE() << what << "[" << i << "]: got " << g[i] << ", want " << want[i] << " (tolerance " << tol
                    << ")";
      ++failures;
    }
  }
}

// Central differences in double of loss() with respect to every element of x (perturbed in
// place and restored).
Vec numeric_grad(Vec& x, const std::function<double()>& loss, double eps = 1e-4) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + eps;
    const double up = loss();
    x[i] = saved - eps;
    const double down = loss();
    x[i] = saved;
    g[i] = (up - down) / (2 * eps);
  }
  return g;
}

// Runs f, which must throw sparse24::Error of `kind` whose message holds every part.
template <typename F>
void expect_error(F&& f, ErrorKind kind, std::initializer_list<const char*> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown (expected " << error_kind_name(kind) << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const char* p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// The double-precision references.

Vec ref_encoder(const Ids& tok, const Vec& wte, const Vec& wpe, int B, int T, int C) {
  Vec out(size_t(B * T * C));
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c)
        out[size_t((b * T + t) * C + c)] = wte[size_t(tok[size_t(b * T + t)] * C + c)] + wpe[size_t(t * C + c)];
  return out;
}

Vec ref_layernorm(const Vec& x, const Vec& w, const Vec& bias, int N, int C, Vec* mean = nullptr,
                  Vec* rstd = nullptr) {
  Vec out(size_t(N * C));
  if (mean) mean->assign(size_t(N), 0);
  if (rstd) rstd->assign(size_t(N), 0);
  for (int i = 0; i < N; ++i) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += x[size_t(i * C + c)];
    m /= C;
    for (int c = 0; c < C; ++c) v += (x[size_t(i * C + c)] - m) * (x[size_t(i * C + c)] - m);
    v /= C;
    const double s = 1 / std::sqrt(v + 1e-5);
    for (int c = 0; c < C; ++c) out[size_t(i * C + c)] = (x[size_t(i * C + c)] - m) * s * w[size_t(c)] + bias[size_t(c)];
    if (mean) (*mean)[size_t(i)] = m;
    if (rstd) (*rstd)[size_t(i)] = s;
  }
  return out;
}

Vec ref_matmul(const Vec& x, const Vec& w, const Vec* bias, int N, int C, int OC) {
  Vec out(size_t(N * OC));
  for (int i = 0; i < N; ++i)
    for (int o = 0; o < OC; ++o) {
      double s = bias ? (*bias)[size_t(o)] : 0.0;
      for (int c = 0; c < C; ++c) s += x[size_t(i * C + c)] * w[size_t(o * C + c)];
      out[size_t(i * OC + o)] = s;
    }
  return out;
}

Vec ref_attention(const Vec& qkv, int B, int T, int C, int NH, Vec* preatt = nullptr, Vec* att = nullptr) {
  const int hs = C / NH;
  Vec out(size_t(B * T * C), 0.0);
  if (preatt) preatt->assign(size_t(B * NH * T * T), 0.0);
  if (att) att->assign(size_t(B * NH * T * T), 0.0);
  auto at = [&](int b, int t, int part, int h, int i) { return qkv[size_t((b * T + t) * 3 * C + part * C + h * hs + i)]; };
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        Vec score(size_t(t + 1));
        double mx = -1e300;
        for (int t2 = 0; t2 <= t; ++t2) {
          double s = 0;
          for (int i = 0; i < hs; ++i) s += at(b, t, 0, h, i) * at(b, t2, 1, h, i);
          score[size_t(t2)] = s / std::sqrt(double(hs));
          mx = std::max(mx, score[size_t(t2)]);
        }
        double sum = 0;
        for (int t2 = 0; t2 <= t; ++t2) sum += std::exp(score[size_t(t2)] - mx);
        for (int t2 = 0; t2 <= t; ++t2) {
          const double p = std::exp(score[size_t(t2)] - mx) / sum;
          const size_t idx = size_t(((b * NH + h) * T + t) * T + t2);
          if (preatt) (*preatt)[idx] = score[size_t(t2)];
          if (att) (*att)[idx] = p;
          for (int i = 0; i < hs; ++i) out[size_t((b * T + t) * C + h * hs + i)] += p * at(b, t2, 2, h, i);
        }
      }
  return out;
}

// GELU, tanh approximation: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). The
// reference uses the identity 1 + tanh(u) = 2 / (1 + exp(-2u)), which keeps its relative accuracy
// at large negative x, where 1 + tanh(u) cancels (the test GeluTanhFormAgrees checks the identity).
const double kPi = 3.14159265358979323846;
double gelu_u(double x) { return std::sqrt(2 / kPi) * (x + 0.044715 * x * x * x); }
double ref_gelu(double x) { return x / (1 + std::exp(-2 * gelu_u(x))); }
double ref_gelu_tanh(double x) { return 0.5 * x * (1 + std::tanh(gelu_u(x))); }
// d gelu / dx = s + 2 x s (1 - s) du/dx with s = sigmoid(2u).
double ref_gelu_grad(double x) {
  const double s = 1 / (1 + std::exp(-2 * gelu_u(x)));
  return s + 2 * x * s * (1 - s) * std::sqrt(2 / kPi) * (1 + 3 * 0.044715 * x * x);
}

Vec ref_crossentropy(const Vec& logits, const Ids& targets, int N, int V, Vec* probs = nullptr) {
  Vec losses(static_cast<size_t>(N));
  if (probs) probs->assign(size_t(N * V), 0);
  for (int i = 0; i < N; ++i) {
    double mx = -1e300, sum = 0;
    for (int v = 0; v < V; ++v) mx = std::max(mx, logits[size_t(i * V + v)]);
    for (int v = 0; v < V; ++v) sum += std::exp(logits[size_t(i * V + v)] - mx);
    losses[size_t(i)] = std::log(sum) - (logits[size_t(i * V + targets[size_t(i)])] - mx);
    if (probs)
      for (int v = 0; v < V; ++v) (*probs)[size_t(i * V + v)] = std::exp(logits[size_t(i * V + v)] - mx) / sum;
  }
  return losses;
}

// ---------------------------------------------------------------------------------------------
// Encoder.

TEST(NnEncoder, ForwardMatchesReference) {
  Poison poison;
  const int B = 2, T = 3, C = 5, V = 7, maxT = 4;
  const Ids tok = rand_ids(size_t(B * T), V, 1);
  const Vec wte = randn(size_t(V * C), 2), wpe = randn(size_t(maxT * C), 3);
  Tensor out = f32({B * T, C});
  nn::encoder_forward(out, i32(tok), f32({V, C}, wte), f32({maxT, C}, wpe), B, T);
  expect_close(out, ref_encoder(tok, wte, wpe, B, T, C), 1e-7, "out");
}

TEST(NnEncoder, BackwardMatchesFiniteDifferencesAndAccumulates) {
  const int B = 2, T = 4, C = 3, V = 5, maxT = 6;
  const Ids tok = {1, 3, 1, 0, 3, 3, 4, 1};  // repeated ids: their gradients add up
  Vec wte = randn(size_t(V * C), 4), wpe = randn(size_t(maxT * C), 5);
  const Vec dout = randn(size_t(B * T * C), 6);
  auto loss = [&] { return dot(dout, ref_encoder(tok, wte, wpe, B, T, C)); };
  const Vec gwte = numeric_grad(wte, loss), gwpe = numeric_grad(wpe, loss);

  Tensor dwte = zeros({V, C}), dwpe = zeros({maxT, C});
  nn::encoder_backward(dwte, dwpe, f32({B * T, C}, dout), i32(tok), B, T);
  expect_close(dwte, gwte, kGradTol, "dwte");
  expect_close(dwpe, gwpe, kGradTol, "dwpe");
  Vec twice_te = values(dwte), twice_pe = values(dwpe);
  for (double& v : twice_te) v *= 2;
  for (double& v : twice_pe) v *= 2;
  nn::encoder_backward(dwte, dwpe, f32({B * T, C}, dout), i32(tok), B, T);
  expect_close(dwte, twice_te, 1e-6, "dwte twice");
  expect_close(dwpe, twice_pe, 1e-6, "dwpe twice");
}

TEST(NnEncoder, RejectsBadTokenIdsAndTooLongSequences) {
  const int B = 2, T = 3, C = 4, V = 10;
  Tensor out = f32({B * T, C}), wte = zeros({V, C}), wpe = zeros({T, C});
  expect_error([&] { nn::encoder_forward(out, i32({0, 1, 2, 3, 10, 5}), wte, wpe, B, T); }, ErrorKind::kValue,
               {"encoder_forward", "token id 10", "position 4", "b = 1, t = 1", "V = 10"});
  expect_error([&] { nn::encoder_forward(out, i32({0, -1, 2, 3, 4, 5}), wte, wpe, B, T); }, ErrorKind::kValue,
               {"token id -1", "position 1"});
  Tensor dwte = zeros({V, C}), dwpe = zeros({T, C});
  expect_error([&] { nn::encoder_backward(dwte, dwpe, zeros({B * T, C}), i32({0, 1, 2, 3, 4, 99}), B, T); },
               ErrorKind::kValue, {"encoder_backward", "token id 99", "position 5"});
  Tensor wpe2 = zeros({2, C});
  expect_error([&] { nn::encoder_forward(out, i32({0, 1, 2, 3, 4, 5}), wte, wpe2, B, T); }, ErrorKind::kShape,
               {"T = 3", "2 positions", "fp32[2 x 4"});
  expect_error([&] { nn::encoder_forward(out, f32({B * T}, Vec(6, 0.0)), wte, wpe, B, T); }, ErrorKind::kDType,
               {"tokens", "fp32[6, cpu]", "int32"});
  expect_error([&] { nn::encoder_forward(out, i32({0, 1, 2, 3, 4}), wte, wpe, B, T); }, ErrorKind::kShape,
               {"tokens", "int32[5, cpu]", "[B*T] = [6]"});
}

// ---------------------------------------------------------------------------------------------
// LayerNorm.

TEST(NnLayerNorm, ForwardMatchesReference) {
  Poison poison;
  const int N = 6, C = 24;
  const Vec x = randn(size_t(N * C), 10, 2.0, 3.0), w = randn(size_t(C), 11), b = randn(size_t(C), 12);
  Vec mean_ref, rstd_ref;
  const Vec out_ref = ref_layernorm(x, w, b, N, C, &mean_ref, &rstd_ref);
  Tensor out = f32({N, C}), mean = f32({N}), rstd = f32({N});
  nn::layernorm_forward(out, mean, rstd, f32({N, C}, x), f32({C}, w), f32({C}, b));
  expect_close(out, out_ref, kFwdTol, "out");
  expect_close(mean, mean_ref, kFwdTol, "mean");
  expect_close(rstd, rstd_ref, kFwdTol, "rstd");
}

TEST(NnLayerNorm, BackwardMatchesFiniteDifferencesAndAccumulates) {
  const int N = 4, C = 10;
  Vec x = randn(size_t(N * C), 13, 1.5, -0.7), w = randn(size_t(C), 14), b = randn(size_t(C), 15);
  const Vec dout = randn(size_t(N * C), 16);
  auto loss = [&] { return dot(dout, ref_layernorm(x, w, b, N, C)); };
  const Vec gx = numeric_grad(x, loss), gw = numeric_grad(w, loss), gb = numeric_grad(b, loss);

  Tensor mean = f32({N}), rstd = f32({N}), out = f32({N, C});
  Tensor tx = f32({N, C}, x), tw = f32({C}, w), tdout = f32({N, C}, dout);
  nn::layernorm_forward(out, mean, rstd, tx, tw, f32({C}, b));
  Tensor dx = zeros({N, C}), dw = zeros({C}), db = zeros({C});
  nn::layernorm_backward(dx, dw, db, tdout, tx, tw, mean, rstd);
  expect_close(dx, gx, kGradTol, "dinp");
  expect_close(dw, gw, kGradTol, "dweight");
  expect_close(db, gb, kGradTol, "dbias");
  const Vec x1 = values(dx), w1 = values(dw), b1 = values(db);
  nn::layernorm_backward(dx, dw, db, tdout, tx, tw, mean, rstd);
  Vec x2 = x1, w2 = w1, b2 = b1;
  for (double& v : x2) v *= 2;
  for (double& v : w2) v *= 2;
  for (double& v : b2) v *= 2;
  expect_close(dx, x2, 1e-6, "dinp twice");
  expect_close(dw, w2, 1e-6, "dweight twice");
  expect_close(db, b2, 1e-6, "dbias twice");
}

// ---------------------------------------------------------------------------------------------
// Matmul.

TEST(NnMatmul, ForwardMatchesReferenceWithAndWithoutBias) {
  Poison poison;
  // Small, and past every block boundary of the CPU kernel (k slabs of 256, column blocks of
  // 256, row blocks of 128, micro-tiles of 16 columns and up to 8 rows).
  for (auto [N, C, OC] : {std::tuple{5, 7, 3}, std::tuple{1, 1, 1}, std::tuple{131, 300, 270}}) {
    const Vec x = randn(size_t(N * C), 20), w = randn(size_t(OC * C), 21), bias = randn(size_t(OC), 22);
    Tensor out = f32({N, OC}), out_nb = f32({N, OC});
    Tensor tb = f32({OC}, bias);
    nn::matmul_forward(out, f32({N, C}, x), f32({OC, C}, w), &tb.view());
    nn::matmul_forward(out_nb, f32({N, C}, x), f32({OC, C}, w), nullptr);
    const std::string shape = std::to_string(N) + "x" + std::to_string(C) + "x" + std::to_string(OC);
    expect_close(out, ref_matmul(x, w, &bias, N, C, OC), kFwdTol, "out " + shape);
    expect_close(out_nb, ref_matmul(x, w, nullptr, N, C, OC), kFwdTol, "out (no bias) " + shape);
  }
}

TEST(NnMatmul, ForwardSumsInOrderWhateverTheBlocking) {
  // Each element is bias + x0 w0 + x1 w1 + ... in fp32, in this order (the documented
  // guarantee: blocking, vector width and threads change no bit).
  const int N = 19, C = 520, OC = 37;
  const Vec x = randn(size_t(N * C), 23), w = randn(size_t(OC * C), 24), bias = randn(size_t(OC), 25);
  Tensor out = f32({N, OC}), tb = f32({OC}, bias);
  nn::matmul_forward(out, f32({N, C}, x), f32({OC, C}, w), &tb.view());
  for (int i = 0; i < N; ++i)
    for (int o = 0; o < OC; ++o) {
      float s = float(bias[size_t(o)]);
      for (int c = 0; c < C; ++c) s = s + float(x[size_t(i * C + c)]) * float(w[size_t(o * C + c)]);
      ASSERT_EQ(out.data<float>()[i * OC + o], s) << i << ", " << o;
    }
}

TEST(NnMatmul, BackwardMatchesFiniteDifferencesAndAccumulates) {
  const int N = 5, C = 7, OC = 6;
  Vec x = randn(size_t(N * C), 26), w = randn(size_t(OC * C), 27), bias = randn(size_t(OC), 28);
  const Vec dout = randn(size_t(N * OC), 29);
  auto loss = [&] { return dot(dout, ref_matmul(x, w, &bias, N, C, OC)); };
  const Vec gx = numeric_grad(x, loss), gw = numeric_grad(w, loss), gb = numeric_grad(bias, loss);

  Tensor tx = f32({N, C}, x), tw = f32({OC, C}, w), tdout = f32({N, OC}, dout);
  Tensor dx = zeros({N, C}), dw = zeros({OC, C}), db = zeros({OC});
  nn::matmul_backward(&dx.view(), dw, &db.view(), tdout, tx, tw);
  expect_close(dx, gx, kGradTol, "dinp");
  expect_close(dw, gw, kGradTol, "dweight");
  expect_close(db, gb, kGradTol, "dbias");

  const Vec x1 = values(dx), w1 = values(dw), b1 = values(db);
  nn::matmul_backward(&dx.view(), dw, &db.view(), tdout, tx, tw);
  Vec x2 = x1, w2 = w1, b2 = b1;
  for (double& v : x2) v *= 2;
  for (double& v : w2) v *= 2;
  for (double& v : b2) v *= 2;
  expect_close(dx, x2, 1e-6, "dinp twice");
  expect_close(dw, w2, 1e-6, "dweight twice");
  expect_close(db, b2, 1e-6, "dbias twice");

  // Without dinp and dbias: dweight alone, the same values.
  Tensor dw_only = zeros({OC, C});
  nn::matmul_backward(nullptr, dw_only, nullptr, tdout, tx, tw);
  expect_close(dw_only, w1, 0, "dweight alone");
}

TEST(NnMatmul, BackwardMatchesReferenceAcrossBlocks) {
  // The three products in double, on a shape that crosses the kernel's block boundaries
  // (N > 256 is the k dimension of dweight).
  const int N = 270, C = 40, OC = 300;
  const Vec x = randn(size_t(N * C), 30), w = randn(size_t(OC * C), 31), dout = randn(size_t(N * OC), 32);
  Vec gx(size_t(N * C), 0), gw(size_t(OC * C), 0), gb(size_t(OC), 0);
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      const double d = dout[size_t(n * OC + o)];
      gb[size_t(o)] += d;
      for (int c = 0; c < C; ++c) {
        gx[size_t(n * C + c)] += d * w[size_t(o * C + c)];
        gw[size_t(o * C + c)] += d * x[size_t(n * C + c)];
      }
    }
  Tensor dx = zeros({N, C}), dw = zeros({OC, C}), db = zeros({OC});
  nn::matmul_backward(&dx.view(), dw, &db.view(), f32({N, OC}, dout), f32({N, C}, x), f32({OC, C}, w));
  expect_close(dx, gx, kFwdTol * 10, "dinp");
  expect_close(dw, gw, kFwdTol * 10, "dweight");
  expect_close(db, gb, kFwdTol * 10, "dbias");
}

// ---------------------------------------------------------------------------------------------
// Attention.

TEST(NnAttention, ForwardMatchesReferenceAndIsCausal) {
  Poison poison;
  const int B = 2, T = 5, C = 8, NH = 2;
  const Vec qkv = randn(size_t(B * T * 3 * C), 40);
  Vec pre_ref, att_ref;
  const Vec out_ref = ref_attention(qkv, B, T, C, NH, &pre_ref, &att_ref);
  Tensor out = f32({B * T, C}), preatt = f32({B, NH, T, T}), att = f32({B, NH, T, T});
  nn::attention_forward(out, preatt, att, f32({B * T, 3 * C}, qkv), B, T, C, NH);
  expect_close(out, out_ref, kFwdTol, "out");
  expect_close(preatt, pre_ref, kFwdTol, "preatt");
  expect_close(att, att_ref, kFwdTol, "att");

  // Rows of att sum to 1, and nothing above the diagonal.
  const float* a = att.data<float>();
  for (int bh = 0; bh < B * NH; ++bh)
    for (int t = 0; t < T; ++t) {
      double sum = 0;
      for (int t2 = 0; t2 < T; ++t2) {
        const float v = a[(bh * T + t) * T + t2];
        if (t2 > t) {
          EXPECT_EQ(v, 0.f);
        }
        sum += v;
      }
      EXPECT_NEAR(sum, 1.0, 1e-6);
    }

  // A change of the last position's q, k and v changes no earlier output (bit for bit).
  Vec qkv2 = qkv;
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < 3 * C; ++j) qkv2[size_t((b * T + T - 1) * 3 * C + j)] += 5.0;
  Tensor out2 = f32({B * T, C});
  nn::attention_forward(out2, preatt, att, f32({B * T, 3 * C}, qkv2), B, T, C, NH);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c) {
        const float before = out.data<float>()[(b * T + t) * C + c], after = out2.data<float>()[(b * T + t) * C + c];
        if (t < T - 1) {
          EXPECT_EQ(before, after) << "b " << b << " t " << t << " c " << c;
        } else {
          EXPECT_NE(before, after) << "b " << b << " t " << t << " c " << c;
        }
      }
}

TEST(NnAttention, BackwardMatchesFiniteDifferencesAndAccumulates) {
  Poison poison;  // the scratch buffers start as NaN: the backward must not read them unwritten
  const int B = 2, T = 4, C = 6, NH = 3;
  Vec qkv = randn(size_t(B * T * 3 * C), 41);
  const Vec dout = randn(size_t(B * T * C), 42);
  auto loss = [&] { return dot(dout, ref_attention(qkv, B, T, C, NH)); };
  const Vec gqkv = numeric_grad(qkv, loss);

  Tensor tqkv = f32({B * T, 3 * C}, qkv), tdout = f32({B * T, C}, dout);
  Tensor out = f32({B * T, C}), preatt = f32({B, NH, T, T}), att = f32({B, NH, T, T});
  nn::attention_forward(out, preatt, att, tqkv, B, T, C, NH);
  Tensor dqkv = zeros({B * T, 3 * C}), dpreatt = f32({B, NH, T, T}), datt = f32({B, NH, T, T});
  nn::attention_backward(dqkv, dpreatt, datt, tdout, tqkv, att, B, T, C, NH);
  expect_close(dqkv, gqkv, kGradTol, "dqkv");
  for (int64_t i = 0; i < datt.numel(); ++i) {
    ASSERT_TRUE(std::isfinite(datt.data<float>()[i])) << i;
    ASSERT_TRUE(std::isfinite(dpreatt.data<float>()[i])) << i;
  }

  const Vec once = values(dqkv);
  nn::attention_backward(dqkv, dpreatt, datt, tdout, tqkv, att, B, T, C, NH);
  Vec twice = once;
  for (double& v : twice) v *= 2;
  expect_close(dqkv, twice, 1e-6, "dqkv twice");
}

// ---------------------------------------------------------------------------------------------
// GELU and residual.

TEST(NnGelu, ForwardMatchesReferenceAndRunsInPlace) {
  Poison poison;
  Vec x = randn(40, 50, 2.0);
  for (double v : {-12.0, -6.0, -3.0, 0.0, 3.0, 6.0, 12.0}) x.push_back(v);
  const int64_t n = int64_t(x.size());
  Vec want(x.size());
  for (size_t i = 0; i < x.size(); ++i) want[i] = ref_gelu(x[i]);
  Tensor out = f32({n});
  nn::gelu_forward(out, f32({n}, x));
  expect_close(out, want, kFwdTol, "gelu");
  Tensor inplace = f32({n}, x);
  nn::gelu_forward(inplace, inplace);
  expect_close(inplace, want, kFwdTol, "gelu in place");
  // Any rank: a [2, 3, 4] tensor.
  const Vec x3 = randn(24, 51);
  Tensor out3 = Tensor::empty({2, 3, 4}, DType::kF32), in3 = Tensor::empty({2, 3, 4}, DType::kF32);
  for (int i = 0; i < 24; ++i) in3.data<float>()[i] = float(x3[size_t(i)]);
  nn::gelu_forward(out3, in3);
  for (int i = 0; i < 24; ++i) EXPECT_NEAR(out3.data<float>()[i], ref_gelu(x3[size_t(i)]), 1e-6);
}

TEST(NnGelu, GeluTanhFormAgrees) {  // the reference's identity, where both forms are accurate
  for (double x = -4; x <= 4; x += 0.25) EXPECT_NEAR(ref_gelu(x), ref_gelu_tanh(x), 1e-14) << x;
}

TEST(NnGelu, AccurateInTheNegativeTail) {
  // Each value and derivative to a relative 1e-4, where 1 + tanh(u) in fp32 would have lost most
  // of its digits (x = -7: 1 + tanh(u) = 2.5e-6).
  const Vec x = {-2, -3, -4, -5, -6, -7, -9};
  const int64_t n = int64_t(x.size());
  Tensor out = f32({n}), dx = zeros({n}), tx = f32({n}, x);
  nn::gelu_forward(out, tx);
  nn::gelu_backward(dx, tx, f32({n}, Vec(x.size(), 1.0)));
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(out.data<float>()[i], ref_gelu(x[i]), 1e-4 * std::abs(ref_gelu(x[i]))) << x[i];
    EXPECT_NEAR(dx.data<float>()[i], ref_gelu_grad(x[i]), 1e-4 * std::abs(ref_gelu_grad(x[i]))) << x[i];
  }
}

// Far from 0 gelu'(x) is exactly 1 (x > 0) or 0 (x < 0) in fp32, also where 2 x du/dx overflows
// (|x| above ~1e19) and at the infinities.
TEST(NnGelu, DerivativeAtHugeMagnitudes) {
  const float inf = std::numeric_limits<float>::infinity();
  const Vec x = {20, -20, 1e13, -1e13, 1e20, -1e20, 3e38, -3e38, inf, -inf};
  const int64_t n = int64_t(x.size());
  Tensor dx = zeros({n}), tx = f32({n}, x);
  nn::gelu_backward(dx, tx, f32({n}, Vec(x.size(), 2.0)));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(dx.data<float>()[i], x[i] > 0 ? 2.f : 0.f) << x[i];
}

TEST(NnGelu, BackwardMatchesFiniteDifferencesAndOverwrites) {
  Poison poison;
  const int n = 30;
  Vec x = randn(size_t(n), 52, 2.0);
  const Vec dout = randn(size_t(n), 53);
  auto loss = [&] {
    double s = 0;
    for (int i = 0; i < n; ++i) s += dout[size_t(i)] * ref_gelu(x[size_t(i)]);
    return s;
  };
  const Vec gx = numeric_grad(x, loss);
  Tensor dx = f32({n}), tx = f32({n}, x), tdout = f32({n}, dout);  // dx poisoned: overwritten
  nn::gelu_backward(dx, tx, tdout);
  expect_close(dx, gx, kGradTol, "dinp");
  const Vec once = values(dx);
  nn::gelu_backward(dx, tx, tdout);  // a second call gives the same, not twice
  for (int i = 0; i < n; ++i) EXPECT_EQ(dx.data<float>()[i], float(once[size_t(i)])) << i;
}

// The same bits in place: dinp = dout (an FFN's backward) and dinp = inp.
TEST(NnGelu, BackwardRunsInPlace) {
  const int n = 257;
  const Vec x = randn(size_t(n), 54, 3.0), dout = randn(size_t(n), 55);
  Tensor want = f32({n});
  nn::gelu_backward(want, f32({n}, x), f32({n}, dout));
  Tensor on_dout = f32({n}, dout);
  nn::gelu_backward(on_dout, f32({n}, x), on_dout);
  expect_close(on_dout, values(want), 0, "dinp = dout");
  Tensor on_inp = f32({n}, x);
  nn::gelu_backward(on_inp, on_inp, f32({n}, dout));
  expect_close(on_inp, values(want), 0, "dinp = inp");
  Tensor partly = f32({n + 1}, Vec(size_t(n + 1), 0.5));  // an output overlapping an input partly
  TensorView head = partly.view(), tail = partly.view();
  head.shape[0] = tail.shape[0] = n;
  tail.data = partly.data<float>() + 1;
  expect_error([&] { nn::gelu_backward(head, f32({n}, x), tail); }, ErrorKind::kValue,
               {"gelu_backward", "dinp fp32[257, cpu] overlaps dout", "exactly, not partly"});
}

// fp16 and bf16: the fp32 computation on the decoded inputs (as the fp32 path computes it),
// rounded once to the storage type (to nearest even), bit for bit; in place too.
Tensor typed(std::initializer_list<int64_t> shape, DType dtype, const Vec& values) {
  Tensor t = Tensor::empty(shape, dtype);
  dispatch_input_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (size_t i = 0; i < values.size(); ++i) t.data<T>()[i] = from_f32<T>(float(values[i]), 1.f, Overflow::kPyTorch);
  });
  return t;
}
Vec decoded(const TensorView& t) {  // every element as float (exact), then double
  Vec v(size_t(t.numel()));
  dispatch_input_dtype(t.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (size_t i = 0; i < v.size(); ++i) v[i] = to_f32(static_cast<const T*>(t.data)[i]);
  });
  return v;
}
// Bitwise: got (any of the three dtypes) holds `want` (fp32 values) rounded once to its dtype.
void expect_rounded(const TensorView& got, const TensorView& want, const std::string& what) {
  ASSERT_EQ(got.numel(), want.numel()) << what;
  const Tensor r = typed({want.numel()}, got.dtype, values(want));
  const size_t es = size_t(dtype_size(got.dtype));
  for (int64_t i = 0; i < got.numel(); ++i)
    if (std::memcmp(static_cast<const char*>(got.data) + size_t(i) * es, static_cast<const char*>(r.view().data) + size_t(i) * es, es) != 0) {
      ADD_FAILURE() << what << " " << dtype_name(got.dtype) << "[" << i << "]: got " << decoded(got)[size_t(i)]
                    << ", want " << decoded(r)[size_t(i)] << " (fp32 " << values(want)[size_t(i)] << ")";
      return;
    }
}

TEST(NnGelu, HalfTypesRoundTheFp32ResultOnce) {
  Poison poison;
  Vec x = randn(600, 56, 3.0);
  for (double v : {-12.0, -6.0, -3.0, -0.75, 0.0, 1e-4, 3.0, 6.0, 12.0, 300.0, -300.0}) x.push_back(v);
  const Vec dout = randn(x.size(), 57, 2.0);
  const int64_t n = int64_t(x.size());
  for (DType dt : {DType::kF16, DType::kBF16}) {
    const Tensor tx = typed({n}, dt, x), td = typed({n}, dt, dout);
    Tensor fx = f32({n}, decoded(tx)), fd = f32({n}, decoded(td));  // the same values in fp32
    Tensor want_fwd = f32({n}), want_bwd = f32({n});
    nn::gelu_forward(want_fwd, fx);
    nn::gelu_backward(want_bwd, fx, fd);

    Tensor out = Tensor::empty({n}, dt), dx = Tensor::empty({n}, dt);
    nn::gelu_forward(out, tx);
    expect_rounded(out, want_fwd, "gelu_forward");
    nn::gelu_backward(dx, tx, td);
    expect_rounded(dx, want_bwd, "gelu_backward");

    Tensor inplace = typed({n}, dt, x);
    nn::gelu_forward(inplace, inplace);
    expect_rounded(inplace, want_fwd, "gelu_forward in place");
    Tensor on_dout = typed({n}, dt, dout);
    nn::gelu_backward(on_dout, tx, on_dout);
    expect_rounded(on_dout, want_bwd, "gelu_backward dinp = dout");
    // Any rank: [3, 7, 2] views of the first 42 elements.
    Tensor out3 = Tensor::empty({3, 7, 2}, dt), in3 = Tensor::empty({3, 7, 2}, dt);
    std::memcpy(in3.view().data, tx.view().data, size_t(42 * dtype_size(dt)));
    nn::gelu_forward(out3, in3);
    EXPECT_EQ(std::memcmp(out3.view().data, out.view().data, size_t(42 * dtype_size(dt))), 0) << dtype_name(dt);
  }
}

TEST(NnGelu, RejectsMixedAndNonFloatDtypes) {
  const Tensor x32 = zeros({4}), x16 = Tensor::empty({4}, DType::kF16), xb = Tensor::empty({4}, DType::kBF16);
  expect_error([&] { nn::gelu_forward(x16, x32); }, ErrorKind::kDType,
               {"gelu_forward", "out fp16[4, cpu] must be fp32 (the dtype of inp)"});
  expect_error([&] { nn::gelu_backward(Tensor::empty({4}, DType::kF16), x16, xb); }, ErrorKind::kDType,
               {"gelu_backward", "dout bf16[4, cpu] must be fp16 (the dtype of inp)"});
  expect_error([&] { nn::gelu_backward(x32, Tensor::empty({4}, DType::kI32), x32); }, ErrorKind::kDType,
               {"gelu_backward", "inp int32[4, cpu] must be fp32, fp16 or bf16"});
  expect_error([&] { nn::gelu_forward(Tensor::empty({4}, DType::kF8E4M3), Tensor::empty({4}, DType::kF8E4M3)); },
               ErrorKind::kDType, {"inp e4m3[4, cpu] must be fp32, fp16 or bf16"});
  const Tensor m = zeros({4, 6});
  expect_error([&] { nn::gelu_forward(zeros({6, 4}), m.view().t()); }, ErrorKind::kShape,
               {"gelu_forward", "inp fp32[6 x 4, col-major, cpu]", "contiguous"});
}

// ---------------------------------------------------------------------------------------------
// Bias gradient.

// What bias_backward defines: dbias[o] + (the fp32 sum from 0 of column o, in row order).
Vec ref_bias_backward(const TensorView& dbias, const TensorView& dout) {
  Vec want = values(dbias);
  for (int64_t o = 0; o < dout.cols(); ++o) {
    float s = 0.f;
    for (int64_t i = 0; i < dout.rows(); ++i)
      s += float(dispatch_input_dtype(dout.dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        return to_f32(*dout.at<const T>(i, o));
      }));
    want[size_t(o)] = double(float(want[size_t(o)]) + s);
  }
  return want;
}

// A matrix view [rows, cols] of `dtype` filled with N(0, 1) values in one of four layouts:
// row-major, a transposed view (column-major), a row-major view with gaps between rows, every
// other column of a wider matrix. `holder` owns the memory.
enum class BiasLayout { kRowMajor, kTransposed, kRowGaps, kEveryOtherColumn };
TensorView bias_dout(int64_t rows, int64_t cols, DType dtype, BiasLayout layout, uint64_t seed, Tensor& holder) {
  const Vec v = randn(size_t(std::max<int64_t>(rows * cols, 0)) * 2 + size_t(rows) * 3 + 1, seed);
  TensorView view;
  switch (layout) {
    case BiasLayout::kRowMajor:
      holder = typed({rows, cols}, dtype, Vec(v.begin(), v.begin() + rows * cols));
      return holder.view();
    case BiasLayout::kTransposed:
      holder = typed({cols, rows}, dtype, Vec(v.begin(), v.begin() + rows * cols));
      return holder.view().t();
    case BiasLayout::kRowGaps:
      holder = typed({rows, cols + 3}, dtype, Vec(v.begin(), v.begin() + rows * (cols + 3)));
      view = holder.view();
      view.shape[1] = cols;
      return view;
    case BiasLayout::kEveryOtherColumn:
    default:
      holder = typed({rows, 2 * cols}, dtype, Vec(v.begin(), v.begin() + rows * 2 * cols));
      view = holder.view();
      view.shape[1] = cols;
      view.strides[1] = 2;
      return view;
  }
}

TEST(NnBias, BackwardAddsColumnSumsInAnyLayout) {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {1, 70}, {37, 1}, {5, 64}, {70, 130}, {300, 65}};
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16})
    for (BiasLayout layout : {BiasLayout::kRowMajor, BiasLayout::kTransposed, BiasLayout::kRowGaps,
                              BiasLayout::kEveryOtherColumn})
      for (const auto& [N, OC] : shapes) {
        const std::string what = std::string(dtype_name(dt)) + " layout " + std::to_string(int(layout)) + " " +
                                 std::to_string(N) + " x " + std::to_string(OC);
        Tensor holder;
        const TensorView dout = bias_dout(N, OC, dt, layout, uint64_t(N * 1000 + OC), holder);
        Tensor dbias = f32({OC}, randn(size_t(OC), 58));
        const Vec want = ref_bias_backward(dbias, dout);
        nn::bias_backward(dbias, dout);
        expect_close(dbias, want, 0, what);
      }
}

TEST(NnBias, EmptyDoutLeavesDbiasAndMatmulBackwardSharesTheSum) {
  Tensor dbias = f32({3}, {1.0, -2.0, 0.5});
  nn::bias_backward(dbias, zeros({0, 3}));
  expect_close(dbias, {1.0, -2.0, 0.5}, 0, "N = 0");
  nn::bias_backward(f32({0}), zeros({4, 0}));  // OC = 0: nothing to do

  // matmul_backward's dbias is bias_backward's sum, bit for bit.
  const int N = 90, C = 5, OC = 70;
  const Vec init = randn(size_t(OC), 59), dout = randn(size_t(N * OC), 60);
  Tensor db_mm = f32({OC}, init), db = f32({OC}, init), dw = zeros({OC, C}), tdout = f32({N, OC}, dout);
  nn::matmul_backward(nullptr, dw, &db_mm.view(), tdout, zeros({N, C}), zeros({OC, C}));
  nn::bias_backward(db, tdout);
  expect_close(db_mm, values(db), 0, "matmul_backward's dbias");
}

TEST(NnBias, RejectsBadArguments) {
  const Tensor dout = zeros({4, 5});
  expect_error([&] { nn::bias_backward(zeros({6}), dout); }, ErrorKind::kShape,
               {"bias_backward", "dbias is fp32[6, cpu], expected [OC] = [5]"});
  expect_error([&] { nn::bias_backward(zeros({5}), zeros({20})); }, ErrorKind::kShape,
               {"bias_backward", "dout must be a matrix [N, OC]", "fp32[20, cpu]"});
  expect_error([&] { nn::bias_backward(Tensor::empty({5}, DType::kBF16), dout); }, ErrorKind::kDType,
               {"dbias bf16[5, cpu] must be fp32"});
  expect_error([&] { nn::bias_backward(zeros({5}), Tensor::empty({4, 5}, DType::kI32)); }, ErrorKind::kDType,
               {"dout int32[4 x 5, row-major, cpu] must be fp32, fp16 or bf16"});
  const Tensor wide = zeros({2, 10});  // dbias a strided view: must be contiguous
  TensorView strided_bias = wide.view().t();
  strided_bias.rank = 1;
  strided_bias.shape[0] = 5;
  strided_bias.strides[0] = 2;
  expect_error([&] { nn::bias_backward(strided_bias, dout); }, ErrorKind::kShape, {"dbias", "contiguous"});
  // dbias inside dout (its first row), and inside a transposed view's span.
  TensorView row0 = dout.view();
  row0.rank = 1;
  row0.shape[0] = 5;
  row0.strides[0] = 1;
  expect_error([&] { nn::bias_backward(row0, dout); }, ErrorKind::kValue, {"dbias fp32[5, cpu] overlaps dout"});
  const Tensor t = zeros({5, 4});
  TensorView last = t.view();
  last.rank = 1;
  last.shape[0] = 5;
  last.strides[0] = 1;
  last.data = t.data<float>() + 15;  // the last 5 elements of t's memory
  expect_error([&] { nn::bias_backward(last, t.view().t()); }, ErrorKind::kValue, {"overlaps dout"});
  TensorView null_dout = dout.view();
  null_dout.data = nullptr;
  expect_error([&] { nn::bias_backward(zeros({5}), null_dout); }, ErrorKind::kValue, {"dout", "null data pointer"});
}

TEST(NnResidual, ForwardAddsElementwiseAndRunsInPlace) {
  Poison poison;
  const Vec a = randn(12, 60), b = randn(12, 61);
  Vec want(12);
  for (size_t i = 0; i < 12; ++i) want[i] = double(float(a[i]) + float(b[i]));
  Tensor out = f32({3, 4}), ta = f32({3, 4}, a), tb = f32({3, 4}, b);
  nn::residual_forward(out, ta, tb);
  expect_close(out, want, 0, "a + b");
  nn::residual_forward(ta, ta, tb);
  expect_close(ta, want, 0, "a += b in place");
  expect_error([&] { nn::residual_forward(out, ta, f32({4, 3})); }, ErrorKind::kShape,
               {"residual_forward", "b fp32[4 x 3", "a fp32[3 x 4"});
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy.

TEST(NnCrossEntropy, ForwardMatchesReferenceAndUniformLogitsGiveLogV) {
  Poison poison;
  const int N = 6, V = 11;
  const Vec logits = randn(size_t(N * V), 70, 3.0);
  const Ids targets = rand_ids(size_t(N), V, 71);
  Vec probs_ref;
  const Vec losses_ref = ref_crossentropy(logits, targets, N, V, &probs_ref);
  Tensor losses = f32({N}), probs = f32({N, V});
  nn::crossentropy_forward(losses, probs, f32({N, V}, logits), i32(targets));
  expect_close(losses, losses_ref, kFwdTol, "losses");
  expect_close(probs, probs_ref, kFwdTol, "probs");

  // Uniform logits: every loss is log V, every probability 1 / V.
  const int V2 = 50257;
  Tensor l2 = f32({2}), p2 = f32({2, V2});
  nn::crossentropy_forward(l2, p2, f32({2, V2}, Vec(size_t(2 * V2), 3.7)), i32({0, V2 - 1}));
  EXPECT_NEAR(l2.data<float>()[0], std::log(double(V2)), 1e-5);
  EXPECT_NEAR(l2.data<float>()[1], std::log(double(V2)), 1e-5);
  EXPECT_NEAR(p2.data<float>()[12345], 1.0 / V2, 1e-10);

  // Huge logits stay finite: probabilities underflow to 0, the loss does not overflow.
  const Vec big = {1000, -1000, 2000, 0};
  Tensor l3 = f32({1}), p3 = f32({1, 4});
  nn::crossentropy_forward(l3, p3, f32({1, 4}, big), i32({1}));
  EXPECT_FLOAT_EQ(l3.data<float>()[0], 3000.f);
  EXPECT_EQ(p3.data<float>()[2], 1.f);
  EXPECT_EQ(p3.data<float>()[1], 0.f);
}

TEST(NnCrossEntropy, BackwardMatchesFiniteDifferencesAndAccumulates) {
  const int N = 5, V = 9;
  Vec logits = randn(size_t(N * V), 72, 2.0);
  const Ids targets = rand_ids(size_t(N), V, 73);
  const Vec dlosses = randn(size_t(N), 74);
  auto loss = [&] { return dot(dlosses, ref_crossentropy(logits, targets, N, V)); };
  const Vec glogits = numeric_grad(logits, loss);

  Tensor losses = f32({N}), probs = f32({N, V});
  nn::crossentropy_forward(losses, probs, f32({N, V}, logits), i32(targets));
  Tensor dlogits = zeros({N, V}), tdl = f32({N}, dlosses);
  nn::crossentropy_backward(dlogits, tdl, probs, i32(targets));
  expect_close(dlogits, glogits, kGradTol, "dlogits");
  const Vec once = values(dlogits);
  nn::crossentropy_backward(dlogits, tdl, probs, i32(targets));
  for (int64_t i = 0; i < dlogits.numel(); ++i) EXPECT_EQ(dlogits.data<float>()[i], float(2 * once[size_t(i)])) << i;
}

TEST(NnCrossEntropy, RejectsBadTargets) {
  Tensor losses = f32({3}), probs = f32({3, 4}), logits = zeros({3, 4});
  expect_error([&] { nn::crossentropy_forward(losses, probs, logits, i32({0, 4, 1})); }, ErrorKind::kValue,
               {"crossentropy_forward", "target 4", "position 1", "V = 4"});
  expect_error([&] { nn::crossentropy_backward(zeros({3, 4}), zeros({3}), probs, i32({0, 1, -2})); },
               ErrorKind::kValue, {"crossentropy_backward", "target -2", "position 2"});
  expect_error([&] { nn::crossentropy_forward(losses, probs, logits, i32({0, 1})); }, ErrorKind::kShape,
               {"targets", "int32[2, cpu]", "[N] = [3]"});
}

// ---------------------------------------------------------------------------------------------
// Argument checks shared by every function.

TEST(NnErrors, ShapeDTypeLayoutDeviceAndOverlap) {
  const int N = 4, C = 6, OC = 5;
  Tensor inp = zeros({N, C}), w = zeros({OC, C}), out = zeros({N, OC});

  // Shapes: the argument, its describe() and what was expected.
  expect_error([&] { nn::matmul_forward(out, inp, zeros({OC, C + 1}), nullptr); }, ErrorKind::kShape,
               {"matmul_forward", "weight is fp32[5 x 7, row-major, cpu]", "[OC, C] = [5 x 6]"});
  expect_error([&] { nn::matmul_forward(zeros({N, OC + 1}), inp, w, nullptr); }, ErrorKind::kShape,
               {"out is fp32[4 x 6", "[N, OC] = [4 x 5]"});
  Tensor bias_bad = zeros({OC + 2});
  expect_error([&] { nn::matmul_forward(out, inp, w, &bias_bad.view()); }, ErrorKind::kShape,
               {"bias is fp32[7, cpu]", "[OC] = [5]"});
  expect_error([&] { nn::matmul_forward(out, zeros({N * C}), w, nullptr); }, ErrorKind::kShape,
               {"inp must be a matrix", "fp32[24, cpu]"});
  expect_error(
      [&] { nn::layernorm_forward(zeros({N, C}), zeros({N, 1}), zeros({N}), inp, zeros({C}), zeros({C})); },
      ErrorKind::kShape, {"layernorm_forward", "mean is fp32[4 x 1", "[N] = [4]"});
  expect_error([&] { nn::attention_forward(zeros({2 * 3, 8}), zeros({2, 2, 3, 3}), zeros({2, 2, 3, 3}),
                                           zeros({2 * 3, 24}), 2, 3, 8, 3); },
               ErrorKind::kShape, {"attention_forward", "C = 8", "NH = 3"});
  expect_error([&] { nn::attention_forward(zeros({6, 8}), zeros({2, 2, 3, 4}), zeros({2, 2, 3, 3}),
                                           zeros({6, 24}), 2, 3, 8, 2); },
               ErrorKind::kShape, {"preatt is fp32[2 x 2 x 3 x 4", "[B, NH, T, T] = [2 x 2 x 3 x 3]"});
  expect_error([&] { nn::gelu_backward(zeros({3}), zeros({3}), zeros({4})); }, ErrorKind::kShape,
               {"gelu_backward", "dout fp32[4, cpu]"});
  expect_error([&] { nn::encoder_forward(zeros({6, 4}), i32({0, 0, 0, 0, 0, 0}), zeros({5, 4}), zeros({3, 4}), 0, 3); },
               ErrorKind::kValue, {"B and T must be positive", "B = 0"});

  // Dtypes.
  Tensor inp16 = Tensor::empty({N, C}, DType::kF16);
  expect_error([&] { nn::matmul_forward(out, inp16, w, nullptr); }, ErrorKind::kDType,
               {"matmul_forward", "inp fp16[4 x 6", "must be fp32"});
  expect_error([&] { nn::crossentropy_forward(zeros({N}), zeros({N, C}), inp, zeros({N})); }, ErrorKind::kDType,
               {"targets fp32[4, cpu]", "must be int32"});

  // Layout: a column-major (transposed) matrix is not contiguous.
  Tensor inp_cm = Tensor::matrix(N, C, DType::kF32, Layout::kColMajor);
  expect_error([&] { nn::matmul_forward(out, inp_cm, w, nullptr); }, ErrorKind::kShape,
               {"inp fp32[4 x 6, col-major, cpu]", "contiguous"});

  // Devices: CUDA tensors (described, never touched) stop before any kernel.
  TensorView inp_gpu = inp.view(), w_gpu = w.view(), out_gpu = out.view();
  inp_gpu.device = w_gpu.device = out_gpu.device = Device::kCUDA;
  expect_error([&] { nn::matmul_forward(out_gpu, inp_gpu, w_gpu, nullptr); }, ErrorKind::kDevice,
               {"matmul_forward: no CUDA kernel yet (CPU only in this version)"});
  expect_error([&] { nn::matmul_forward(out, inp_gpu, w, nullptr); }, ErrorKind::kDevice,
               {"inp fp32[4 x 6, row-major, cuda] is on cuda but out on cpu", "one device"});
  // The functions with CUDA kernels check devices too (mixed: before any kernel).
  expect_error([&] { nn::gelu_forward(out, out_gpu); }, ErrorKind::kDevice, {"gelu_forward", "one device"});
  expect_error([&] { nn::gelu_backward(out, out, out_gpu); }, ErrorKind::kDevice, {"gelu_backward", "one device"});
  Tensor bias5 = zeros({OC});
  expect_error([&] { nn::bias_backward(bias5, out_gpu); }, ErrorKind::kDevice, {"bias_backward", "one device"});
#ifndef SPARSE24_WITH_CUDA
  // Without the CUDA backend, CUDA tensors stop cleanly (never touched).
  TensorView bias_gpu = bias5.view();
  bias_gpu.device = Device::kCUDA;
  expect_error([&] { nn::gelu_forward(out_gpu, out_gpu); }, ErrorKind::kDevice, {"no CUDA backend"});
  expect_error([&] { nn::gelu_backward(out_gpu, out_gpu, out_gpu); }, ErrorKind::kDevice, {"no CUDA backend"});
  expect_error([&] { nn::bias_backward(bias_gpu, out_gpu); }, ErrorKind::kDevice, {"no CUDA backend"});
#endif

  // Overlap: an output that aliases an input.
  Tensor square = zeros({N, N}), wsq = zeros({N, N});
  expect_error([&] { nn::matmul_forward(square, square, wsq, nullptr); }, ErrorKind::kValue,
               {"out fp32[4 x 4", "overlaps inp"});
  Tensor g = zeros({N, C});
  expect_error([&] { nn::matmul_backward(&g.view(), w, nullptr, out, g, w); }, ErrorKind::kValue,
               {"matmul_backward", "overlaps"});
}

}  // namespace
}  // namespace sparse24
