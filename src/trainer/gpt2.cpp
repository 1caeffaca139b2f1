// The GPT-2 model over nn.h (dense layers) and layers.h (2:4 sparse linears); see gpt2.h.
#include "trainer/gpt2.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include "sparse24/error.h"
#include "sparse24/philox.h"
#include "sparse24/nn.h"
#include "trainer/checkpoint.h"

namespace sparse24::trainer {

const char* sparse_linears_name(SparseLinears s) {
  switch (s) {
    case SparseLinears::kFfn: return "ffn";
    case SparseLinears::kAttention: return "attention";
    case SparseLinears::kAll: return "all";
  }
  return "?";
}

SparseLinears parse_sparse_linears(const std::string& s) {
  if (s == "ffn") return SparseLinears::kFfn;
  if (s == "attention") return SparseLinears::kAttention;
  if (s == "all") return SparseLinears::kAll;
  S24_FAIL(kValue, "unknown sparse linears '", s, "' (ffn, attention, all)");
}

namespace {

Tensor zeros(std::initializer_list<int64_t> shape) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  fill_zeros(t);
  return t;
}
Tensor filled(int64_t n, float v) {
  Tensor t = Tensor::empty({n}, DType::kF32);
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = v;
  return t;
}
Tensor normal(std::initializer_list<int64_t> shape, float std, std::mt19937_64& rng) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  std::normal_distribution<float> dist(0.f, std);
  for (int64_t i = 0, n = t.numel(); i < n; ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// The machine's memory in bytes (0 if unknown), and a check that `bytes` of fp32 tensors fit in
// it: configurations that cannot fit fail here, naming the size, instead of in the allocator.
double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? double(pages) * double(page) : 0.0;
}
void check_fits(double bytes, const char* what) {
  const double have = physical_memory_bytes();
  S24_CHECK(have == 0 || bytes <= have, kValue, "GPT-2 config: ", what, " need about ", bytes / 1e9,
            " GB and this machine has ", have / 1e9, " GB");
}

// A loaded fp32 host tensor holds only finite values (a checkpoint's weights; its checksum
// catches corruption in transit, not NaNs written by a diverged or hand-edited run).
void check_finite(const TensorView& t, const std::string& name) {
  if (t.device != Device::kCPU) return;
  const float* p = static_cast<const float*>(t.data);
  for (int64_t i = 0, n = t.numel(); i < n; ++i)
    S24_CHECK(std::isfinite(p[i]), kIO, "checkpoint: ", name, " holds a non-finite value (", p[i], ") at element ", i);
}

// A rank-1 int32 view of host token ids.
TensorView ids(const int32_t* p, int64_t n) {
  TensorView v;
  v.data = const_cast<int32_t*>(p);
  v.dtype = DType::kI32;
  v.rank = 1;
  v.shape[0] = n;
  v.strides[0] = 1;
  return v;
}


}  // namespace

// Activations of one forward pass and the scratch gradients of the backward pass.
struct Gpt2::Acts {
  Tensor encoded;
  struct Layer {
    Tensor ln1, ln1_mean, ln1_rstd, qkv, atty, preatt, att, attproj, residual2;
    Tensor ln2, ln2_mean, ln2_rstd, fch, fch_gelu, fcproj, residual3;
  };
  std::vector<Layer> layers;
  Tensor lnf, lnf_mean, lnf_rstd, logits, probs, losses;
  // Backward scratch, reused by every layer.
  Tensor dres, dln, dqkv, datty, dpreatt, datt, dfch, dfch_gelu, dlnf, dlogits, dlosses;
};

