// src/cuda/optim_cuda.h: the CUDA side of AdamW (optim.h). Implemented by optim_kernels.cu, and
// by core/no_cuda.cpp (throwing kDevice) in builds without CUDA.
#pragma once

#include <cstdint>

#include "core/adamw_rule.h"
#include "sparse24/dtype.h"

namespace sparse24::cuda {

// One AdamW step over n contiguous fp32 elements in device memory: w, m, v updated in place from
// g. With mask_codes (the canonical metadata of a rows x cols mask, row_bytes a row; n = rows x
// cols) the masked decay s.alpha * w is added to g where the mask prunes. Queued on the default
// stream.
void adamw_update(float* w, const float* g, float* m, float* v, int64_t n,
                  const uint8_t* mask_codes, int64_t cols, int64_t row_bytes,
                  const rules::AdamWStep& s);

// The sum of squares, in double, of a contiguous fp32/fp16/bf16 device tensor of n elements
// (summation order: per thread, then per block, then atomically; not the CPU's order).
double sum_squares(const void* data, DType dtype, int64_t n);
// x = round(x * factor) in place (fp32 product, rounded to the tensor's dtype as the CPU does);
// returns false if any product is NaN or Inf (those are stored as computed). Synchronises.
bool scale_in_place(void* data, DType dtype, int64_t n, float factor);

}  // namespace sparse24::cuda
