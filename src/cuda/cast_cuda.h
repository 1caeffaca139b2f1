// src/cuda/cast_cuda.h: the CUDA side of tensor.h's FP8 casts (finite_amax, quantize_into) and of
// format.h's to_sm90_meta. Implemented by cast_kernels.cu, and by core/no_cuda.cpp (throwing
// kDevice) in builds without CUDA. Arguments arrive validated by the public functions, which
// also define the results (their CPU loops are the reference); kernels run on the default stream.
#pragma once

#include <cstdint>

#include "sparse24/format.h"
#include "sparse24/tensor.h"

namespace sparse24::cuda {

// max |x| over the finite elements of a non-empty fp32/fp16/bf16 matrix of any strides (0 when
// none are finite). Synchronises to return it.
float finite_amax(const TensorView& x);
// dst (e4m3/e5m2) = quantize_f32(src / scale) element by element, any strides on both sides
// (row- and column-major pairs go through a shared-memory tile, so a transposed copy reads and
// writes whole lines); also, when given, a second destination of dst's dtype written from the
// same read of src. Queued.
void quantize(const TensorView& dst, const TensorView& src, float scale, const TensorView* also);
// The sm90 metadata of a CUDA mask in layout g: out[g.offset(r, b)] = byte b of mask row r.
// out holds g.bytes() bytes, zero-filled by the caller (the padding stays zero). Queued.
void scatter_sm90_meta(uint8_t* out, const Mask24& mask, const Sm90Meta& g);

}  // namespace sparse24::cuda
