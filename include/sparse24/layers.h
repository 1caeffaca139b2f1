// sparse24/layers.h: the 2:4 sparse linear layer of FST (ICML 2024) and S-STE (NeurIPS 2024)
// pre-training, y = x W^T + b with W of shape [out, in], forward and backward.
//
// The layer owns fp32 master weights and their fp32 gradients; the optimizer (optim.h) updates
// the masters, straight-through: every gradient is a gradient with respect to the weight the
// GEMMs used, applied to the dense master W.
//
//   mode    forward weight           dX GEMM                      dW GEMM
//   kDense  W                        dY W                         dY^T X
//   kFst    W_s = W * mask           dY (W^T)_s (2:4, K = out)     MVUE24(dY^T) X (2:4, K = N)*
//   kSste   beta * S(W)              dY (beta S(W)) (dense)       MVUE24(dY^T) X (2:4, K = N)*
//   * the papers' recipe, with GemmChoice::weight_grad; by default dW = dY^T X, dense and exact.
//
// FST: the transposable mask is re-selected from the master W at every optimizer step that is
// a multiple of mask_freq (and at the first step); W and W^T are compressed with the current mask
// once per optimizer step (begin_step) and reused by every gradient-accumulation micro-step. The
// masked decay (grad += alpha * W where the mask prunes) is fused into AdamW (add_parameters).
// S-STE: S is the soft threshold, recomputed from W at every forward; beta = sste_scale(W) is
// computed once from the initial weights and frozen (saved with the layer). The backward uses the
// forward weight of the latest forward (as autograd saves it).
//
// Every mode can switch to dense fine-tuning (plain fp32 GEMMs on the master W) at a chosen step.
// GemmChoice sets per GEMM whether it runs as a 2:4 product (gemm.h) or densely on the same
// (decompressed) weight; both give the same values up to fp32 summation, and dW dense is the
// exact dY^T X instead of MVUE's unbiased estimate.
//
// Tokens: x is [N, in], y and dy [N, out]; N must be divisible by 4 when the weight gradient runs
// sparse (MVUE prunes dY^T along the tokens).
//
// Devices (LinearConfig::device). CPU: the reference; activations fp32/fp16/bf16 in any layout,
// GEMMs in fp32 on weights stored as weight_dtype. CUDA: masters and gradients in GPU memory,
// the layer belongs to the GPU current at its construction (its calls throw kDevice while another
// GPU is current: cudaSetDevice first); weight_dtype (fp16 or bf16) is the compute dtype: x, y,
// dy, dx are CUDA tensors of that dtype (row- or column-major; bf16 when weight_dtype is e4m3,
// FP8 GEMMs), in and out multiples of 16 in the sparse modes (32 for e4m3) and N too when the
// weight gradient is 2:4 (e4m3: 32, and 16 for its dense weight gradient); the 2:4 GEMMs run on
// the sparse tensor cores (gemm.h, kAuto; without the native kernels, expanded to dense), the
// dense ones on cuBLASLt. The weights the GEMMs read (FST's compressed W and W^T, a dense layer's
// 16-bit W) are prepared by begin_step: call it every optimizer step in every mode (the CPU
// needs it for FST only); S-STE's beta S(W) and the 16-bit bias follow the masters at every
// forward, as on the CPU. On CUDA S-STE's per-forward soft threshold propagates a non-finite
// weight (NaN outputs, which a loss scaler catches) instead of throwing, so it does not wait for
// the GPU (the first forward of a step still reads the mask's flip count back); FST's mask
// selection still throws.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>

#include "sparse24/dtype.h"
#include "sparse24/format.h"
#include "sparse24/optim.h"
#include "sparse24/tensor.h"
#include "sparse24/transforms.h"

