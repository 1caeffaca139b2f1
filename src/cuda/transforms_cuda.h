// src/cuda/transforms_cuda.h: the CUDA backend of the transforms (the twin of cpu/transforms_cpu.h).
// Arguments arrive validated by src/ops/transforms.cpp; tensors live on the current GPU. Kernels
// run on the default stream; functions that must report something (a non-finite position, a
// reduction) synchronise, the others return as soon as their kernels are queued.
#pragma once

#include <cstdint>

#include "cpu/transforms_cpu.h"  // GroupArgs

namespace sparse24::cuda {

// One pass over `in`: values and metadata of every group into `out`. Under NonFinite::kError it
// synchronises and returns the row-major index of the first NaN/Inf (-1 if none; the output is
// then unspecified); under kPropagate it returns -1 without synchronising.
int64_t prune_groups(const TensorView& in, const cpu::GroupArgs& args, const CompressOptions& opts,
                     Sparse24Matrix& out);
// One pass over `w`: for every 4x4 block the best transposable pattern (or, when `mask` is given,
// that mask's), then W and W^T compressed. With `report` it synchronises and returns
// 2 * position + kind of the first problem (kind 0: a block of `mask` that is not transposable,
// kind 1: a non-finite weight, checked by the search and under NonFinite::kError), else -1;
// without, it only queues the kernel (benchmarks) and returns -1.
int64_t prune_transposable(const TensorView& w, const Mask24* mask, const CompressOptions& opts,
                           Transposable24& res, bool report = true);
double sste_scale(const TensorView& w, int64_t* first_bad);
void decompress(const Sparse24Matrix& s, const TensorView& out);
void masked_decay(const TensorView& grad, const TensorView& w, const Mask24& mask, float alpha);
double flip_rate(const Mask24& a, const Mask24& b);
// The first group (row * groups_per_row + group) whose code is not one of the six valid ones, or
// -1; synchronises.
int64_t first_invalid_code(const Mask24& mask);

}  // namespace sparse24::cuda
