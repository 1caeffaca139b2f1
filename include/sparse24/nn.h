// sparse24/nn.h: the dense layers of a GPT-2 model, forward and backward (as karpathy/llm.c's
// train_gpt2.c lays them out), behind a device-dispatching API.
//
// Conventions, for every function here:
//   * Float tensors are fp32, token ids and targets int32 (DType::kI32); every tensor is a
//     contiguous row-major view with exactly the rank and shape documented (rank 1 or 2; the
//     attention matrices rank 4), all on one device. Exceptions, stated at the function: the GELU
//     functions also take fp16 and bf16, and bias_backward's dout may be fp16/bf16 and strided.
//     Anything else throws sparse24::Error: kShape (rank, shape, layout), kDType, kDevice (mixed
//     devices, or CUDA tensors for a function without CUDA kernels), kValue (bad sizes, token ids
//     out of range, overlapping buffers). Outputs must not overlap the inputs or one another,
//     except that the elementwise functions (gelu, residual) may write onto an input exactly.
//   * Sizes: B batch, T sequence length, C channels, NH heads, V vocabulary, N = rows (B*T).
//     B, T, NH are passed explicitly where llm.c passes them; the other sizes come from shapes.
//   * "+=" marks an output the function accumulates into (gradients accumulate over
//     micro-batches: zero them before the first one). Every other output is overwritten in full.
//   * Backend: the device of the tensors. CPU: plain loops with OpenMP, results independent of
//     the number of threads; every function, every dtype documented. CUDA (kernels queued on the
//     default stream): gelu_forward and gelu_backward (fp32, fp16, bf16) and bias_backward (dout
//     fp32, fp16, bf16; deterministic: the same bits on every run, though not the CPU's summation
//     order). Every other function throws kDevice for CUDA tensors (not yet).
#pragma once

#include "sparse24/tensor.h"

namespace sparse24::nn {

// Token + position embedding: out[b*T + t, c] = wte[tokens[b*T + t], c] + wpe[t, c].
// out [B*T, C], tokens [B*T] int32 with ids in [0, V), wte [V, C], wpe [maxT, C] with T <= maxT.
// An id outside [0, V) throws kValue naming its position.
void encoder_forward(const TensorView& out, const TensorView& tokens, const TensorView& wte,
                     const TensorView& wpe, int B, int T);
// dwte[tokens[b*T + t], :] += dout[b*T + t, :] and dwpe[t, :] += dout[b*T + t, :] (a token that
// occurs several times collects every occurrence, in position order).
// dwte [V, C] (+=), dwpe [maxT, C] (+=), dout [B*T, C], tokens [B*T].
void encoder_backward(const TensorView& dwte, const TensorView& dwpe, const TensorView& dout,
                      const TensorView& tokens, int B, int T);

// Layer normalisation of each row over its C channels, eps = 1e-5:
//   mean[i] = sum_c inp[i, c] / C,   rstd[i] = 1 / sqrt(sum_c (inp[i, c] - mean[i])^2 / C + eps),
//   out[i, c] = (inp[i, c] - mean[i]) * rstd[i] * weight[c] + bias[c].
// out [N, C], mean [N], rstd [N], inp [N, C], weight [C], bias [C]. mean and rstd are saved for
// the backward pass.
void layernorm_forward(const TensorView& out, const TensorView& mean, const TensorView& rstd,
                       const TensorView& inp, const TensorView& weight, const TensorView& bias);
// The gradients of layernorm_forward, with norm = (inp - mean) * rstd and g = weight * dout:
//   dinp[i, c]  += rstd[i] * (g[i, c] - mean_c g[i, :] - norm[i, c] * mean_c (g[i, :] * norm[i, :]))
//   dweight[c]  += sum_i dout[i, c] * norm[i, c],     dbias[c] += sum_i dout[i, c].
// dinp [N, C] (+=), dweight [C] (+=), dbias [C] (+=), dout [N, C], inp [N, C], weight [C],
// mean [N], rstd [N] (from the forward pass).
void layernorm_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dbias,
                        const TensorView& dout, const TensorView& inp, const TensorView& weight,
                        const TensorView& mean, const TensorView& rstd);

// Dense linear layer: out[i, o] = bias[o] + sum_c inp[i, c] * weight[o, c] (out = inp weight^T +
// bias; the tied LM head passes wte as the weight and no bias). Each element is summed in fp32
// in the order bias, c = 0, 1, ..., C-1, whatever the blocking or the number of threads.
// out [N, OC], inp [N, C], weight [OC, C], bias [OC] or nullptr. out must not overlap inp/weight.
void matmul_forward(const TensorView& out, const TensorView& inp, const TensorView& weight,
                    const TensorView* bias);
