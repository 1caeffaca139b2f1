// The CPU backend of the GPT-2 layers: readable loops in the manner of llm.c's train_gpt2.c,
// parallelised with OpenMP so that no sum is ever split between threads (the same bits for any
// number of threads). The matmuls share one blocked kernel (gemm below); the rest are direct.
#include "cpu/nn_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace sparse24::cpu::nn {

namespace {

// ---------------------------------------------------------------------------------------------
// gemm: c[M, Nc] (row-major) = init + sum_{k < K} A(i, k) * B(k, j), summed in increasing k, with
//   A(i, k) = a[i * a_row + k * a_col]                    (any strides: inp, dout or dout^T)
//   B(k, j) = b_nk ? b[j * K + k] : b[k * Nc + j]         (weight as stored, or weight^T)
//   init    = accumulate ? c[i, j] : (bias ? bias[j] : 0)
// Every element of c starts from init and adds its K products one by one in increasing k, as the
// naive triple loop does, so neither the blocking, the instruction set nor the number of threads
// changes a bit of the result. The speed comes from the loop order around that fixed sum:
//   * a task owns kMC rows x kNC columns of c (tasks run in parallel on disjoint blocks);
//   * it walks k in slabs of kKC; for each it copies the slab of B for its columns into a panel
//     (kKC x kNC floats, L2-resident) laid out as strips of kKC x kNR, and the slab of A for each
//     group of MR rows into a tile (kKC x MR), so that the micro-kernel reads both sequentially;
//   * the micro-kernel keeps an MR x kNR block of c in vector registers for the whole slab: per k,
//     one row of the strip times MR values of A, kNR independent multiply-then-add lanes.
// The vector width follows the CPU, picked at run time (the build itself targets baseline x86-64
// and has no FMA: -ffp-contract=off): AVX-512 (one 16-float register per row of the block,
// MR = 8), AVX2 (two 8-float registers, MR = 6) or 4-float vectors (SSE2, NEON; MR = 4).
constexpr int64_t kNR = 16, kNC = 256, kKC = 256, kMC = 128, kMaxMR = 8;

typedef float Vec4 __attribute__((vector_size(4 * sizeof(float))));
typedef float Vec8 __attribute__((vector_size(8 * sizeof(float))));
typedef float Vec16 __attribute__((vector_size(16 * sizeof(float))));

#define S24_ALWAYS_INLINE inline __attribute__((always_inline))

// The micro-kernel: c[r][j] += sum_{k < kc} tile[k][r] * strip[k][j] for the first `rows` of MR
// rows and the first `ncols` of kNR columns of c (row stride ldc), as kNR / W vectors of W floats
// per row, held in registers (acc) for the whole slab. Rows past `rows` are computed on the
// tile's zero padding and dropped.
template <typename Vec, int MR>
S24_ALWAYS_INLINE void micro_kernel(const float* tile, const float* strip, int64_t kc, float* c, int64_t ldc,
                                    int64_t rows, int64_t ncols) {
  constexpr int kW = int(sizeof(Vec) / sizeof(float)), kVecs = int(kNR) / kW;
  float block[MR][kNR] = {};  // c in, c out
  for (int64_t r = 0; r < rows; ++r) std::memcpy(block[r], c + r * ldc, size_t(ncols) * sizeof(float));
  Vec acc[MR * kVecs];
  std::memcpy(acc, block, sizeof(acc));
  for (int64_t k = 0; k < kc; ++k) {
    const float* a = tile + k * MR;
    const float* b = strip + k * kNR;
#pragma GCC unroll 32
    for (int q = 0; q < MR * kVecs; ++q) {
      Vec bq;  // an unaligned load
      std::memcpy(&bq, b + (q % kVecs) * kW, sizeof(Vec));
      acc[q] += a[q / kVecs] * bq;
    }
  }
  std::memcpy(block, acc, sizeof(acc));
  for (int64_t r = 0; r < rows; ++r) std::memcpy(c + r * ldc, block[r], size_t(ncols) * sizeof(float));
}

// One slab of one task: rows i0 .. i0 + mc of c, columns j0 .. j0 + nc (packed in `panel`),
// k0 .. k0 + kc of the sum. `tile` is the task's scratch for the tiles of A.
struct Slab {
  const float* a;
  int64_t a_row, a_col, i0, mc, k0, kc;
  const float* panel;
  float* c;  // c + j0: column j0 of row 0
  int64_t ldc, nc;
  float* tile;
};

template <typename Vec, int MR>
S24_ALWAYS_INLINE void run_slab(const Slab& s) {
  for (int64_t i = s.i0; i < s.i0 + s.mc; i += MR) {
    // tile[k][r] = A(i + r, k0 + k), zero past the last row.
    const int64_t rows = std::min<int64_t>(MR, s.i0 + s.mc - i);
    for (int64_t k = 0; k < s.kc; ++k)
      for (int64_t r = 0; r < MR; ++r)
        s.tile[k * MR + r] = r < rows ? s.a[(i + r) * s.a_row + (s.k0 + k) * s.a_col] : 0.f;
    for (int64_t j = 0; j < s.nc; j += kNR)
      micro_kernel<Vec, MR>(s.tile, s.panel + j * kKC, s.kc, s.c + i * s.ldc + j, s.ldc, rows,
                            std::min(kNR, s.nc - j));
  }
}

// The slab loop for each instruction set, and the pick for this CPU (once, at load time). Every
// path computes the same bits: only the number of lanes per instruction differs.
using SlabFn = void (*)(const Slab&);
void slab_vec4(const Slab& s) { run_slab<Vec4, 4>(s); }
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) void slab_avx2(const Slab& s) { run_slab<Vec8, 6>(s); }
__attribute__((target("avx512f"))) void slab_avx512(const Slab& s) { run_slab<Vec16, 8>(s); }
#endif
SlabFn pick_slab() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return slab_avx512;
  if (__builtin_cpu_supports("avx2")) return slab_avx2;