namespace sparse24 {

enum class SparseMode : uint8_t { kDense, kFst, kSste };
// "dense", "fst", "sste".
const char* sparse_mode_name(SparseMode mode);

// Which of the three GEMMs run as 2:4 products (sparse modes only; ignored when dense). S-STE's
// input gradient is always dense (S(W) is 2:4 along `in` only), so input_grad is ignored there.
// The weight gradient is dense by default: MVUE exists only to make it a 2:4 product for speed,
// and `sparse24 bench ffn` (bench/results/) measures that on Hopper the 2:4 weight gradient
// (MVUE24 of dY^T, then a 2:4 GEMM with K = tokens) is slower than the exact dense one at every
// GPT-2 width: FST with a dense dW is 1.07-1.26x faster per step than with MVUE (H200,
// bench/results/2026-11-27-h200-ffn.md). Set weight_grad for the papers' exact recipe.
struct GemmChoice {
  bool forward = true;
  bool input_grad = true;
  bool weight_grad = false;  // true: dW = MVUE24(dY^T) X as a 2:4 product (needs N % 4 == 0)
};

// What switch_to_dense does with the master weights.
enum class DenseSwitch : uint8_t {
  kKeepWeights,  // the masters keep their values: FST's pruned entries are what the masked decay
                 // left them (small, non-zero), S-STE's forward weight jumps from beta S(W) to W
  kApplyMask,    // the masters become the sparse forward weight (FST: W * mask; S-STE:
                 // beta * S(W)), so the function the layer computes is continuous at the switch
};

struct LinearConfig {
  int64_t in = 0, out = 0;  // W is [out, in]; FST needs both divisible by 4, S-STE `in`
  bool bias = true;
  SparseMode mode = SparseMode::kDense;
  int mask_freq = 40;           // FST: optimizer steps between mask selections (>= 1)
  float decay_alpha = 6e-5f;    // FST: masked decay factor (>= 0; 2e-4 for GPT-2 350M and 1.5B)
  GemmChoice sparse;
  // Storage dtype of the compressed weights used by the GEMMs: fp32, fp16, bf16, or e4m3 (FP8,
  // per-tensor scale amax / 448). With e4m3 the sparse modes run S-STE's FP8 recipe (the CPU
  // simulates it, as the reference did; CUDA runs FP8 GEMMs on bf16 activations): the forward's
  // x is quantized to e4m3 (per-tensor amax scale, tensor.h: fp8_scale) and the backward's dY and
  // MVUE(dY^T) to e5m2 (amax / 57344); the weight-gradient GEMM reads the e4m3 x. Ignored in
  // kDense mode and after the dense switch (CPU: fp32 GEMMs on the masters; CUDA: bf16). On CUDA
  // fp16 and bf16 are the compute dtype in every mode.
  DType weight_dtype = DType::kF32;
  // Where the masters, gradients and GEMMs live (see the top of this file): CUDA needs
  // weight_dtype fp16, bf16 or e4m3.
  Device device = Device::kCPU;
  uint64_t seed = 0;              // init(): the weights' random stream
  int64_t dense_from_step = -1;   // begin_step(s) with s >= this switches to dense; -1: never
  DenseSwitch dense_switch = DenseSwitch::kKeepWeights;  // what that automatic switch does
};

struct LayerStats {
  SparseMode mode = SparseMode::kDense;
  bool dense = true;              // running dense GEMMs: kDense, or after the switch
  int64_t step = -1;              // the latest begin_step (-1: none yet)
  // FST: mask selections so far; S-STE: optimizer steps whose mask was compared with the
  // previous step's (the mask of the first forward of each step).
  int64_t mask_updates = 0;
  int64_t last_mask_update_step = -1;    // FST
  int64_t steps_since_mask_update = 0;   // FST: step - last_mask_update_step
  // Fraction of mask entries that changed at the latest comparison (FST: mask update vs the
  // previous mask; S-STE: this step's mask vs the previous step's). NaN before there are two.
  double flip_rate = 0.0;
  double kept_fraction = 1.0;     // fraction of W the mask keeps: 0.5 in sparse modes, 1 dense
  double nonzero_fraction = 1.0;  // non-zeros of the current forward weight (S-STE shrinks some
                                  // kept entries to 0), of all out * in entries
  double pruned_norm = 0.0;       // L2 norm of the master W at pruned positions (FST's masked
                                  // decay drives it down; large values make mask flips cheap)
  double beta = 1.0;              // S-STE's frozen scale (1 otherwise)
};

class SparseLinear {
 public:
  // Validates the config (kShape: sizes; kValue: mask_freq, alpha; kDType: weight_dtype) and
  // initialises the weights with init(config.seed).
  explicit SparseLinear(const LinearConfig& config);
  // Moves keep the weight memory and the mask object, so an optimizer's views and mask pointer
  // stay valid; a moved-from layer may only be destroyed or assigned to.
  SparseLinear(SparseLinear&&) noexcept = default;
  SparseLinear& operator=(SparseLinear&&) noexcept = default;
  SparseLinear(const SparseLinear&) = delete;  // would share the weight memory
  SparseLinear& operator=(const SparseLinear&) = delete;

