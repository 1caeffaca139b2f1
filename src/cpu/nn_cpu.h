// src/cpu/nn_cpu.h: the CPU backend of the GPT-2 layers (sparse24/nn.h).
//
// Plain pointers and sizes, as in llm.c: the arguments arrive validated by src/ops/nn.cpp
// (shapes agree, fp32 and int32 data contiguous on the CPU unless said otherwise, token ids in
// range, no harmful overlap). Formulas and accumulation ("+=") are documented once, in
// sparse24/nn.h. Every function gives the same bits whatever the number of OpenMP threads: no
// reduction is split across threads.
//
// The per-element GELU rules below are host + device code: the CUDA kernels
// (src/cuda/nn_kernels.cu) call the same functions, so both backends evaluate one formula (the
// CPU builds with -ffp-contract=off, the CUDA files with -fmad=false; only expf may differ, see
// gelu_sigmoid).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/rules24.h"  // rcp_normal
#include "sparse24/dtype.h"

namespace sparse24::cpu::nn {

// ---------------------------------------------------------------------------------------------
// GELU, tanh approximation, per element in fp32. With u = sqrt(2/pi) (x + 0.044715 x^3) and
// s = sigmoid(2u), the identity 0.5 (1 + tanh(u)) = s gives gelu(x) = x s, computed so that
// neither the value nor the derivative s + 2 x s (1 - s) du/dx suffers the cancellation of
// 1 + tanh(u) at large -x.
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

// The logistic function of z as the pair (s, 1 - s), each without cancellation or overflow.
// expf: glibc's on the host, CUDA's on the device (which may differ by an ulp or two).
// Branch-free (a GPU warp would otherwise run both sides): e = exp(-|z|) in (0, 1], r = 1 / (1 + e),
// then s = r and 1 - s = e r for z >= 0, the other way round below 0. 1 + e lies in [1, 2], where
// rules::rcp_normal is the IEEE reciprocal without the division's range checks.
S24_HD void gelu_sigmoid(float z, float* s, float* one_minus_s) {
  const float e = expf(-fabsf(z));
  const float r = rules::rcp_normal(1.f + e);
  const float er = e * r;
  *s = z >= 0.f ? r : er;
  *one_minus_s = z >= 0.f ? er : r;
}
// gelu(x) = x s.
S24_HD float gelu_value(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  float s, one_minus_s;
  gelu_sigmoid(2.f * u, &s, &one_minus_s);
  return x * s;
}
// gelu'(x) = s + 2 x s (1 - s) du/dx. Where s (1 - s) is 0 in fp32 (|x| above ~10, and x = +-Inf)
// the second term is 0: it is skipped, since there 2 x du can overflow (|x| above ~1e19) and
// 0 * Inf would give NaN for a derivative that is exactly 1 or 0.
S24_HD float gelu_grad(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  const float du = kGeluScale * (1.f + 3.f * kGeluCubic * x * x);
  float s, one_minus_s;
  gelu_sigmoid(2.f * u, &s, &one_minus_s);
  return s * one_minus_s == 0.f ? s : s + 2.f * x * s * one_minus_s * du;
}

// out[B*T, C] = wte[tokens] + wpe[t].
void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                     int64_t B, int64_t T, int64_t C);
// dwte[V, C] += and dwpe[maxT, C] += the rows of dout[B*T, C].
void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                      int64_t B, int64_t T, int64_t C);

// Rows of inp[N, C] normalised (eps 1e-5), scaled and shifted; mean[N], rstd[N] saved.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int64_t C);
// dinp[N, C] +=, dweight[C] +=, dbias[C] +=.
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C);

// out[N, OC] = inp[N, C] weight[OC, C]^T + bias[OC] (bias may be null).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int64_t C, int64_t OC);
// dinp[N, C] += dout weight (dinp may be null), dweight[OC, C] += dout^T inp, dbias[OC] += column
// sums of dout (dbias may be null; bias_backward's loop).
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t C, int64_t OC);

// dbias[o] += sum_n dout(n, o) for o < OC, with dout(n, o) = dout[n * row_stride + o * col_stride]
// (any layout: row-major, a transposed view, gaps). Each column is summed in fp32 from 0 in row
// order, then added once. T: float, f16_t or bf16_t.
template <typename T>
void bias_backward(float* dbias, const T* dout, int64_t N, int64_t OC, int64_t row_stride,
                   int64_t col_stride);

// Causal self-attention: out[B*T, C], preatt and att [B, NH, T, T], qkv[B*T, 3C].
void attention_forward(float* out, float* preatt, float* att, const float* qkv, int64_t B, int64_t T,
                       int64_t C, int64_t NH);
// dqkv[B*T, 3C] +=; dpreatt and datt [B, NH, T, T] overwritten.
void attention_backward(float* dqkv, float* dpreatt, float* datt, const float* dout, const float* qkv,
                        const float* att, int64_t B, int64_t T, int64_t C, int64_t NH);

// Elementwise over n values of T (float, f16_t or bf16_t): fp32 math (gelu_value, gelu_grad),
// rounded once to T. out may be inp; dinp may be inp or dout.
template <typename T>
void gelu_forward(T* out, const T* inp, int64_t n);                  // out = gelu(inp)
template <typename T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n);  // dinp = gelu'(inp) * dout
void residual_forward(float* out, const float* a, const float* b, int64_t n);

// losses[N], probs[N, V] from logits[N, V] and targets[N].
void crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets,
                          int64_t N, int64_t V);
// dlogits[N, V] += (probs - onehot(targets)) * dlosses.
void crossentropy_backward(float* dlogits, const float* dlosses, const float* probs,
                           const int32_t* targets, int64_t N, int64_t V);

}  // namespace sparse24::cpu::nn