#endif
  return slab_vec4;
}
SlabFn g_slab = pick_slab();

void gemm(float* c, const float* a, int64_t a_row, int64_t a_col, const float* b, bool b_nk,
          const float* bias, bool accumulate, int64_t M, int64_t Nc, int64_t K) {
  if (M == 0 || Nc == 0) return;
  if (!accumulate) {  // c = init; then every slab accumulates onto c
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < Nc; ++j) c[i * Nc + j] = bias ? bias[j] : 0.f;
  }
  const SlabFn slab = g_slab;
  const int64_t col_blocks = (Nc + kNC - 1) / kNC, row_blocks = (M + kMC - 1) / kMC;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel
#endif
  {
    std::vector<float> panel(size_t(kKC * kNC)), tile(size_t(kKC * kMaxMR));
#ifdef SPARSE24_WITH_OPENMP
#pragma omp for collapse(2) schedule(static)
#endif
    for (int64_t jb = 0; jb < col_blocks; ++jb) {
      for (int64_t ib = 0; ib < row_blocks; ++ib) {
        const int64_t j0 = jb * kNC, nc = std::min(kNC, Nc - j0);
        const int64_t i0 = ib * kMC, mc = std::min(kMC, M - i0);
        for (int64_t k0 = 0; k0 < K; k0 += kKC) {
          const int64_t kc = std::min(kKC, K - k0);
          // panel[j / kNR][k][j % kNR] = B(k0 + k, j0 + j), B read along its rows (k for weight
          // as stored, j for an [K, Nc] matrix). Columns past nc keep stale values: their lanes
          // are computed and dropped.
          float* p = panel.data();
          for (int64_t j = 0; b_nk && j < nc; ++j) {
            const float* src = b + (j0 + j) * K + k0;
            float* dst = p + (j / kNR) * kKC * kNR + (j % kNR);
            for (int64_t k = 0; k < kc; ++k) dst[k * kNR] = src[k];
          }
          for (int64_t k = 0; !b_nk && k < kc; ++k) {
            const float* src = b + (k0 + k) * Nc + j0;
            for (int64_t j = 0; j < nc; ++j) p[(j / kNR) * kKC * kNR + k * kNR + (j % kNR)] = src[j];
          }
          slab({a, a_row, a_col, i0, mc, k0, kc, p, c + j0, Nc, nc, tile.data()});
        }
      }
    }
  }
}

