// trainer/gpt2.h: the GPT-2 model (token + position embeddings, pre-LayerNorm blocks of causal
// multi-head attention and a GELU MLP, a final LayerNorm and the LM head tied to the token
// embedding, cross-entropy loss), built from the backend API (nn.h) and 2:4 sparse linear
// layers (layers.h), so that the CUDA backend plugs in under the same calls.
//
// The four linears of each block (qkv, attention projection, fc, fc projection) are SparseLinear
// layers; GptConfig::sparse_linears says which of them run the sparse mode (FST or S-STE) and
// which stay dense. Everything else is dense fp32. Activations are kept for one micro-batch.
#pragma once

#include <array>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "sparse24/layers.h"
#include "sparse24/optim.h"
#include "sparse24/tensor.h"

namespace sparse24::trainer {

// Which linears of each block are sparse.
enum class SparseLinears : uint8_t { kFfn, kAttention, kAll };
const char* sparse_linears_name(SparseLinears s);      // "ffn", "attention", "all"
SparseLinears parse_sparse_linears(const std::string& s);

struct GptConfig {
  int vocab = 256;          // token ids are in [0, vocab)
  int max_seq = 64;         // longest sequence (position embeddings)
  int layers = 4, heads = 4, channels = 128;
  SparseMode mode = SparseMode::kDense;
  SparseLinears sparse_linears = SparseLinears::kFfn;
  int mask_freq = 40;       // FST
  float decay_alpha = 6e-5f;  // FST masked decay
  GemmChoice gemms;         // which GEMMs of the sparse linears run 2:4
  DType weight_dtype = DType::kF32;  // compressed weights' dtype in the sparse GEMMs
  int64_t dense_from_step = -1;      // dense fine-tuning from this optimizer step (-1: never)
  uint64_t seed = 1;        // weight initialisation
};

class Gpt2 {
 public:
  explicit Gpt2(const GptConfig& config);  // validates, initialises every weight from the seed
  const GptConfig& config() const { return config_; }
  int64_t num_parameters() const;

  // Once per optimizer step, before its first micro-batch (mask updates, compression).
  void begin_step(int64_t step);
  // After an optimizer step, before a forward outside training (evaluation): FST layers
  // recompress their updated weights with the current mask.
  void refresh_sparse_weights();
  // Runs the model on tokens [B*T] (int32 ids); with targets, returns the mean cross-entropy
  // and keeps what backward needs; without, returns NaN (logits and probabilities only).
  float forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // Accumulates the gradient of (loss_scale * mean loss) of the last forward into every
  // parameter's gradient. mvue_seed seeds the sparse layers' MVUE24 draws.
  void backward(float loss_scale, uint64_t mvue_seed);
  void zero_grad();
  // The next-token probabilities [V] at position t of sequence b of the last forward.
  const float* probs(int b, int t) const;

  void add_parameters(AdamW& opt);
  // Every parameter and its gradient, in one order.
  std::vector<TensorView> parameters() const;
  std::vector<TensorView> grads() const;
  // Mean flip rate of the sparse layers' latest mask updates (NaN without sparse layers), and
  // the bytes they hold beyond dense training.
  double mean_flip_rate() const;
  size_t sparse_extra_bytes() const;

  // Model state (weights, sparse layers' masks, beta, counters) as named blobs and back.
  std::vector<std::pair<std::string, std::string>> save() const;
  void load(const std::vector<std::pair<std::string, std::string>>& blobs);

 private:
  struct Block {
    Tensor ln1w, ln1b, ln2w, ln2b, dln1w, dln1b, dln2w, dln2b;
    SparseLinear qkv, attproj, fc, fcproj;
    std::array<SparseLinear*, 4> linears() { return {&qkv, &attproj, &fc, &fcproj}; }
    std::array<const SparseLinear*, 4> linears() const { return {&qkv, &attproj, &fc, &fcproj}; }
  };
  struct Acts;  // activations and their gradients for one (B, T)
  void ensure_acts(int B, int T);

  GptConfig config_;
  Tensor wte_, wpe_, lnfw_, lnfb_, dwte_, dwpe_, dlnfw_, dlnfb_;
  std::vector<Block> blocks_;
  std::shared_ptr<Acts> acts_;
  int B_ = 0, T_ = 0;
  std::vector<int32_t> tokens_, targets_;
  bool have_targets_ = false;
};

}  // namespace sparse24::trainer
