// The public transforms: argument checks with clear errors, then the backend the device picks.
#include "sparse24/transforms.h"

#include <cmath>

#include "core/rules24.h"
#include "cpu/transforms_cpu.h"
#include "cuda/transforms_cuda.h"
#include "sparse24/error.h"

namespace sparse24 {
namespace {

// Element (r, c) of a matrix on any device, as float.
float element(const TensorView& x, int64_t r, int64_t c) {
  TensorView one = x;
  one.data = static_cast<char*>(x.data) + (r * x.strides[0] + c * x.strides[1]) * dtype_size(x.dtype);
  one.shape[0] = one.shape[1] = 1;
  const Tensor host = Tensor::copy_of(one, Device::kCPU);
  return dispatch_dtype(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return to_f32(*host.data<T>());
  });
}

// `policy_applies`: the caller honours CompressOptions::non_finite (else it always needs finite
// inputs: the transposable search, sste_scale).
void fail_non_finite(const char* op, const TensorView& x, int64_t at, bool policy_applies) {
  const int64_t r = at / x.cols(), c = at % x.cols();
  S24_FAIL(kNonFinite, op, ": ", x.describe(), " holds ", element(x, r, c), " at row ", r, ", column ", c,
           policy_applies ? " (policy NonFinite::kError; kPropagate carries NaN into the output instead)"
                          : " (this operation needs finite weights)");
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

// CPU: scan before the transform, unless the policy propagates. (CUDA kernels report the first
// non-finite as they go.)
void check_finite_cpu(const char* op, const TensorView& x, NonFinite policy, bool policy_applies) {
  if (policy_applies && policy == NonFinite::kPropagate) return;
  const int64_t at = cpu::first_non_finite(x);
  if (at >= 0) fail_non_finite(op, x, at, policy_applies);
}

Sparse24Matrix prune_groups(const char* op, const TensorView& x, const cpu::GroupArgs& args,
                            const CompressOptions& opts) {
  check_matrix_input(op, x);
  const Storage st = resolve_storage(op, x, opts);
  Sparse24Matrix out = make_sparse24(x.rows(), x.cols(), st.dtype, st.scale, x.device, opts.layout);
  if (x.device == Device::kCUDA) {
    const int64_t bad = cuda::prune_groups(x, args, opts, out);
    if (bad >= 0) fail_non_finite(op, x, bad, true);
  } else {
    check_finite_cpu(op, x, opts.non_finite, true);
    cpu::prune_groups(x, args, opts, out);
    if (opts.layout != MetaLayout::kCanonical) out.hw_meta = to_sm90_meta(out.mask, opts.layout, out.dtype);
  }
  return out;
}

void check_same_device(const char* op, Device a, Device b, const char* what) {
  S24_CHECK(a == b, kDevice, op, ": ", what, " on ", device_name(b), ", the input on ", device_name(a));
}

}  // namespace

Sparse24Matrix prune_magnitude(const TensorView& dense, const CompressOptions& opts) {
  return prune_groups("prune_magnitude", dense, {rules::GroupRule::kMagnitude}, opts);
}

Sparse24Matrix prune_with_mask(const TensorView& dense, const Mask24& mask, const CompressOptions& opts) {
  S24_CHECK(mask.defined(), kInvalidMask, "prune_with_mask: empty mask");
  S24_CHECK(mask.rows() == dense.rows() && mask.cols() == dense.cols(), kShape, "prune_with_mask: mask is ",
            mask.rows(), " x ", mask.cols(), " but the input is ", dense.describe());
  check_same_device("prune_with_mask", dense.device, mask.device(), "the mask");
  mask.check_codes("prune_with_mask");
  cpu::GroupArgs args{rules::GroupRule::kMask};
  args.mask = &mask;
  return prune_groups("prune_with_mask", dense, args, opts);
}

Sparse24Matrix prune_mvue(const TensorView& dense, uint64_t seed, const CompressOptions& opts) {
  cpu::GroupArgs args{rules::GroupRule::kMvue};
  args.seed = seed;
  return prune_groups("prune_mvue", dense, args, opts);
}

Sparse24Matrix prune_soft_threshold(const TensorView& dense, float beta, const CompressOptions& opts) {
  S24_CHECK(std::isfinite(beta), kValue, "prune_soft_threshold: beta must be finite, got ", beta);
  cpu::GroupArgs args{rules::GroupRule::kSoftThreshold};
  args.beta = beta;
  return prune_groups("prune_soft_threshold", dense, args, opts);
}

double sste_scale(const TensorView& w) {
  const char* op = "sste_scale";
  check_matrix_input(op, w);
  double beta;
  if (w.device == Device::kCUDA) {
    int64_t bad = -1;
    beta = cuda::sste_scale(w, &bad);
    if (bad >= 0) fail_non_finite(op, w, bad, false);
  } else {
    check_finite_cpu(op, w, NonFinite::kError, false);
    beta = cpu::sste_scale(w);
  }
  S24_CHECK(std::isfinite(beta), kValue, "S-STE scale undefined: the soft threshold of ", w.describe(),
            " is all zero (every group has ties at its threshold)");
  return beta;
}

namespace {
// A CPU mask must be transposable: valid codes, and two kept entries in every column of every
// aligned 4x4 block (what the CUDA kernel checks as it reads the mask).
void check_transposable_mask(const char* op, const Mask24& m) {
  for (int64_t bi = 0; bi < m.rows() / 4; ++bi)
    for (int64_t g = 0; g < m.groups_per_row(); ++g) {
      int per_col[4] = {0, 0, 0, 0};
      bool valid = true;
      for (int r = 0; r < 4; ++r) {
        const uint8_t code = m.code(4 * bi + r, g);
        valid = valid && is_valid_group_code(code);
        if (!valid) break;
        ++per_col[code & 3];
        ++per_col[code >> 2];
      }
      for (int c = 0; c < 4; ++c) valid = valid && per_col[c] == 2;
      S24_CHECK(valid, kInvalidMask, op, ": the mask is not transposable in the 4x4 block at row ", 4 * bi,
                ", column ", 4 * g, " (every row and column of a block must keep exactly 2)");
    }
}

// prune_transposable and compress_transposable: the search, or the given mask.
Transposable24 transposable(const char* op, const TensorView& w, const Mask24* mask, const CompressOptions& opts) {
  check_matrix_input(op, w);
  S24_CHECK(w.rows() % 4 == 0, kShape, op, ": ", w.describe(), " has ", w.rows(),
            " rows, not divisible by 4 (a transposable mask is made of 4x4 blocks)");
  const Storage st = resolve_storage(op, w, opts);
  if (mask) {
    S24_CHECK(mask->rows() == w.rows() && mask->cols() == w.cols(), kShape, op, ": mask is ", mask->rows(),
              " x ", mask->cols(), " but the input is ", w.describe());
    check_same_device(op, w.device, mask->device(), "the mask");
    if (mask->device() == Device::kCPU) check_transposable_mask(op, *mask);
  }
  Transposable24 r;
  r.w = make_sparse24(w.rows(), w.cols(), st.dtype, st.scale, w.device, opts.layout);
  r.wt = make_sparse24(w.cols(), w.rows(), st.dtype, st.scale, w.device, opts.layout);
  if (w.device == Device::kCUDA) {
    const int64_t bad = cuda::prune_transposable(w, mask, opts, r);
    if (bad >= 0) {
      const int64_t at = bad / 2;
      S24_CHECK(bad % 2 == 1, kInvalidMask, op, ": the mask is not transposable in the 4x4 block at row ",
                at / w.cols(), ", column ", at % w.cols(), " (every row and column of a block must keep exactly 2)");
      fail_non_finite(op, w, at, mask != nullptr);
    }
  } else {
    // The search needs finite scores; a given mask follows the policy.
    check_finite_cpu(op, w, opts.non_finite, mask != nullptr);
    cpu::prune_transposable(w, mask, opts, r);
    if (opts.layout != MetaLayout::kCanonical) {
      r.w.hw_meta = to_sm90_meta(r.w.mask, opts.layout, r.w.dtype);
      r.wt.hw_meta = to_sm90_meta(r.wt.mask, opts.layout, r.wt.dtype);
    }
  }
  return r;
}
}  // namespace

Transposable24 prune_transposable(const TensorView& w, const CompressOptions& opts) {
  return transposable("prune_transposable", w, nullptr, opts);
}

Transposable24 compress_transposable(const TensorView& w, const Mask24& mask, const CompressOptions& opts) {
  S24_CHECK(mask.defined(), kInvalidMask, "compress_transposable: empty mask");
  return transposable("compress_transposable", w, &mask, opts);
}

const uint16_t* transposable_patterns() {
  static const auto masks = [] {
    struct Masks { uint16_t m[kNumTransposablePatterns]; } out{};
    int k = 0;
    rules::for_each_transposable_pattern([&](int p0, int p1, int p2, int p3) {
      const int ps[4] = {p0, p1, p2, p3};
      for (int r = 0; r < 4; ++r)
        out.m[k] = uint16_t(out.m[k] | (1u << (4 * r + rules::pair_a(ps[r]))) | (1u << (4 * r + rules::pair_b(ps[r]))));
      ++k;
    });
    return out;
  }();
  return masks.m;
}

Tensor decompress(const Sparse24Matrix& s, DType dtype) {
  S24_CHECK(is_input_dtype(dtype), kDType, "decompress: output must be fp32, fp16 or bf16, got ", dtype_name(dtype));
  s.check("decompress");
  s.mask.check_codes("decompress");
  Tensor out = Tensor::matrix(s.rows, s.cols, dtype, Layout::kRowMajor, s.device());
  if (s.device() == Device::kCUDA) cuda::decompress(s, out);
  else cpu::decompress(s, out);
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
  check_same_device(op, grad.device, w.device, "w");
  check_same_device(op, grad.device, mask.device(), "the mask");
  if (grad.device == Device::kCUDA) cuda::masked_decay(grad, w, mask, alpha);
  else cpu::masked_decay(grad, w, mask, alpha);
}

double flip_rate(const Mask24& a, const Mask24& b) {
  S24_CHECK(a.rows() == b.rows() && a.cols() == b.cols(), kShape, "flip_rate: masks ", a.rows(), " x ",
            a.cols(), " and ", b.rows(), " x ", b.cols(), " differ in shape");
  check_same_device("flip_rate", a.device(), b.device(), "the second mask");
  return a.device() == Device::kCUDA ? cuda::flip_rate(a, b) : cpu::flip_rate(a, b);
}

SparsityReport check_24(const TensorView& dense) {
  S24_CHECK(dense.is_matrix(), kShape, "check_24: expected a matrix, got ", dense.describe());
  S24_CHECK(dense.data != nullptr || dense.numel() == 0, kValue, "check_24: null data pointer");
  if (dense.device == Device::kCUDA) return cpu::check_24(Tensor::copy_of(dense, Device::kCPU));
  return cpu::check_24(dense);
}

}  // namespace sparse24
