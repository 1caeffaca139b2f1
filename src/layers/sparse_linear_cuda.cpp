// The sparse linear layer (sparse24/layers.h), CUDA path: the steps of the CPU path, with the
// GEMMs of gemm.h (2:4 products on the sparse tensor cores, dense ones on cuBLASLt) and nothing
// copied to the host but FP8's scales. Built in every configuration (it calls only the public
// API); without CUDA a CUDA layer cannot be constructed.
//
// Per optimizer step (begin_step): FST compresses W and W^T (and selects the mask every
// mask_freq steps); a dense layer refreshes its 16-bit W.
// Per micro-step, with 16-bit weights (fp16, bf16):
//   forward   y  = x W_s^T + b          FST: mm_into(y, x, t(W_s)); S-STE: beta S(W) first; the
//                                       bias converted to the compute dtype
//   backward  db += colsum(dY)          nn::bias_backward (the caller, for both devices)
//             dX  = dY W_s              FST: mm_into(dX, dY, t((W^T)_s)); S-STE: dense
//             dW += dY^T X              dense by default; with GemmChoice::weight_grad
//                                       prune_mvue(dY.t()) then mm_into(dW, S, X), beta = 1
// With e4m3 weights (S-STE's FP8 recipe, in both sparse modes; activations bf16) every GEMM
// reads fp8 operands with per-tensor scales (tensor.h: fp8_scale of finite_amax, one read-back
// each), as the CPU simulates it: x in e4m3, dY and MVUE(dY^T) in e5m2, the weights in e4m3. FP8
// tensor cores want both operands K-major, so the weight gradient reads X^T (and, dense, dY^T)
// as transposed fp8 copies, which quantize_into writes directly (both layouts of dY in one pass).
#include "sparse24/error.h"
#include "sparse24/gemm.h"
#include "sparse24/layers.h"