Gpt2::Gpt2(const GptConfig& c) : config_(c) {
  S24_CHECK(c.vocab > 0 && c.max_seq > 0 && c.layers > 0 && c.heads > 0 && c.channels > 0, kValue,
            "GPT-2 config: vocab, max_seq, layers, heads and channels must be positive");
  S24_CHECK(c.channels % c.heads == 0, kShape, "GPT-2 config: channels (", c.channels, ") not divisible by heads (",
            c.heads, ")");
  S24_CHECK(c.mode == SparseMode::kDense || c.channels % 4 == 0, kShape, "GPT-2 config: channels (", c.channels,
            ") must be divisible by 4 for 2:4 sparse linears");
  {  // every weight and its gradient in fp32 (the sparse layers hold more: this is a floor)
    const double C = c.channels, L = c.layers;
    const double params = (double(c.vocab) + c.max_seq + 2) * C + L * (12 * C * C + 13 * C);
    char what[96];
    std::snprintf(what, sizeof what, "its %.3g parameters (weights and gradients, 8 bytes each)", params);
    check_fits(8 * params, what);
  }
  std::mt19937_64 rng(c.seed);
  const int64_t C = c.channels;
  wte_ = normal({c.vocab, C}, 0.02f, rng);
  wpe_ = normal({c.max_seq, C}, 0.01f, rng);
  lnfw_ = filled(C, 1.f);
  lnfb_ = filled(C, 0.f);
  dwte_ = zeros({c.vocab, C});
  dwpe_ = zeros({c.max_seq, C});
  dlnfw_ = zeros({C});
  dlnfb_ = zeros({C});
  auto linear = [&](int64_t in, int64_t out, bool sparse, uint64_t seed) {
    LinearConfig lc;
    lc.in = in;
    lc.out = out;
    lc.bias = true;
    lc.mode = sparse ? c.mode : SparseMode::kDense;
    lc.mask_freq = c.mask_freq;
    lc.decay_alpha = c.decay_alpha;
    lc.sparse = c.gemms;
    lc.weight_dtype = c.weight_dtype;
    lc.seed = seed;
    lc.dense_from_step = c.dense_from_step;
    return SparseLinear(lc);
  };
  const bool attn_sparse = c.sparse_linears != SparseLinears::kFfn;
  const bool ffn_sparse = c.sparse_linears != SparseLinears::kAttention;
  for (int l = 0; l < c.layers; ++l) {
    const uint64_t s = mix_seed(c.seed ^ (uint64_t(l + 1) << 32));
    blocks_.push_back(Block{filled(C, 1.f), filled(C, 0.f), filled(C, 1.f), filled(C, 0.f), zeros({C}), zeros({C}),
                            zeros({C}), zeros({C}), linear(C, 3 * C, attn_sparse, mix_seed(s + 1)),
                            linear(C, C, attn_sparse, mix_seed(s + 2)), linear(C, 4 * C, ffn_sparse, mix_seed(s + 3)),
                            linear(4 * C, C, ffn_sparse, mix_seed(s + 4))});
  }
}

int64_t Gpt2::num_parameters() const {
  int64_t n = wte_.numel() + wpe_.numel() + lnfw_.numel() + lnfb_.numel();
  for (const Block& b : blocks_) {
    n += 4 * b.ln1w.numel();
    for (const SparseLinear* l : b.linears())
      n += l->weight().numel() + (l->has_bias() ? l->bias().numel() : 0);
  }
  return n;
}

void Gpt2::ensure_acts(int B, int T) {
  if (acts_ && B == B_ && T == T_) return;
  const int64_t N = int64_t(B) * T, C = config_.channels, V = config_.vocab, NH = config_.heads;
  {  // the tensors below, in fp32
    const double n = double(N), c = double(C), att = double(B) * NH * T * T;
    const double floats = config_.layers * (18 * n * c + 4 * n + 2 * att) + 17 * n * c + 3 * n * double(V) + 2 * att;
    char what[96];
    std::snprintf(what, sizeof what, "activations of %d x %d tokens", B, T);
    check_fits(4 * floats, what);
  }
  auto a = std::make_shared<Acts>();
  a->encoded = zeros({N, C});
  for (int l = 0; l < config_.layers; ++l)
    a->layers.push_back({zeros({N, C}), zeros({N}), zeros({N}), zeros({N, 3 * C}), zeros({N, C}),
                         zeros({B, NH, T, T}), zeros({B, NH, T, T}), zeros({N, C}), zeros({N, C}), zeros({N, C}),
                         zeros({N}), zeros({N}), zeros({N, 4 * C}), zeros({N, 4 * C}), zeros({N, C}), zeros({N, C})});
  a->lnf = zeros({N, C});
  a->lnf_mean = zeros({N});
  a->lnf_rstd = zeros({N});
  a->logits = zeros({N, V});
  a->probs = zeros({N, V});
  a->losses = zeros({N});
  a->dres = zeros({N, C});
  a->dln = zeros({N, C});
  a->dqkv = zeros({N, 3 * C});
  a->datty = zeros({N, C});
  a->dpreatt = zeros({B, NH, T, T});
  a->datt = zeros({B, NH, T, T});
  a->dfch = zeros({N, 4 * C});
  a->dfch_gelu = zeros({N, 4 * C});
  a->dlnf = zeros({N, C});
  a->dlogits = zeros({N, V});
  a->dlosses = zeros({N});
  acts_ = a;
  B_ = B;
  T_ = T;
}

