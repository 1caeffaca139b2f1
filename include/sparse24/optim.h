// sparse24/optim.h: AdamW with FST's masked decay fused into its update, gradient clipping by
// global norm, and a dynamic loss scaler for fp16 compute.
//
// Master weights and their gradients are fp32 (compute may be fp16/bf16: the layers accumulate
// their gradients into fp32). One optimizer step, in the order the FST recipe fixes:
//   scaler.unscale_and_check(grads)  -> false: skip the step (an overflow), the scale backs off
//   clip_grad_norm(grads, 1.0)
//   opt.step(lr)                      -> masked decay, decoupled weight decay, Adam update
//   scaler.update(); opt.zero_grad()
// Everything runs where the tensors are (CPU or CUDA): AdamW and the scaling of gradients give
// bit-identical results on both; the global norm of CUDA gradients is summed in double in
// another order (equal to ~1e-15 relative).
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <vector>

#include "sparse24/format.h"
#include "sparse24/tensor.h"

namespace sparse24 {

// The reference GPT-2 recipe's values (ALGORITHMS notes: betas (0.9, 0.95), weight decay 0.1).
struct AdamWConfig {
  float lr = 1.5e-4f;  // used by step() without an argument
  float beta1 = 0.9f, beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;  // decoupled (PyTorch AdamW), for parameters added with decay = true
};

// AdamW as PyTorch's torch.optim.AdamW (amsgrad off), per element, in fp32:
//   g  = grad                              (+ alpha * w where the mask prunes: masked decay)
//   w  = w - lr * wd * w                   (parameters added with decay = true)
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g * g
//   w  = w - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// The masked decay term is computed exactly as sparse24::masked_decay computes it (from the
// weight before the decoupled decay), inside the same loop: the result is bit-identical to
// calling masked_decay(grad, w, mask, alpha) first and then a plain step, without the extra pass
// over memory and without modifying grad.
class AdamW {
 public:
  explicit AdamW(const AdamWConfig& config = {});  // throws kValue for out-of-range values

  // Registers a parameter: param and grad are fp32 contiguous tensors of one shape (rank 1 to
  // 4) on one device, the mask (if any) on that device too; the optimizer keeps the views, so the
  // memory must outlive it. Its moments live on the parameter's device. With a mask (rank-2
  // parameters only) the step adds alpha * w to the gradient where the mask prunes. The mask is
  // read through the pointer at every step: the caller (SparseLinear) may replace its contents
  // (a new mask every mask_freq steps), and an undefined mask (Mask24{}) turns the decay off (FST
  // before its first mask, or after the switch to dense fine-tuning). Returns the parameter's
  // index. Zero-initialises its m and v.
  size_t add(const TensorView& param, const TensorView& grad, bool decay,
             const Mask24* masked_decay_mask = nullptr, float masked_decay_alpha = 0.f);
  // Changes the masked decay factor of parameter `index` (a warm-up schedule for alpha).
  void set_masked_decay_alpha(size_t index, float alpha);

  // One update of every parameter with learning rate lr (a schedule's value for this step).
  void step(float lr);
  void step() { step(config_.lr); }
  // Sets every registered gradient to zero.
  void zero_grad();

  int64_t steps() const { return t_; }  // the number of steps taken (t of the bias correction)
  size_t size() const { return params_.size(); }
  const AdamWConfig& config() const { return config_; }
  // The registered gradients, in order (for clip_grad_norm and LossScaler).
  std::vector<TensorView> grads() const;
  // The moments of parameter `index`, fp32, the parameter's shape.
  const Tensor& exp_avg(size_t index) const;
  const Tensor& exp_avg_sq(size_t index) const;

  // Binary state (config, t, per parameter: element count, m, v), versioned, native
  // little-endian. load() restores it into an optimizer with the same parameters registered in
  // the same order (the config is restored too); a truncated or mismatched stream throws kIO.
  void save(std::ostream& os) const;
  void load(std::istream& is);

 private:
  struct Param {
    TensorView param, grad;
    bool decay = false;
    const Mask24* mask = nullptr;
    float alpha = 0.f;
    Tensor m, v;
  };
  AdamWConfig config_;
  int64_t t_ = 0;
  std::vector<Param> params_;
};

// Scales the gradients in place so that their global L2 norm (over all tensors together) is at
// most max_norm, as torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied
// only when it is below 1. Returns the norm before clipping (accumulated in double). Gradients:
// fp32/fp16/bf16, rank 1 to 4, any strides on the CPU but 0 (each element its own memory),
// contiguous on CUDA (a list may mix both).
// A non-finite norm (an overflow) leaves the gradients unchanged and is returned as is: the
// caller skips the step. max_norm must be finite and > 0 (kValue).
double clip_grad_norm(const std::vector<TensorView>& grads, double max_norm);

// Dynamic loss scaling for fp16 compute (PyTorch's GradScaler rules). The loss is multiplied by
// scale() before the backward; unscale_and_check divides the gradients by it.
struct LossScalerConfig {
  float init_scale = 65536.f;   // 2^16
  float growth_factor = 2.f;    // > 1
  float backoff_factor = 0.5f;  // in (0, 1)
  int growth_interval = 2000;   // consecutive good steps before the scale grows
};

class LossScaler {
 public:
  explicit LossScaler(const LossScalerConfig& config = {});  // throws kValue on bad values

  float scale() const { return scale_; }
  // Multiplies every gradient by 1/scale (exact for the power-of-two scales this class keeps when
  // started from one). Returns false if any gradient holds NaN or Inf: then the step must be
  // skipped, and the scale has already backed off (times backoff_factor, not below the smallest
  // normal float) and the growth counter restarted. Gradients as clip_grad_norm's.
  bool unscale_and_check(const std::vector<TensorView>& grads);
  // Called once per iteration after unscale_and_check: after a good check it counts a good step
  // and grows the scale (times growth_factor) every growth_interval consecutive good steps; after
  // a failed check it does nothing (the backoff is done).
  void update();

  int growth_tracker() const { return good_steps_; }
  int64_t skipped_steps() const { return skipped_; }
  const LossScalerConfig& config() const { return config_; }

  // Binary state (config, scale, counters), versioned; truncated or corrupt streams throw kIO.
  void save(std::ostream& os) const;
  void load(std::istream& is);

 private:
  LossScalerConfig config_;
  float scale_;
  int good_steps_ = 0;
  int64_t skipped_ = 0;
  bool last_ok_ = true;
  bool checked_ = false;  // unscale_and_check ran since the last update()
};

}  // namespace sparse24
