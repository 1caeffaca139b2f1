// src/cpu/nn_cpu.h: the CPU backend of the GPT-2 layers (sparse24/nn.h).
//
// Plain pointers and sizes, as in llm.c: the arguments arrive validated by src/ops/nn.cpp
// (shapes agree, fp32 and int32 data contiguous on the CPU, token ids in range, no harmful
// overlap). Formulas and accumulation ("+=") are documented once, in sparse24/nn.h. Every
// function gives the same bits whatever the number of OpenMP threads: no reduction is split
// across threads.
#pragma once

#include <cstdint>

namespace sparse24::cpu::nn {

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
// sums of dout (dbias may be null).
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t C, int64_t OC);

// Causal self-attention: out[B*T, C], preatt and att [B, NH, T, T], qkv[B*T, 3C].
void attention_forward(float* out, float* preatt, float* att, const float* qkv, int64_t B, int64_t T,
                       int64_t C, int64_t NH);
// dqkv[B*T, 3C] +=; dpreatt and datt [B, NH, T, T] overwritten.
void attention_backward(float* dqkv, float* dpreatt, float* datt, const float* dout, const float* qkv,
                        const float* att, int64_t B, int64_t T, int64_t C, int64_t NH);

// Elementwise over n values.
void gelu_forward(float* out, const float* inp, int64_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n);  // dinp +=
void residual_forward(float* out, const float* a, const float* b, int64_t n);

// losses[N], probs[N, V] from logits[N, V] and targets[N].
void crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets,
                          int64_t N, int64_t V);
// dlogits[N, V] += (probs - onehot(targets)) * dlosses.
void crossentropy_backward(float* dlogits, const float* dlosses, const float* probs,
                           const int32_t* targets, int64_t N, int64_t V);

}  // namespace sparse24::cpu::nn