void Gpt2::begin_step(int64_t step) {
  for (Block& b : blocks_)
    for (SparseLinear* l : b.linears()) l->begin_step(step);
}

void Gpt2::refresh_sparse_weights() {
  for (Block& b : blocks_)
    for (SparseLinear* l : b.linears()) l->recompress();
}

float Gpt2::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  S24_CHECK(B > 0 && T > 0 && T <= config_.max_seq, kShape, "GPT-2 forward: B = ", B, ", T = ", T,
            " (T must be in 1..", config_.max_seq, ")");
  ensure_acts(B, T);
  const int64_t N = int64_t(B) * T;
  tokens_.assign(tokens, tokens + N);
  have_targets_ = targets != nullptr;
  if (have_targets_) targets_.assign(targets, targets + N);
  else targets_.assign(size_t(N), 0);  // probabilities only: the losses are not used
  Acts& a = *acts_;
  const int C = config_.channels, NH = config_.heads;
  nn::encoder_forward(a.encoded, ids(tokens_.data(), N), wte_, wpe_, B, T);
  const Tensor* x = &a.encoded;
  for (int l = 0; l < config_.layers; ++l) {
    Block& b = blocks_[size_t(l)];
    Acts::Layer& s = a.layers[size_t(l)];
    nn::layernorm_forward(s.ln1, s.ln1_mean, s.ln1_rstd, *x, b.ln1w, b.ln1b);
    b.qkv.forward(s.ln1, s.qkv);
    nn::attention_forward(s.atty, s.preatt, s.att, s.qkv, B, T, C, NH);
    b.attproj.forward(s.atty, s.attproj);
    nn::residual_forward(s.residual2, *x, s.attproj);
    nn::layernorm_forward(s.ln2, s.ln2_mean, s.ln2_rstd, s.residual2, b.ln2w, b.ln2b);
    b.fc.forward(s.ln2, s.fch);
    nn::gelu_forward(s.fch_gelu, s.fch);
    b.fcproj.forward(s.fch_gelu, s.fcproj);
    nn::residual_forward(s.residual3, s.residual2, s.fcproj);
    x = &s.residual3;
  }
  nn::layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, *x, lnfw_, lnfb_);
  nn::matmul_forward(a.logits, a.lnf, wte_, nullptr);
  nn::crossentropy_forward(a.losses, a.probs, a.logits, ids(targets_.data(), N));
  if (!have_targets_) return NAN;
  double sum = 0;
  for (int64_t i = 0; i < N; ++i) sum += a.losses.data<float>()[i];
  return float(sum / double(N));
}

