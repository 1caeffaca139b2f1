// The public transforms: argument checks with clear errors, then the backend the device picks.
#include "sparse24/transforms.h"

#include <cmath>

#include "core/rules24.h"
#include "cpu/transforms_cpu.h"
#include "sparse24/error.h"

namespace sparse24 {
namespace {

// The CUDA kernels of the transforms are not in this version: say so plainly.
void require_cpu(const char* op, const TensorView& x) {
  S24_CHECK(x.device == Device::kCPU, kDevice, op, ": no CUDA kernel in this version for ",
            x.describe(), " (copy it to the CPU)");
}

void check_matrix_input(const char* op, const TensorView& x) {
  S24_CHECK(x.is_matrix(), kShape, op, ": expected a matrix, got ", x.describe());
  S24_CHECK(is_input_dtype(x.dtype), kDType, op, ": input must be fp32, fp16 or bf16, got ", x.describe());
  S24_CHECK(x.cols() % 4 == 0, kShape, op, ": ", x.describe(), " has ", x.cols(),
            " columns, not divisible by 4 (2:4 groups run along rows; pass .t() to prune columns)");
  S24_CHECK(x.data != nullptr || x.numel() == 0, kValue, op, ": null data pointer");
}

// The storage dtype and scale the options ask for, checked.
struct Storage {
  DType dtype;
  float scale;
};
Storage resolve_storage(const char* op, const TensorView& x, const CompressOptions& o) {
  const DType dt = o.dtype.value_or(x.dtype);
  S24_CHECK(is_value_dtype(dt), kDType, op, ": cannot store 2:4 values as ", dtype_name(dt));
  S24_CHECK(dt != DType::kI8 || o.scale.has_value(), kValue, op,
            ": int8 storage needs an explicit scale (stored = round(value / scale))");
  const float scale = o.scale.value_or(1.f);
  S24_CHECK(std::isfinite(scale) && scale > 0.f, kValue, op, ": scale must be finite and > 0, got ", scale);
  S24_CHECK(!(dt == DType::kI8 && o.non_finite == NonFinite::kPropagate), kValue, op,
            ": int8 has no NaN, so NonFinite::kPropagate cannot be used with int8 storage");
  return {dt, scale};
}

void check_finite(const char* op, const TensorView& x, NonFinite policy) {
  if (policy == NonFinite::kPropagate) return;
  const int64_t at = cpu::first_non_finite(x);
  if (at < 0) return;
  const int64_t r = at / x.cols(), c = at % x.cols();
  const float v = dispatch_dtype(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return to_f32(*x.at<const T>(r, c));
  });
  S24_FAIL(kNonFinite, op, ": ", x.describe(), " holds ", v, " at row ", r, ", column ", c,
           " (policy NonFinite::kError; kPropagate carries NaN into the output instead)");
}

Sparse24Matrix prune_groups(const char* op, const TensorView& x, const cpu::GroupArgs& args,
                            const CompressOptions& opts) {
  check_matrix_input(op, x);
  const Storage st = resolve_storage(op, x, opts);
  require_cpu(op, x);
  check_finite(op, x, opts.non_finite);
  Sparse24Matrix out = make_sparse24(x.rows(), x.cols(), st.dtype, st.scale, x.device);
  cpu::prune_groups(x, args, opts, out);
  return out;
}

}  // namespace

Sparse24Matrix prune_magnitude(const TensorView& dense, const CompressOptions& opts) {
  return prune_groups("prune_magnitude", dense, {cpu::GroupRule::kMagnitude}, opts);
}

Sparse24Matrix prune_with_mask(const TensorView& dense, const Mask24& mask, const CompressOptions& opts) {
  S24_CHECK(mask.defined(), kInvalidMask, "prune_with_mask: empty mask");
  S24_CHECK(mask.rows() == dense.rows() && mask.cols() == dense.cols(), kShape, "prune_with_mask: mask is ",
            mask.rows(), " x ", mask.cols(), " but the input is ", dense.describe());
  S24_CHECK(mask.device() == dense.device, kDevice, "prune_with_mask: mask on ", device_name(mask.device()),
            ", input ", dense.describe());
  cpu::GroupArgs args{cpu::GroupRule::kMask};
  args.mask = &mask;
  return prune_groups("prune_with_mask", dense, args, opts);
}

Sparse24Matrix prune_mvue(const TensorView& dense, uint64_t seed, const CompressOptions& opts) {
  cpu::GroupArgs args{cpu::GroupRule::kMvue};
  args.seed = seed;
  return prune_groups("prune_mvue", dense, args, opts);
}

