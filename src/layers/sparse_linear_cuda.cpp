// The sparse linear layer (sparse24/layers.h), CUDA path: the steps of the CPU path, with the
// GEMMs of gemm.h on 16-bit weights (2:4 products on the sparse tensor cores, dense ones on
// cuBLASLt) and nothing copied to the host. Built in every configuration (it calls only the
// public API); without CUDA a CUDA layer cannot be constructed.
//
// Per optimizer step (begin_step): FST compresses W and W^T (and selects the mask every
// mask_freq steps); a dense layer refreshes its 16-bit W.
// Per micro-step:
//   forward   y  = x W_s^T + b          FST: mm_into(y, x, t(W_s)); S-STE: beta S(W) first; the
//                                       bias converted to the compute dtype
//   backward  db += colsum(dY)          nn::bias_backward (the caller, for both devices)
//             dX  = dY W_s              FST: mm_into(dX, dY, t((W^T)_s)); S-STE: dense
//             dW += dY^T X              dense by default; with GemmChoice::weight_grad
//                                       prune_mvue(dY.t()) then mm_into(dW, S, X), beta = 1
#include "sparse24/error.h"
#include "sparse24/gemm.h"
#include "sparse24/layers.h"

namespace sparse24 {

void SparseLinear::prepare_cuda_weights() {
  const DType cdt = config_.weight_dtype;
  if (dense_) {
    if (!wc_.defined()) wc_ = Tensor::matrix(config_.out, config_.in, cdt, Layout::kRowMajor, Device::kCUDA);
    copy_into(wc_, w_);
  }
  prepared_ = true;
}

const Tensor& SparseLinear::dense_forward_weight() {
  if (!wsd_fresh_) {
    wsd_ = decompress(config_.mode == SparseMode::kFst ? ws_ : sw_, config_.weight_dtype);
    wsd_fresh_ = true;
  }
  return wsd_;
}

void SparseLinear::forward_cuda(const TensorView& x, const TensorView& y) {
  const TensorView* bias = nullptr;
  if (config_.bias) {  // the current bias in the compute dtype (out elements: cheap every forward)
    if (!bc_.defined()) bc_ = Tensor::empty({config_.out}, config_.weight_dtype, Device::kCUDA);
    copy_into(bc_, b_);
    bias = &bc_.view();
  }
  if (dense_) return dense_mm_into(y, x, wc_.view().t(), bias);
  if (config_.mode == SparseMode::kSste) update_sste_weight(/*forward=*/true);
  const Sparse24Matrix& s = config_.mode == SparseMode::kFst ? ws_ : sw_;
  if (config_.sparse.forward) {
    mm_into(y, x, t(s), bias);
  } else {
    dense_mm_into(y, x, dense_forward_weight().view().t(), bias);
  }
}

void SparseLinear::backward_cuda(const TensorView& x, const TensorView& dy, const TensorView* dx,
                                 uint64_t mvue_seed) {
  if (!dense_ && config_.mode == SparseMode::kSste && !sw_valid_) update_sste_weight(/*forward=*/false);
  if (dx) {
    if (dense_) {
      dense_mm_into(*dx, dy, wc_);
    } else if (config_.mode == SparseMode::kFst && config_.sparse.input_grad) {
      mm_into(*dx, dy, t(wts_));  // dY ((W^T)_s)^T, 2:4 along out
    } else {
      dense_mm_into(*dx, dy, dense_forward_weight());
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

}  // namespace sparse24