// Block of channels that one thread owns in the reductions over rows (encoder and layernorm
// weight gradients): a thread sums whole columns, in row order.
constexpr int64_t kChannelBlock = 64;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Encoder: each output row is the sum of the token's embedding and the position's embedding.
void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                     int64_t B, int64_t T, int64_t C) {
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for collapse(2) schedule(static)
#endif
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      float* o = out + (b * T + t) * C;
      const float* e = wte + int64_t(tokens[b * T + t]) * C;
      const float* p = wpe + t * C;
      for (int64_t c = 0; c < C; ++c) o[c] = e[c] + p[c];
    }
  }
}

// The embedding gradients scatter rows of dout. dwpe: each position t collects its B rows
// (threads split the positions). dwte: a token can occur anywhere, so threads split the channels
// instead and each walks every position in order.
void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                      int64_t B, int64_t T, int64_t C) {
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t t = 0; t < T; ++t) {
    float* dp = dwpe + t * C;
    for (int64_t b = 0; b < B; ++b) {
      const float* d = dout + (b * T + t) * C;
      for (int64_t c = 0; c < C; ++c) dp[c] += d[c];
    }
  }
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
    for (int64_t i = 0; i < B * T; ++i) {
      float* de = dwte + int64_t(tokens[i]) * C;
      const float* d = dout + i * C;
      for (int64_t c = c0; c < c1; ++c) de[c] += d[c];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm: per row, the mean and the (biased) variance in two passes, then the normalised,
// scaled and shifted row.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int64_t C) {
  const float eps = 1e-5f;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t i = 0; i < N; ++i) {
    const float* x = inp + i * C;
    float m = 0.f;
    for (int64_t c = 0; c < C; ++c) m += x[c];
    m = m / float(C);
    float v = 0.f;
    for (int64_t c = 0; c < C; ++c) {
      const float d = x[c] - m;
      v += d * d;
    }
    v = v / float(C);
    const float s = 1.f / std::sqrt(v + eps);
    float* o = out + i * C;
    for (int64_t c = 0; c < C; ++c) o[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[i] = m;
    rstd[i] = s;
  }
}

// LayerNorm backward: dinp row by row (two row means, then the formula of nn.h); dweight and
// dbias as column sums, threads splitting the channels.
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C) {
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t i = 0; i < N; ++i) {
    const float* x = inp + i * C;
    const float* d = dout + i * C;
    const float m = mean[i], s = rstd[i];
    float g_mean = 0.f, gn_mean = 0.f;  // means over the row of g = weight * dout and of g * norm
    for (int64_t c = 0; c < C; ++c) {
      const float norm = (x[c] - m) * s;
      const float g = weight[c] * d[c];
      g_mean += g;
      gn_mean += g * norm;
    }
    g_mean = g_mean / float(C);
    gn_mean = gn_mean / float(C);
    float* dx = dinp + i * C;
    for (int64_t c = 0; c < C; ++c) {
      const float norm = (x[c] - m) * s;
      const float g = weight[c] * d[c];
      dx[c] += (g - g_mean - norm * gn_mean) * s;
    }
  }
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
    for (int64_t i = 0; i < N; ++i) {
      const float* x = inp + i * C;
      const float* d = dout + i * C;
      const float m = mean[i], s = rstd[i];
      for (int64_t c = c0; c < c1; ++c) {
        dweight[c] += (x[c] - m) * s * d[c];
        dbias[c] += d[c];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Matmul: out = inp weight^T + bias, i.e. gemm with A = inp and B(c, o) = weight[o, c].
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int64_t C, int64_t OC) {
  gemm(out, inp, C, 1, weight, /*b_nk=*/true, bias, /*accumulate=*/false, N, OC, C);
}

// Matmul backward: three products, each accumulated onto the existing gradient.
//   dinp[n, c]    += sum_o dout[n, o] * weight[o, c]   (A = dout, B = weight as stored)
//   dweight[o, c] += sum_n dout[n, o] * inp[n, c]      (A = dout^T, B = inp as stored)
//   dbias[o]      += sum_n dout[n, o]                   (bias_backward)
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t C, int64_t OC) {
  if (dinp) gemm(dinp, dout, OC, 1, weight, /*b_nk=*/false, nullptr, /*accumulate=*/true, N, C, OC);
  gemm(dweight, dout, 1, OC, inp, /*b_nk=*/false, nullptr, /*accumulate=*/true, OC, C, N);
  if (dbias) bias_backward(dbias, dout, N, OC, /*row_stride=*/OC, /*col_stride=*/1);
}