void Gpt2::backward(float loss_scale, uint64_t mvue_seed) {
  S24_CHECK(acts_ && have_targets_, kValue, "GPT-2 backward: needs a forward with targets first");
  Acts& a = *acts_;
  const int B = B_, T = T_, C = config_.channels, NH = config_.heads;
  const int64_t N = int64_t(B) * T;
  for (int64_t i = 0; i < N; ++i) a.dlosses.data<float>()[i] = loss_scale / float(N);
  fill_zeros(a.dlogits);
  nn::crossentropy_backward(a.dlogits, a.dlosses, a.probs, ids(targets_.data(), N));
  fill_zeros(a.dlnf);
  const TensorView dlnf = a.dlnf.view();
  nn::matmul_backward(&dlnf, dwte_, nullptr, a.dlogits, a.lnf, wte_);
  fill_zeros(a.dres);
  const Tensor& last = config_.layers ? a.layers.back().residual3 : a.encoded;
  nn::layernorm_backward(a.dres, dlnfw_, dlnfb_, a.dlnf, last, lnfw_, a.lnf_mean, a.lnf_rstd);
  const TensorView dln = a.dln.view(), datty = a.datty.view(), dfch_gelu = a.dfch_gelu.view();
  for (int l = config_.layers - 1; l >= 0; --l) {
    Block& b = blocks_[size_t(l)];
    Acts::Layer& s = a.layers[size_t(l)];
    const Tensor& input = l == 0 ? a.encoded : a.layers[size_t(l - 1)].residual3;
    const uint64_t seed = mix_seed(mvue_seed ^ (uint64_t(l) << 40));
    // residual3 = residual2 + fcproj(gelu(fc(ln2(residual2)))): a.dres is d residual3.
    b.fcproj.backward(s.fch_gelu, a.dres, &dfch_gelu, mix_seed(seed + 4));
    nn::gelu_backward(a.dfch, s.fch, a.dfch_gelu);  // overwrites a.dfch
    b.fc.backward(s.ln2, a.dfch, &dln, mix_seed(seed + 3));
    nn::layernorm_backward(a.dres, b.dln2w, b.dln2b, a.dln, s.residual2, b.ln2w, s.ln2_mean, s.ln2_rstd);
    // residual2 = input + attproj(attention(qkv(ln1(input)))): a.dres is now d residual2.
    b.attproj.backward(s.atty, a.dres, &datty, mix_seed(seed + 2));
    fill_zeros(a.dqkv);
    nn::attention_backward(a.dqkv, a.dpreatt, a.datt, a.datty, s.qkv, s.att, B, T, C, NH);
    b.qkv.backward(s.ln1, a.dqkv, &dln, mix_seed(seed + 1));
    nn::layernorm_backward(a.dres, b.dln1w, b.dln1b, a.dln, input, b.ln1w, s.ln1_mean, s.ln1_rstd);
  }
  nn::encoder_backward(dwte_, dwpe_, a.dres, ids(tokens_.data(), N), B, T);
}

void Gpt2::zero_grad() {
  for (const Tensor* t : {&dwte_, &dwpe_, &dlnfw_, &dlnfb_}) fill_zeros(*t);
  for (Block& b : blocks_) {
    for (const Tensor* t : {&b.dln1w, &b.dln1b, &b.dln2w, &b.dln2b}) fill_zeros(*t);
    for (SparseLinear* l : b.linears()) l->zero_grad();
  }
}

const float* Gpt2::probs(int b, int t) const {
  S24_CHECK(acts_ && b >= 0 && b < B_ && t >= 0 && t < T_, kValue, "GPT-2 probs: position (", b, ", ", t,
            ") outside the last forward's ", B_, " x ", T_);
  return acts_->probs.data<float>() + (int64_t(b) * T_ + t) * config_.vocab;
}

void Gpt2::add_parameters(AdamW& opt) {
  // Weight decay on the matrices (embeddings and linears), none on LayerNorms and biases.
  opt.add(wte_, dwte_, true);
  opt.add(wpe_, dwpe_, true);
  for (Block& b : blocks_) {
    opt.add(b.ln1w, b.dln1w, false);
    opt.add(b.ln1b, b.dln1b, false);
    opt.add(b.ln2w, b.dln2w, false);
    opt.add(b.ln2b, b.dln2b, false);
    for (SparseLinear* l : b.linears()) l->add_parameters(opt);
  }
  opt.add(lnfw_, dlnfw_, false);
  opt.add(lnfb_, dlnfb_, false);
}

std::vector<TensorView> Gpt2::parameters() const {
  std::vector<TensorView> p = {wte_, wpe_, lnfw_, lnfb_};
  for (const Block& b : blocks_) {
    for (const Tensor* t : {&b.ln1w, &b.ln1b, &b.ln2w, &b.ln2b}) p.push_back(*t);
    for (const SparseLinear* l : b.linears()) {
      p.push_back(l->weight());
      if (l->has_bias()) p.push_back(l->bias());
    }
  }
  return p;
}

std::vector<TensorView> Gpt2::grads() const {
  std::vector<TensorView> g = {dwte_, dwpe_, dlnfw_, dlnfb_};
  for (const Block& b : blocks_) {
    for (const Tensor* t : {&b.dln1w, &b.dln1b, &b.dln2w, &b.dln2b}) g.push_back(*t);
    for (const SparseLinear* l : b.linears()) {
      g.push_back(l->weight_grad());
      if (l->has_bias()) g.push_back(l->bias_grad());
    }
  }
  return g;
}

