// src/cpu/transforms_cpu.h: the CPU backend of the transforms in sparse24/transforms.h.
// Arguments arrive validated by src/ops/transforms.cpp; these functions only compute.
#pragma once

#include <cstdint>

#include "core/rules24.h"
#include "sparse24/transforms.h"

namespace sparse24::cpu {

// Which per-group rule prune_groups applies, and its inputs (src/core/rules24.h).
struct GroupArgs {
  rules::GroupRule rule = rules::GroupRule::kMagnitude;
  const Mask24* mask = nullptr;  // kMask
  uint64_t seed = 0;             // kMvue
  float beta = 1.f;              // kSoftThreshold
};

// Prunes every group of `in` (rows x cols, any layout, fp32/fp16/bf16) into `out` (allocated,
// same shape, out.dtype/out.scale set), following opts.overflow and opts.non_finite.
void prune_groups(const TensorView& in, const GroupArgs& args, const CompressOptions& opts,
                  Sparse24Matrix& out);
double sste_scale(const TensorView& w);
// Selects the transposable mask (or takes `mask`, already checked transposable) and fills r.mask,
// r.w and r.wt (allocated by the caller).
void prune_transposable(const TensorView& w, const Mask24* mask, const CompressOptions& opts,
                        Transposable24& r);
void decompress(const Sparse24Matrix& s, const TensorView& out);
void masked_decay(const TensorView& grad, const TensorView& w, const Mask24& mask, float alpha);
double flip_rate(const Mask24& a, const Mask24& b);
SparsityReport check_24(const TensorView& dense);
// Row-major index (row * cols + col) of the first NaN/Inf of a matrix, or -1.
int64_t first_non_finite(const TensorView& m);

}  // namespace sparse24::cpu