  // GPT-2 initialisation: W ~ N(0, 0.02^2) from std::mt19937_64(seed), bias 0, gradients 0.
  // Resets the mask state (FST selects a new mask at the next begin_step), returns to the sparse
  // mode, and computes S-STE's beta from the new weights (the one moment beta is set).
  void init(uint64_t seed);
  // Copies given weights ([out, in] and [out], any float dtype and layout, on the CPU or the
  // layer's device; bias may be null when the layer has none) into the masters: a
  // re-initialisation, with init()'s resets.
  void set_weights(const TensorView& w, const TensorView* b = nullptr);

  // Once per optimizer step, before its first micro-step. Switches to dense when step reaches
  // dense_from_step; FST: selects a new transposable mask when there is none or step %
  // mask_freq == 0 (recording the flip rate), then compresses W and W^T for this step's GEMMs.
  void begin_step(int64_t step);
  // Brings the GEMMs' weights up to date with the masters without a mask selection (FST:
  // recompresses W and W^T with the current mask; CUDA: also the 16-bit copies): after an
  // optimizer step, so that a forward outside training (an evaluation) sees the updated weights.
  // A CPU layer in another mode, or without a mask yet, needs nothing.
  void recompress();

  // y = x W_eff^T + b. x: [N, in]; y: [N, out] (written; CPU: any float dtype and layout).
  void forward(const TensorView& x, const TensorView& y);
  Tensor forward(const TensorView& x);  // a fresh [N, out]: fp32 on the CPU, the compute dtype on CUDA
  // Accumulates dW += and db += (fp32) and writes dx = dY W_eff when dx is not null. mvue_seed
  // seeds MVUE24's draws (use a different one per micro-step and layer).
  void backward(const TensorView& x, const TensorView& dy, const TensorView* dx, uint64_t mvue_seed);

  // Dense fine-tuning from now on (idempotent); frees the compressed weights and the mask, which
  // also ends the fused masked decay.
  void switch_to_dense(DenseSwitch how = DenseSwitch::kKeepWeights);
  bool is_dense() const { return dense_; }

  void zero_grad();
  // Registers W (weight decay, FST's masked decay through decay_mask()) and b (no decay). The
  // optimizer keeps views of the layer's memory: the layer must outlive it.
  void add_parameters(AdamW& opt);

  const LinearConfig& config() const { return config_; }
  TensorView weight() const { return w_.view(); }        // fp32 [out, in], the masters (on config().device)
  TensorView bias() const { return b_.view(); }          // fp32 [out] (empty when no bias)
  TensorView weight_grad() const { return dw_.view(); }
  TensorView bias_grad() const { return db_.view(); }
  bool has_bias() const { return config_.bias; }
  // FST: the current transposable mask; S-STE: the mask of the latest forward's S(W); undefined
  // in dense mode, before the first mask and after the switch.
  const Mask24& mask() const;
  // The mask the optimizer's masked decay reads at every step: FST's current mask, held on the
  // heap so that its address survives moves of the layer (a vector of layers may grow after
  // add_parameters); nullptr in the other modes. Valid until the layer is destroyed.
  const Mask24* decay_mask() const { return config_.mode == SparseMode::kFst ? mask_.get() : nullptr; }
  float decay_alpha() const { return config_.decay_alpha; }
  double beta() const { return beta_; }
  LayerStats stats() const;
  // Bytes held beyond the fp32 masters and gradients: compressed W and W^T with their metadata,
  // the mask bits, S-STE's cached forward weight and previous mask; on CUDA also the 16-bit
  // copies the GEMMs read (a dense layer's W and every layer's bias).
  size_t extra_bytes() const;

  // Binary, versioned, native little-endian, device-independent (load takes the device to
  // restore onto; load_state restores onto this layer's): config, masters, mask, beta, dense flag, step
  // counters and statistics; not gradients (save at a step boundary) nor compressed weights:
  // loading an FST layer compresses W and W^T from the loaded masters and mask, so it can run a
  // forward at once (evaluation, sampling); training goes on with begin_step as usual.
  // Truncated, corrupt or mismatched streams throw kIO.
  void save(std::ostream& os) const;
  // weight_dtype, when given, replaces the saved one (a CPU layer stored in fp32 computes in fp16
  // or bf16 on CUDA). A config the device cannot run throws kIO, naming the reason.
  static SparseLinear load(std::istream& is, Device device = Device::kCPU,
                           std::optional<DType> weight_dtype = std::nullopt);
  // Restores in place (keeping the weight memory, so an optimizer's views stay valid) from a
  // stream saved by a layer of the same shape, bias and mode; gradients are zeroed. The rest of
  // the config (weight_dtype, GemmChoice, mask_freq, ...) comes from the stream, the device stays
  // this layer's.
  void load_state(std::istream& is);

