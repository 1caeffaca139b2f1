// sparse24/transforms.h: every 2:4 transform (docs/ALGORITHMS.md defines each one exactly).
//
// Inputs are fp32, fp16 or bf16 matrices of any layout; groups of 4 run along each row of the
// view given (pass w.t() to prune along columns: no copy is made). The device of the input picks
// the backend; CPU and CUDA make identical choices (masks, indices, random draws).
#pragma once

#include <cstdint>
#include <optional>

#include "sparse24/format.h"
#include "sparse24/tensor.h"

namespace sparse24 {

// What a transform does with NaN or +-Inf in its input.
enum class NonFinite : uint8_t {
  kError,      // throw kNonFinite naming the first offending (row, column). The default.
  kPropagate,  // a group holding a non-finite value stores NaN in both kept slots, so an
               // overflow is never hidden (a loss scaler sees it). Its positions: the explicit
               // mask's, else magnitude's with non-finite ranked largest (lower index first).
};

struct CompressOptions {
  std::optional<DType> dtype;   // storage dtype of the kept values; default: the input's
  std::optional<float> scale;   // stored = value / scale; int8 requires one; default 1
  Overflow overflow = Overflow::kPyTorch;
  NonFinite non_finite = NonFinite::kError;
  // Also write the metadata in a hardware layout (format.h: Sparse24Matrix::hw_meta), in the same
  // pass: the sm90 layouts need fp16/bf16/fp8/int8 storage and K divisible by 16 (32 for 8-bit).
  MetaLayout layout = MetaLayout::kCanonical;
};

// Magnitude: keep the two largest |x| of each group; ties go to the lower index.
Sparse24Matrix prune_magnitude(const TensorView& dense, const CompressOptions& opts = {});

// Explicit mask (already validated by Mask24::from_dense): keep where the mask says.
Sparse24Matrix prune_with_mask(const TensorView& dense, const Mask24& mask,
                               const CompressOptions& opts = {});

// MVUE24: unbiased random 2:4 pruning (E[out] = in). Groups 2b and 2b+1 of row r draw their
// uniforms from one Philox4x32-10 call with key = seed and counter = r * ceil(cols/8) + b
// (philox.h), so the result depends only on (seed, values, shape), not on layout or device.
Sparse24Matrix prune_mvue(const TensorView& dense, uint64_t seed, const CompressOptions& opts = {});
// eps added to |x| before the draw, as the reference toolkit.
constexpr float kMvueEps = 1.19209e-7f;

// Soft threshold (S-STE): t = second smallest |x| of the group; kept = sign(x) max(|x|-t, 0) for
// the two largest |x| (magnitude's choice), times beta.
Sparse24Matrix prune_soft_threshold(const TensorView& dense, float beta = 1.f,
                                    const CompressOptions& opts = {});
// S-STE's frozen per-tensor scale beta = <W, S(W)> / <S(W), S(W)>, accumulated in double.
// Throws kValue when S(W) is all zero (beta undefined) and kNonFinite on NaN/Inf.
double sste_scale(const TensorView& w);

// Exact transposable mask: for each aligned 4x4 block, among the 90 patterns with two ones in
// every row and column, the one maximising sum(mask * |W|) (docs/ALGORITHMS.md: score order and
// tie-break). Rows and columns must be divisible by 4. Non-finite weights always throw.
struct Transposable24 {
  Mask24 mask;        // rows x cols, 2:4 along rows and along columns
  Sparse24Matrix w;   // W compressed along rows
  Sparse24Matrix wt;  // W^T (cols x rows) compressed along its rows, i.e. W's columns
};
Transposable24 prune_transposable(const TensorView& w, const CompressOptions& opts = {});
// W and W^T compressed with an existing transposable mask (FST compresses both every optimizer
// step and re-selects the mask only every mask_freq steps). A mask that is not transposable
// (a 4x4 block without two kept entries in every row and column) throws kInvalidMask naming the
// block; non-finite weights follow opts.non_finite.
Transposable24 compress_transposable(const TensorView& w, const Mask24& mask, const CompressOptions& opts = {});
// The 90 patterns as 16-bit masks (bit 4*r + c set when (r, c) is kept), in tie-break order.
const uint16_t* transposable_patterns();
constexpr int kNumTransposablePatterns = 90;

// The dense matrix a compressed one stands for (pruned entries 0), in `dtype` (fp32/fp16/bf16).
Tensor decompress(const Sparse24Matrix& s, DType dtype = DType::kF32);

// Masked decay: grad += alpha * w * (1 - mask), in place. grad and w: same shape, float dtypes.
void masked_decay(const TensorView& grad, const TensorView& w, const Mask24& mask, float alpha);

// Fraction of mask entries that differ between two masks of the same shape.
double flip_rate(const Mask24& a, const Mask24& b);

// Is a dense matrix 2:4, i.e. at most two non-zeros in every group of 4 along rows (and along
// columns)? Transposable = both. A dimension not divisible by 4 makes that direction false.
struct SparsityReport {
  bool rows_24 = false;  // 2:4 along rows
  int64_t bad_row = -1, bad_row_group = -1;  // first group along rows with > 2 non-zeros
  bool cols_24 = false;  // 2:4 along columns
  int64_t bad_col = -1, bad_col_group = -1;
  bool transposable() const { return rows_24 && cols_24; }
};
SparsityReport check_24(const TensorView& dense);

}  // namespace sparse24