Sparse24Matrix prune_soft_threshold(const TensorView& dense, float beta, const CompressOptions& opts) {
  S24_CHECK(std::isfinite(beta), kValue, "prune_soft_threshold: beta must be finite, got ", beta);
  cpu::GroupArgs args{cpu::GroupRule::kSoftThreshold};
  args.beta = beta;
  return prune_groups("prune_soft_threshold", dense, args, opts);
}

double sste_scale(const TensorView& w) {
  check_matrix_input("sste_scale", w);
  require_cpu("sste_scale", w);
  check_finite("sste_scale", w, NonFinite::kError);
  return cpu::sste_scale(w);
}

Transposable24 prune_transposable(const TensorView& w, const CompressOptions& opts) {
  const char* op = "prune_transposable";
  check_matrix_input(op, w);
  S24_CHECK(w.rows() % 4 == 0, kShape, op, ": ", w.describe(), " has ", w.rows(),
            " rows, not divisible by 4 (the mask is chosen per 4x4 block)");
  const Storage st = resolve_storage(op, w, opts);
  require_cpu(op, w);
  check_finite(op, w, NonFinite::kError);  // the block search needs finite scores
  Transposable24 r;
  r.w = make_sparse24(w.rows(), w.cols(), st.dtype, st.scale, w.device);
  r.wt = make_sparse24(w.cols(), w.rows(), st.dtype, st.scale, w.device);
  cpu::prune_transposable(w, opts, r);
  return r;
}

const uint16_t* transposable_patterns() {
  static const auto masks = [] {
    const rules::TransposableTable table = rules::make_transposable_table();
    struct Masks { uint16_t m[kNumTransposablePatterns]; } out{};
    for (int k = 0; k < kNumTransposablePatterns; ++k)
      for (int r = 0; r < 4; ++r) {
        int a, b;
        rules::pattern_row(table, k, r, &a, &b);
        out.m[k] = uint16_t(out.m[k] | (1u << (4 * r + a)) | (1u << (4 * r + b)));
      }
    return out;
  }();
  return masks.m;
}

Tensor decompress(const Sparse24Matrix& s, DType dtype) {
  S24_CHECK(is_input_dtype(dtype), kDType, "decompress: output must be fp32, fp16 or bf16, got ", dtype_name(dtype));
  S24_CHECK(s.values.defined() && s.mask.defined(), kValue, "decompress: empty matrix");
  require_cpu("decompress", s.values);
  Tensor out = Tensor::matrix(s.rows, s.cols, dtype);
  cpu::decompress(s, out);
  return out;
}

void masked_decay(const TensorView& grad, const TensorView& w, const Mask24& mask, float alpha) {
  const char* op = "masked_decay";
  S24_CHECK(grad.is_matrix() && w.is_matrix(), kShape, op, ": grad ", grad.describe(), " and w ",
            w.describe(), " must be matrices");
  S24_CHECK(grad.rows() == w.rows() && grad.cols() == w.cols() && mask.rows() == w.rows() &&
                mask.cols() == w.cols(), kShape, op, ": grad ", grad.describe(), ", w ", w.describe(),
            " and mask ", mask.rows(), " x ", mask.cols(), " must have one shape");
  S24_CHECK(is_input_dtype(grad.dtype) && is_input_dtype(w.dtype), kDType, op,
            ": grad and w must be fp32, fp16 or bf16, got ", grad.describe(), " and ", w.describe());
  S24_CHECK(std::isfinite(alpha), kValue, op, ": alpha must be finite, got ", alpha);
  require_cpu(op, grad);
  require_cpu(op, w);
  cpu::masked_decay(grad, w, mask, alpha);
}

double flip_rate(const Mask24& a, const Mask24& b) {
  S24_CHECK(a.rows() == b.rows() && a.cols() == b.cols(), kShape, "flip_rate: masks ", a.rows(), " x ",
            a.cols(), " and ", b.rows(), " x ", b.cols(), " differ in shape");
  S24_CHECK(a.device() == Device::kCPU && b.device() == Device::kCPU, kDevice, "flip_rate: CPU masks only in this version");
  return cpu::flip_rate(a, b);
}

SparsityReport check_24(const TensorView& dense) {
  S24_CHECK(dense.is_matrix(), kShape, "check_24: expected a matrix, got ", dense.describe());
  require_cpu("check_24", dense);
  return cpu::check_24(dense);
}

}  // namespace sparse24
