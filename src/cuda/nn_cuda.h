// src/cuda/nn_cuda.h: the CUDA side of the GPT-2 layers (sparse24/nn.h) that have kernels: GELU
// and the bias gradient. Implemented by nn_kernels.cu, and by core/no_cuda.cpp (throwing kDevice)
// in builds without CUDA. The twin of cpu/nn_cpu.h: arguments arrive validated by src/ops/nn.cpp
// (shapes agree, dtypes fp32/fp16/bf16, data on the current GPU, no harmful overlap), formulas
// are documented once, in sparse24/nn.h. Kernels are queued on the default stream; nothing here
// synchronises.
#pragma once

#include <cstdint>

#include "sparse24/dtype.h"
#include "sparse24/tensor.h"

namespace sparse24::cuda::nn {

// out[i] = gelu(inp[i]) for n contiguous elements of `dtype` (fp32, fp16, bf16); out may be inp.
void gelu_forward(void* out, const void* inp, DType dtype, int64_t n);
// dinp[i] = gelu'(inp[i]) * dout[i] (overwritten); dinp may be inp or dout.
void gelu_backward(void* dinp, const void* inp, const void* dout, DType dtype, int64_t n);
// dbias[o] += sum_i dout(i, o): dbias fp32 [dout.cols()] contiguous; dout a matrix of fp32, fp16
// or bf16 in any layout (its strides are followed). Deterministic: a fixed reduction tree that
// depends on the shape, the strides and the data's 16-byte alignment only; no atomics.
void bias_backward(float* dbias, const TensorView& dout);

}  // namespace sparse24::cuda::nn