namespace sparse24 {
namespace {

// The per-tensor scale of src quantized to `dt` (reads the amax back: one synchronisation).
float scale_of(const TensorView& src, DType dt) { return fp8_scale(finite_amax(src), dt); }

// src ([n, k] on CUDA) quantized to `dt` with its own scale, in one pass, into the fresh matrices
// asked for (at least one): `rows` [n, k] row-major (the K-major A of a product over k) and `cols`
// holding src^T row-major (src column-major: the K-major operand of a product over n). Returns
// the scale.
float quantize_fp8(const TensorView& src, DType dt, Tensor* rows, Tensor* cols) {
  const float scale = scale_of(src, dt);
  if (rows) *rows = Tensor::matrix(src.rows(), src.cols(), dt, Layout::kRowMajor, Device::kCUDA);
  if (cols) *cols = Tensor::matrix(src.cols(), src.rows(), dt, Layout::kRowMajor, Device::kCUDA);
  const TensorView cols_view = cols ? cols->view().t() : TensorView{};
  if (rows) quantize_into(*rows, src, scale, cols ? &cols_view : nullptr);
  else quantize_into(cols_view, src, scale);
  return scale;
}

}  // namespace

void SparseLinear::prepare_cuda_weights() {
  if (dense_) {
    if (!wc_.defined()) wc_ = Tensor::matrix(config_.out, config_.in, compute_dtype(), Layout::kRowMajor, Device::kCUDA);
    copy_into(wc_, w_);
  }
  prepared_ = true;
}

TensorView SparseLinear::dense_forward_weight(bool input_grad) {
  const Sparse24Matrix& s = config_.mode == SparseMode::kFst ? ws_ : sw_;
  if (!is_fp8(s.dtype)) {
    if (!wsd_.defined()) wsd_ = decompress(s, compute_dtype());
    return wsd_;
  }
  // e4m3 codes with s's scale: the codes decoded without the scale (exact in fp32) and quantized
  // with scale 1 give back each stored code exactly.
  Tensor& t = input_grad ? wsdt_ : wsd_;
  if (!t.defined()) {
    Sparse24Matrix codes = s;  // shares s's memory
    codes.scale = 1.f;
    const Tensor w32 = decompress(codes, DType::kF32);
    t = input_grad ? Tensor::matrix(config_.in, config_.out, s.dtype, Layout::kRowMajor, Device::kCUDA)
                   : Tensor::matrix(config_.out, config_.in, s.dtype, Layout::kRowMajor, Device::kCUDA);
    quantize_into(input_grad ? t.view().t() : t.view(), w32, 1.f);
  }
  return input_grad ? t.view().t() : t.view();
}

void SparseLinear::forward_cuda(const TensorView& x, const TensorView& y) {
  const TensorView* bias = nullptr;
  if (config_.bias) {  // the current bias in the compute dtype (out elements: cheap every forward)
    if (!bc_.defined()) bc_ = Tensor::empty({config_.out}, compute_dtype(), Device::kCUDA);
    copy_into(bc_, b_);
    bias = &bc_.view();
  }
  if (dense_) return dense_mm_into(y, x, wc_.view().t(), bias);
  if (config_.mode == SparseMode::kSste) update_sste_weight(/*forward=*/true);
  if (fp8_gemms()) return forward_fp8(x, y, bias);
  const Sparse24Matrix& s = config_.mode == SparseMode::kFst ? ws_ : sw_;
  if (config_.sparse.forward) {
    mm_into(y, x, t(s), bias);
  } else {
    dense_mm_into(y, x, dense_forward_weight(false).t(), bias);
  }
}

void SparseLinear::forward_fp8(const TensorView& x, const TensorView& y, const TensorView* bias) {
  const Sparse24Matrix& s = config_.mode == SparseMode::kFst ? ws_ : sw_;
  Tensor xq;
  GemmOptions o;
  o.alpha = quantize_fp8(x, DType::kF8E4M3, &xq, nullptr);  // s's own scale multiplies too
  if (config_.sparse.forward) {
    mm_into(y, xq, t(s), bias, o);
  } else {
    o.alpha *= s.scale;
    dense_mm_into(y, xq, dense_forward_weight(false).t(), bias, o);
  }
}

void SparseLinear::backward_cuda(const TensorView& x, const TensorView& dy, const TensorView* dx,
                                 uint64_t mvue_seed) {
  if (!dense_ && config_.mode == SparseMode::kSste && !sw_valid_) update_sste_weight(/*forward=*/false);
  if (fp8_gemms()) return backward_fp8(x, dy, dx, mvue_seed);
  if (dx) {
    if (dense_) {
      dense_mm_into(*dx, dy, wc_);
    } else if (config_.mode == SparseMode::kFst && config_.sparse.input_grad) {
      mm_into(*dx, dy, t(wts_));  // dY ((W^T)_s)^T, 2:4 along out
    } else {
      dense_mm_into(*dx, dy, dense_forward_weight(true));
    }
  }
  GemmOptions accumulate;
  accumulate.beta = 1.f;
  if (!dense_ && config_.sparse.weight_grad) {
    CompressOptions o;
    o.dtype = config_.weight_dtype;
    o.non_finite = NonFinite::kPropagate;  // an overflow must reach the loss scaler
    o.layout = native_layout(config_.weight_dtype);  // N % 16 == 0 (checked by backward)
    const Sparse24Matrix s = prune_mvue(dy.t(), mvue_seed, o);  // 2:4 along the tokens
    mm_into(dw_, s, x, accumulate);
  } else {
    dense_mm_into(dw_, dy.t(), x, nullptr, accumulate);
  }
}

void SparseLinear::backward_fp8(const TensorView& x, const TensorView& dy, const TensorView* dx,
                                uint64_t mvue_seed) {
  // dY in e5m2 as the GEMMs that read it want it, from one pass: row-major for dX's A, dY^T
  // row-major for the dense dW's A (the 2:4 dW prunes the unquantized dY^T instead).
  const bool dense_dw = !config_.sparse.weight_grad;
  Tensor dyq, dyt;
  const float dy_scale =
      dx || dense_dw ? quantize_fp8(dy, DType::kF8E5M2, dx ? &dyq : nullptr, dense_dw ? &dyt : nullptr) : 1.f;
  if (dx) {
    GemmOptions o;
    o.alpha = dy_scale;
    if (config_.mode == SparseMode::kFst && config_.sparse.input_grad) {
      mm_into(*dx, dyq, t(wts_), nullptr, o);  // dY ((W^T)_s)^T, 2:4 along out
    } else {
      const Sparse24Matrix& s = config_.mode == SparseMode::kFst ? ws_ : sw_;
      o.alpha *= s.scale;
      dense_mm_into(*dx, dyq, dense_forward_weight(true), nullptr, o);
    }
  }
  // X^T in e4m3, the K-major (column-major) X both weight-gradient GEMMs read. (Keeping the
  // forward's copy would save this pass, but nothing could tell whether x changed in between.)
  Tensor xt;
  GemmOptions accumulate;
  accumulate.beta = 1.f;
  accumulate.alpha = quantize_fp8(x, DType::kF8E4M3, nullptr, &xt);
  if (!dense_dw) {
    CompressOptions o;
    o.dtype = DType::kF32;  // e5m2 after, with the scale of MVUE's values (to_storage)
    o.non_finite = NonFinite::kPropagate;
    const Sparse24Matrix s = to_storage(prune_mvue(dy.t(), mvue_seed, o), DType::kF8E5M2, storage_layout());
    mm_into(dw_, s, xt.view().t(), accumulate);
  } else {
    accumulate.alpha *= dy_scale;
    dense_mm_into(dw_, dyt, xt.view().t(), nullptr, accumulate);
  }
}

}  // namespace sparse24