// Bias backward: threads split the columns into blocks of kChannelBlock; a block's sums stay in
// a local array while its rows are walked in order (row-major dout: each row's slice is read
// sequentially), then each is added to dbias once.
template <typename T>
void bias_backward(float* dbias, const T* dout, int64_t N, int64_t OC, int64_t row_stride,
                   int64_t col_stride) {
  const int64_t blocks = (OC + kChannelBlock - 1) / kChannelBlock;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t o0 = blk * kChannelBlock, width = std::min(kChannelBlock, OC - o0);
    float sum[kChannelBlock] = {};
    for (int64_t n = 0; n < N; ++n) {
      const T* d = dout + n * row_stride + o0 * col_stride;
      for (int64_t j = 0; j < width; ++j) sum[j] += to_f32(d[j * col_stride]);
    }
    for (int64_t j = 0; j < width; ++j) dbias[o0 + j] += sum[j];
  }
}
template void bias_backward(float*, const float*, int64_t, int64_t, int64_t, int64_t);
template void bias_backward(float*, const f16_t*, int64_t, int64_t, int64_t, int64_t);
template void bias_backward(float*, const bf16_t*, int64_t, int64_t, int64_t, int64_t);

// ---------------------------------------------------------------------------------------------
// Attention forward, one (batch, position, head) at a time: the scaled scores against keys
// 0..t, their softmax (max subtracted first), and the attention-weighted sum of the values.
void attention_forward(float* out, float* preatt, float* att, const float* qkv, int64_t B, int64_t T,
                       int64_t C, int64_t NH) {
  const int64_t C3 = 3 * C, hs = C / NH;
  const float scale = 1.f / std::sqrt(float(hs));
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for collapse(3) schedule(static)
#endif
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < NH; ++h) {
        const float* q = qkv + (b * T + t) * C3 + h * hs;
        float* pre = preatt + ((b * NH + h) * T + t) * T;
        float* w = att + ((b * NH + h) * T + t) * T;

        // Scores q . k[t2] / sqrt(hs) and their maximum.
        float maxval = -INFINITY;
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          const float* k = qkv + (b * T + t2) * C3 + C + h * hs;
          float dot = 0.f;
          for (int64_t i = 0; i < hs; ++i) dot += q[i] * k[i];
          pre[t2] = dot * scale;
          maxval = std::max(maxval, pre[t2]);
        }
        // Softmax over t2 <= t; the future is masked to 0 in both matrices.
        float expsum = 0.f;
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          w[t2] = std::exp(pre[t2] - maxval);
          expsum += w[t2];
        }
        const float inv = 1.f / expsum;
        for (int64_t t2 = 0; t2 <= t; ++t2) w[t2] *= inv;
        for (int64_t t2 = t + 1; t2 < T; ++t2) pre[t2] = w[t2] = 0.f;

        // The weighted sum of the values.
        float* o = out + (b * T + t) * C + h * hs;
        for (int64_t i = 0; i < hs; ++i) o[i] = 0.f;
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          const float* v = qkv + (b * T + t2) * C3 + 2 * C + h * hs;
          for (int64_t i = 0; i < hs; ++i) o[i] += w[t2] * v[i];
        }
      }
    }
  }
}