 private:
  struct Saved;
  static Saved read_saved(std::istream& is);
  void apply_saved(Saved&& s);
  void check_io(const char* op, const TensorView& x, const TensorView& other, int64_t other_cols,
                const char* other_name) const;
  bool on_cuda() const { return config_.device == Device::kCUDA; }
  // CUDA: throws kDevice unless the current GPU is the one the layer was made on.
  void check_gpu(const char* op) const;
  // Throws when the GEMMs' weights are not ready (FST before begin_step; CUDA before
  // begin_step or recompress).
  void check_compressed(const char* op) const;
  // How the weights are compressed: in fp32 on the CPU and for FP8 (converted to weight_dtype
  // after: to_storage), else straight to the GEMMs' dtype.
  CompressOptions weight_storage() const;
  // The metadata layout the GEMMs read: the native sm90 one on CUDA, canonical on the CPU.
  MetaLayout storage_layout() const;
  // The dtype of activations on CUDA (bf16 with e4m3 weights, else weight_dtype); fp32 on the CPU
  // (the dtype of the outputs forward(x) allocates).
  DType compute_dtype() const;
  // FST: W and W^T of the current mask for this step's GEMMs (t: a fresh selection's result).
  void compress_fst(Transposable24 t);
  // S-STE: sw_ = beta S(W) of the current masters; a forward also records the mask statistics.
  void update_sste_weight(bool forward);
  // CUDA: the 16-bit weights that begin_step and recompress prepare.
  void prepare_cuda_weights();
  // CUDA: the sparse forward weight W_eff [out, in] as a dense matrix for the dense GEMMs, made
  // once per weight: in the compute dtype, or for FP8 an e4m3 copy (with the compressed weight's
  // scale) in the layout the FP8 GEMM needs: row-major for the forward (x W^T), column-major
  // for the input gradient (dY W).
  TensorView dense_forward_weight(bool input_grad);
  void forward_cuda(const TensorView& x, const TensorView& y);
  void backward_cuda(const TensorView& x, const TensorView& dy, const TensorView* dx, uint64_t mvue_seed);
  // CUDA with e4m3 weights in a sparse mode: the GEMMs of S-STE's FP8 recipe.
  bool fp8_gemms() const { return on_cuda() && !dense_ && config_.weight_dtype == DType::kF8E4M3; }
  void forward_fp8(const TensorView& x, const TensorView& y, const TensorView* bias);
  void backward_fp8(const TensorView& x, const TensorView& dy, const TensorView* dx, uint64_t mvue_seed);

  LinearConfig config_;
  int gpu_ = -1;            // CUDA: the GPU the layer's memory is on (current_gpu at construction)
  Tensor w_, b_, dw_, db_;  // fp32 masters and gradients
  bool dense_ = false;
  int64_t step_ = -1;
  double beta_ = 1.0;
  // FST
  std::unique_ptr<Mask24> mask_;  // never null (but in a moved-from layer)
  Sparse24Matrix ws_, wts_;  // W and W^T compressed for the current step
  bool compressed_ = false;
  int64_t mask_updates_ = 0, last_mask_step_ = -1;
  double flip_rate_;
  // CUDA: the compute-dtype weights of dense GEMMs
  Tensor wc_, bc_;           // W (dense mode, after the switch) and the bias
  // The sparse forward weight decompressed for the dense GEMMs (GemmChoice dense, S-STE's dX),
  // made on demand, dropped when ws_ / sw_ change; FP8: wsd_ row-major, wsdt_ = its transpose.
  Tensor wsd_, wsdt_;
  bool prepared_ = false;    // begin_step or recompress ran since the last (re)initialisation
  // S-STE
  Sparse24Matrix sw_;        // beta * S(W) of the latest forward
  bool sw_valid_ = false;
  Mask24 sste_prev_mask_;    // the mask of the first forward of the previous step
  int64_t sste_mask_step_ = -2;
};

}  // namespace sparse24