// The gradients of matmul_forward:
//   dinp += dout weight   [N, C]   (skipped when dinp is nullptr, e.g. for the first layer)
//   dweight += dout^T inp [OC, C]
//   dbias += the column sums of dout [OC] (skipped when nullptr; as bias_backward)
// dout [N, OC], inp [N, C], weight [OC, C]. Each element of dinp and dweight adds its terms in
// order onto its old value; each element of dbias gets its column's sum (in fp32 from 0, in row
// order) added once. The gradients must not overlap the inputs.
void matmul_backward(const TensorView* dinp, const TensorView& dweight, const TensorView* dbias,
                     const TensorView& dout, const TensorView& inp, const TensorView& weight);

// Causal multi-head self-attention. qkv [B*T, 3C] holds [q | k | v] along its last dimension;
// head h uses channels h*hs .. (h+1)*hs - 1 of each (hs = C / NH, C divisible by NH). For batch
// b, head h, query position t and key position t2 <= t:
//   preatt[b, h, t, t2] = q[t] . k[t2] / sqrt(hs)
//   att[b, h, t, :]     = softmax over t2 <= t of preatt[b, h, t, :]
//   out[b*T + t, h*hs + i] = sum_{t2 <= t} att[b, h, t, t2] * v[t2, h*hs + i]
// Above the diagonal (t2 > t) preatt and att are 0: position t never sees a later one.
// out [B*T, C], preatt [B, NH, T, T], att [B, NH, T, T] (saved for the backward pass),
// qkv [B*T, 3C]. out must not overlap qkv.
void attention_forward(const TensorView& out, const TensorView& preatt, const TensorView& att,
                       const TensorView& qkv, int B, int T, int C, int NH);
// The gradient of attention_forward with respect to qkv. dqkv [B*T, 3C] (+=); dpreatt and datt
// [B, NH, T, T] are scratch (overwritten: on return they hold the gradients of the loss with
// respect to preatt and att); dout [B*T, C], qkv [B*T, 3C] and att [B, NH, T, T] from the
// forward pass. dqkv must not overlap the other tensors.
void attention_backward(const TensorView& dqkv, const TensorView& dpreatt, const TensorView& datt,
                        const TensorView& dout, const TensorView& qkv, const TensorView& att,
                        int B, int T, int C, int NH);

// The bias gradient of a linear layer y = x W^T + bias: dbias[o] += sum_i dout[i, o].
// dbias [OC] (+=): fp32, contiguous. dout [N, OC]: fp32, fp16 or bf16, any layout (row-major, a
// transposed view, a view with gaps: its strides are followed). Each column is summed in fp32
// and the sum added to dbias once. CPU: summed from 0 in row order. CUDA: a fixed reduction tree
// (partial sums of row chunks, then of the partials; no atomics) chosen by the shape, the strides
// and the data's 16-byte alignment, so every run of a call gives the same bits on any GPU; they
// may differ from the CPU's in the last places. N = 0 leaves dbias unchanged.
// dbias must not overlap dout.
void bias_backward(const TensorView& dbias, const TensorView& dout);

// GELU, tanh approximation (GPT-2): out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// out and inp: one shape (any rank), contiguous, one dtype: fp32, fp16 or bf16. Computed in fp32
// (as x sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), which is the same function), rounded once to
// the dtype. out may be inp (in place). CPU and CUDA (the CUDA expf may differ from the host's
// by an ulp or two of fp32, so results may differ by that before the final rounding).
void gelu_forward(const TensorView& out, const TensorView& inp);
// dinp = gelu'(inp) * dout (overwritten, not accumulated), computed in fp32 and rounded once.
// dinp, inp, dout: one shape, contiguous, one dtype (fp32, fp16 or bf16). dinp may be dout or inp
// exactly (in place: an FFN's backward needs no zeroed buffer). CPU and CUDA, as gelu_forward.
void gelu_backward(const TensorView& dinp, const TensorView& inp, const TensorView& dout);

// out = a + b, elementwise; out, a, b: one shape (any rank); out may be a or b.
void residual_forward(const TensorView& out, const TensorView& a, const TensorView& b);

// Softmax and cross-entropy of each row of logits [N, V] against targets [N] (int32 in [0, V)):
//   probs[i, :] = softmax(logits[i, :])   (computed from logits - max, so it never overflows)
//   losses[i]   = -log probs[i, targets[i]] = log sum_v exp(logits[i, v] - max) - (logits[i,
//                 targets[i]] - max), finite even where probs[i, target] underflows to 0.
// losses [N], probs [N, V], logits [N, V], targets [N]. A target outside [0, V) throws kValue.
void crossentropy_forward(const TensorView& losses, const TensorView& probs, const TensorView& logits,
                          const TensorView& targets);
// The gradient of losses with respect to the logits, through the softmax:
//   dlogits[i, v] += (probs[i, v] - [v == targets[i]]) * dlosses[i].
// dlogits [N, V] (+=), dlosses [N], probs [N, V] (from the forward pass), targets [N].
void crossentropy_backward(const TensorView& dlogits, const TensorView& dlosses, const TensorView& probs,
                           const TensorView& targets);

}  // namespace sparse24::nn