double Gpt2::mean_flip_rate() const {
  double sum = 0;
  int n = 0;
  for (const Block& b : blocks_)
    for (const SparseLinear* l : b.linears()) {
      const LayerStats s = l->stats();
      if (s.mode == SparseMode::kDense || s.dense || !std::isfinite(s.flip_rate)) continue;
      sum += s.flip_rate;
      ++n;
    }
  return n ? sum / n : NAN;
}

size_t Gpt2::sparse_extra_bytes() const {
  size_t n = 0;
  for (const Block& b : blocks_)
    for (const SparseLinear* l : b.linears()) n += l->extra_bytes();
  return n;
}

std::vector<std::pair<std::string, std::string>> Gpt2::save() const {
  std::vector<std::pair<std::string, std::string>> out = {
      {"model.wte", tensor_to_blob(wte_)}, {"model.wpe", tensor_to_blob(wpe_)},
      {"model.lnf.w", tensor_to_blob(lnfw_)}, {"model.lnf.b", tensor_to_blob(lnfb_)}};
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const Block& b = blocks_[l];
    const std::string p = "model.h" + std::to_string(l) + ".";
    out.push_back({p + "ln1.w", tensor_to_blob(b.ln1w)});
    out.push_back({p + "ln1.b", tensor_to_blob(b.ln1b)});
    out.push_back({p + "ln2.w", tensor_to_blob(b.ln2w)});
    out.push_back({p + "ln2.b", tensor_to_blob(b.ln2b)});
    const std::pair<const char*, const SparseLinear*> linears[] = {
        {"qkv", &b.qkv}, {"attproj", &b.attproj}, {"fc", &b.fc}, {"fcproj", &b.fcproj}};
    for (const auto& [name, layer] : linears) {
      std::ostringstream os;
      layer->save(os);
      out.push_back({p + name, os.str()});
    }
  }
  return out;
}

void Gpt2::load(const std::vector<std::pair<std::string, std::string>>& blobs) {
  auto find = [&](const std::string& name) -> const std::string& {
    for (const auto& [k, v] : blobs)
      if (k == name) return v;
    S24_FAIL(kIO, "checkpoint has no '", name, "': not a checkpoint of this model");
  };
  tensor_from_blob_into(find("model.wte"), wte_, "model.wte");
  tensor_from_blob_into(find("model.wpe"), wpe_, "model.wpe");
  tensor_from_blob_into(find("model.lnf.w"), lnfw_, "model.lnf.w");
  tensor_from_blob_into(find("model.lnf.b"), lnfb_, "model.lnf.b");
  for (size_t l = 0; l < blocks_.size(); ++l) {
    Block& b = blocks_[l];
    const std::string p = "model.h" + std::to_string(l) + ".";
    tensor_from_blob_into(find(p + "ln1.w"), b.ln1w, p + "ln1.w");
    tensor_from_blob_into(find(p + "ln1.b"), b.ln1b, p + "ln1.b");
    tensor_from_blob_into(find(p + "ln2.w"), b.ln2w, p + "ln2.w");
    tensor_from_blob_into(find(p + "ln2.b"), b.ln2b, p + "ln2.b");
    const std::pair<const char*, SparseLinear*> linears[] = {
        {"qkv", &b.qkv}, {"attproj", &b.attproj}, {"fc", &b.fc}, {"fcproj", &b.fcproj}};
    for (const auto& [name, layer] : linears) {
      std::istringstream is(find(p + name));
      layer->load_state(is);
      S24_CHECK(is.peek() == std::char_traits<char>::eof(), kIO, "checkpoint: ", p + name,
                " has bytes after the layer's state");
      check_finite(layer->weight(), p + name + " (weight)");
      check_finite(layer->bias(), p + name + " (bias)");
    }
    const std::pair<const Tensor*, const char*> norms[] = {
        {&b.ln1w, "ln1.w"}, {&b.ln1b, "ln1.b"}, {&b.ln2w, "ln2.w"}, {&b.ln2b, "ln2.b"}};
    for (const auto& [t, name] : norms) check_finite(t->view(), p + name);
  }
  const std::pair<const Tensor*, const char*> rest[] = {
      {&wte_, "model.wte"}, {&wpe_, "model.wpe"}, {&lnfw_, "model.lnf.w"}, {&lnfb_, "model.lnf.b"}};
  for (const auto& [t, name] : rest) check_finite(t->view(), name);
}

}  // namespace sparse24::trainer