// Attention backward, one (batch, head) per task: keys and values of position t2 receive
// gradient from every query t >= t2 of the same (batch, head), so the task owns all of them.
// For each query t, backwards through the forward's three steps:
//   out = att . v          -> datt[t2] = dout . v[t2],   dv[t2] += att[t2] * dout
//   att = softmax(preatt)  -> dpreatt[t2] = att[t2] * (datt[t2] - sum_t3 att[t3] * datt[t3])
//   preatt = q . k * scale -> dq += dpreatt[t2] * scale * k[t2],   dk[t2] += dpreatt[t2] * scale * q
void attention_backward(float* dqkv, float* dpreatt, float* datt, const float* dout, const float* qkv,
                        const float* att, int64_t B, int64_t T, int64_t C, int64_t NH) {
  const int64_t C3 = 3 * C, hs = C / NH;
  const float scale = 1.f / std::sqrt(float(hs));
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for collapse(2) schedule(static)
#endif
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        const float* w = att + ((b * NH + h) * T + t) * T;
        float* dw = datt + ((b * NH + h) * T + t) * T;
        float* dpre = dpreatt + ((b * NH + h) * T + t) * T;
        const float* d = dout + (b * T + t) * C + h * hs;
        const float* q = qkv + (b * T + t) * C3 + h * hs;
        float* dq = dqkv + (b * T + t) * C3 + h * hs;

        // Through the weighted sum of the values.
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          const float* v = qkv + (b * T + t2) * C3 + 2 * C + h * hs;
          float* dv = dqkv + (b * T + t2) * C3 + 2 * C + h * hs;
          float dot = 0.f;
          for (int64_t i = 0; i < hs; ++i) {
            dot += d[i] * v[i];
            dv[i] += w[t2] * d[i];
          }
          dw[t2] = dot;
        }
        // Through the softmax.
        float wdot = 0.f;
        for (int64_t t2 = 0; t2 <= t; ++t2) wdot += w[t2] * dw[t2];
        for (int64_t t2 = 0; t2 <= t; ++t2) dpre[t2] = w[t2] * (dw[t2] - wdot);
        for (int64_t t2 = t + 1; t2 < T; ++t2) dw[t2] = dpre[t2] = 0.f;

        // Through the scaled scores.
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          const float* k = qkv + (b * T + t2) * C3 + C + h * hs;
          float* dk = dqkv + (b * T + t2) * C3 + C + h * hs;
          const float g = dpre[t2] * scale;
          for (int64_t i = 0; i < hs; ++i) {
            dq[i] += g * k[i];
            dk[i] += g * q[i];
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GELU (gelu_value and gelu_grad of nn_cpu.h), one element per iteration: read as fp32, one
// rounding to T at the end (none for fp32). Reading an element before writing the same index
// makes in-place calls safe.
template <typename T>
void gelu_forward(T* out, const T* inp, int64_t n) {
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = from_f32<T>(gelu_value(to_f32(inp[i])), 1.f, Overflow::kPyTorch);
}

template <typename T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n) {
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t i = 0; i < n; ++i)
    dinp[i] = from_f32<T>(gelu_grad(to_f32(inp[i])) * to_f32(dout[i]), 1.f, Overflow::kPyTorch);
}

template void gelu_forward(float*, const float*, int64_t);
template void gelu_forward(f16_t*, const f16_t*, int64_t);
template void gelu_forward(bf16_t*, const bf16_t*, int64_t);
template void gelu_backward(float*, const float*, const float*, int64_t);
template void gelu_backward(f16_t*, const f16_t*, const f16_t*, int64_t);
template void gelu_backward(bf16_t*, const bf16_t*, const bf16_t*, int64_t);

void residual_forward(float* out, const float* a, const float* b, int64_t n) {
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy, one row at a time: the softmax from logits - max (the exponentials summed in
// double: V runs to tens of thousands), and the loss as log-sum-exp minus the target's shifted
// logit.
void crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets,
                          int64_t N, int64_t V) {
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t i = 0; i < N; ++i) {
    const float* z = logits + i * V;
    float* p = probs + i * V;
    float maxval = -INFINITY;
    for (int64_t v = 0; v < V; ++v) maxval = std::max(maxval, z[v]);
    double sum = 0.0;
    for (int64_t v = 0; v < V; ++v) {
      p[v] = std::exp(z[v] - maxval);
      sum += double(p[v]);
    }
    const float inv = float(1.0 / sum);
    for (int64_t v = 0; v < V; ++v) p[v] *= inv;
    losses[i] = float(std::log(sum) - double(z[targets[i]] - maxval));
  }
}

void crossentropy_backward(float* dlogits, const float* dlosses, const float* probs,
                           const int32_t* targets, int64_t N, int64_t V) {
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t i = 0; i < N; ++i) {
    float* dz = dlogits + i * V;
    const float* p = probs + i * V;
    const float dl = dlosses[i];
    const int64_t target = targets[i];
    for (int64_t v = 0; v < V; ++v) {
      const float indicator = v == target ? 1.f : 0.f;
      dz[v] += (p[v] - indicator) * dl;
    }
  }
}

}  // namespace sparse24::cpu::nn
