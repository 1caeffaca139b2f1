// AdamW with the fused masked decay, clipping by global norm, and the loss scaler (optim.h).
#include <algorithm>
#include <cmath>
#include <istream>
#include <limits>
#include <ostream>
#include <type_traits>

#include "core/adamw_rule.h"
#include "cuda/optim_cuda.h"
#include "cuda/runtime.h"
#include "layers/binary_io.h"
#include "sparse24/error.h"
#include "sparse24/optim.h"

namespace sparse24 {

namespace {

// fn(T* element) for every element of a CPU view of rank 1 to 4 (any strides), T the storage
// type of an fp32/fp16/bf16 view.
template <typename Fn>
void for_each_element(const TensorView& v, Fn&& fn) {
  int64_t shape[4] = {1, 1, 1, 1}, stride[4] = {0, 0, 0, 0};
  const int off = 4 - v.rank;
  for (int d = 0; d < v.rank; ++d) {
    shape[off + d] = v.shape[d];
    stride[off + d] = v.strides[d];
  }
  dispatch_input_dtype(v.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* base = static_cast<T*>(v.data);
    for (int64_t a = 0; a < shape[0]; ++a)
      for (int64_t b = 0; b < shape[1]; ++b)
        for (int64_t c = 0; c < shape[2]; ++c)
          for (int64_t d = 0; d < shape[3]; ++d)
            fn(base + a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3]);
  });
}

// The gradients of clip_grad_norm and LossScaler: fp32/fp16/bf16, rank 1 to 4, any strides on
// the CPU, contiguous on CUDA.
void check_grad_list(const char* op, const std::vector<TensorView>& grads) {
  for (size_t i = 0; i < grads.size(); ++i) {
    const TensorView& g = grads[i];
    S24_CHECK(g.rank >= 1 && g.rank <= kMaxRank, kShape, op, ": gradient ", i, " ", g.describe(),
              " must have rank 1 to ", kMaxRank);
    S24_CHECK(g.device == Device::kCPU || g.is_contiguous(), kShape, op, ": gradient ", i, " ",
              g.describe(), " on CUDA must be contiguous");
    S24_CHECK(is_input_dtype(g.dtype), kDType, op, ": gradient ", i, " ", g.describe(),
              " must be fp32, fp16 or bf16");
    S24_CHECK(g.data != nullptr || g.numel() == 0, kValue, op, ": gradient ", i, " has a null data pointer");
    for (int d = 0; d < g.rank; ++d)  // every element its own memory: each is summed and scaled once
      S24_CHECK(g.strides[d] != 0 || g.shape[d] <= 1, kShape, op, ": gradient ", i, " ", g.describe(),
                " repeats elements (stride 0 along dimension ", d, ")");
  }
}

void validate(const AdamWConfig& c) {
  S24_CHECK(std::isfinite(c.lr) && c.lr >= 0.f, kValue, "AdamW: lr must be finite and >= 0, got ", c.lr);
  S24_CHECK(c.beta1 >= 0.f && c.beta1 < 1.f, kValue, "AdamW: beta1 must be in [0, 1), got ", c.beta1);
  S24_CHECK(c.beta2 >= 0.f && c.beta2 < 1.f, kValue, "AdamW: beta2 must be in [0, 1), got ", c.beta2);
  S24_CHECK(std::isfinite(c.eps) && c.eps > 0.f, kValue, "AdamW: eps must be finite and > 0, got ", c.eps);
  S24_CHECK(std::isfinite(c.weight_decay) && c.weight_decay >= 0.f, kValue,
            "AdamW: weight_decay must be finite and >= 0, got ", c.weight_decay);
}

void validate(const LossScalerConfig& c) {
  S24_CHECK(std::isfinite(c.init_scale) && c.init_scale > 0.f, kValue,
            "LossScaler: init_scale must be finite and > 0, got ", c.init_scale);
  S24_CHECK(std::isfinite(c.growth_factor) && c.growth_factor > 1.f, kValue,
            "LossScaler: growth_factor must be finite and > 1, got ", c.growth_factor);
  S24_CHECK(c.backoff_factor > 0.f && c.backoff_factor < 1.f, kValue,
            "LossScaler: backoff_factor must be in (0, 1), got ", c.backoff_factor);
  S24_CHECK(c.growth_interval >= 1, kValue, "LossScaler: growth_interval must be >= 1, got ",
            c.growth_interval);
}

void check_mask_shape(const char* op, size_t index, const TensorView& param, const Mask24& m) {
  S24_CHECK(m.rows() == param.rows() && m.cols() == param.cols(), kShape, op,
            ": the masked-decay mask of parameter ", index, " is ", m.rows(), " x ", m.cols(),
            ", the parameter is ", param.describe());
  S24_CHECK(m.device() == param.device, kDevice, op, ": the masked-decay mask of parameter ",
            index, " is on ", device_name(m.device()), ", the parameter on ",
            device_name(param.device));
}

// A zero-filled fp32 vector of n elements on `device` (the moments).
Tensor zeros(int64_t n, Device device) {
  Tensor t = Tensor::empty({n}, DType::kF32, device);
  fill_zeros(t);
  return t;
}

// Parameters smaller than this are updated on one thread (a parallel region costs more).
constexpr int64_t kParallelElements = int64_t(1) << 15;

constexpr char kAdamMagic[9] = "s24adamw";
constexpr uint32_t kAdamVersion = 1;
constexpr char kScalerMagic[9] = "s24scalr";
constexpr uint32_t kScalerVersion = 1;

}  // namespace

// ---- AdamW ---------------------------------------------------------------------------------

AdamW::AdamW(const AdamWConfig& config) : config_(config) { validate(config_); }

size_t AdamW::add(const TensorView& param, const TensorView& grad, bool decay,
                  const Mask24* masked_decay_mask, float masked_decay_alpha) {
  const char* op = "AdamW::add";
  const size_t index = params_.size();
  S24_CHECK(param.device == grad.device, kDevice, op, ": parameter ", index, " ",
            param.describe(), " and its gradient ", grad.describe(), " are on different devices");
  S24_CHECK(param.dtype == DType::kF32 && grad.dtype == DType::kF32, kDType, op, ": parameter ",
            index, " ", param.describe(), " and its gradient ", grad.describe(),
            " must be fp32 (master weights and their gradients are fp32)");
  S24_CHECK(param.rank >= 1 && param.is_contiguous() && grad.is_contiguous(), kShape, op,
            ": parameter ", index, " ", param.describe(), " and its gradient ", grad.describe(),
            " must be contiguous tensors of rank 1 to ", kMaxRank);
  bool same = param.rank == grad.rank;
  for (int d = 0; same && d < param.rank; ++d) same = param.shape[d] == grad.shape[d];
  S24_CHECK(same, kShape, op, ": parameter ", index, " ", param.describe(), " and its gradient ",
            grad.describe(), " differ in shape");
  S24_CHECK(param.data != nullptr || param.numel() == 0, kValue, op, ": parameter ", index,
            " has a null data pointer");
  for (size_t i = 0; i < params_.size(); ++i)
    S24_CHECK(params_[i].param.data != param.data || param.numel() == 0, kValue, op, ": parameter ",
              index, " ", param.describe(), " is already registered (as parameter ", i, ")");
  if (masked_decay_mask) {
    S24_CHECK(param.rank == 2, kShape, op, ": masked decay needs a matrix parameter, parameter ",
              index, " is ", param.describe());
    S24_CHECK(std::isfinite(masked_decay_alpha) && masked_decay_alpha >= 0.f, kValue, op,
              ": masked_decay_alpha must be finite and >= 0, got ", masked_decay_alpha);
    if (masked_decay_mask->defined()) check_mask_shape(op, index, param, *masked_decay_mask);
  }
  Param p;
  p.param = param;
  p.grad = grad;
  p.decay = decay;
  p.mask = masked_decay_mask;
  p.alpha = masked_decay_mask ? masked_decay_alpha : 0.f;
  p.m = zeros(param.numel(), param.device);
  p.v = zeros(param.numel(), param.device);
  params_.push_back(std::move(p));
  return index;
}

void AdamW::set_masked_decay_alpha(size_t index, float alpha) {
  S24_CHECK(index < params_.size(), kValue, "AdamW::set_masked_decay_alpha: no parameter ", index,
            " (", params_.size(), " registered)");
  S24_CHECK(params_[index].mask != nullptr, kValue, "AdamW::set_masked_decay_alpha: parameter ",
            index, " was registered without a masked-decay mask");
  S24_CHECK(std::isfinite(alpha) && alpha >= 0.f, kValue,
            "AdamW::set_masked_decay_alpha: alpha must be finite and >= 0, got ", alpha);
  params_[index].alpha = alpha;
}

void AdamW::step(float lr) {
  S24_CHECK(std::isfinite(lr) && lr >= 0.f, kValue, "AdamW::step: lr must be finite and >= 0, got ", lr);
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].mask && params_[i].mask->defined())
      check_mask_shape("AdamW::step", i, params_[i].param, *params_[i].mask);
  ++t_;
  const double bc1 = 1.0 - std::pow(double(config_.beta1), double(t_));
  const double bc2 = 1.0 - std::pow(double(config_.beta2), double(t_));
  rules::AdamWStep st;
  st.step_size = float(double(lr) / bc1);
  st.bc2_sqrt = float(std::sqrt(bc2));
  st.b1 = config_.beta1, st.b2 = config_.beta2, st.eps = config_.eps;
  st.c1 = 1.f - st.b1, st.c2 = 1.f - st.b2;

  for (Param& p : params_) {
    float* w = static_cast<float*>(p.param.data);
    const float* g = static_cast<const float*>(p.grad.data);
    float* m = p.m.data<float>();
    float* v = p.v.data<float>();
    st.keep = p.decay ? 1.f - lr * config_.weight_decay : 1.f;  // PyTorch: w *= 1 - lr wd
    st.alpha = p.alpha;
    const int64_t n = p.param.numel();
    const Mask24* mask = p.mask && p.mask->defined() ? p.mask : nullptr;
    if (p.param.device == Device::kCUDA) {
      cuda::adamw_update(w, g, m, v, n, mask ? mask->codes().data<uint8_t>() : nullptr,
                         mask ? mask->cols() : 1, mask ? mask->row_bytes() : 0, st);
      continue;
    }
    if (mask) {
      // Masked decay fused: g + alpha * w where the mask prunes, from the weight before the
      // decoupled decay, exactly as masked_decay() computes it.
      const uint8_t* codes = mask->codes().data<uint8_t>();
      const int64_t rows = mask->rows(), cols = mask->cols(), row_bytes = mask->row_bytes();
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static) if (n >= kParallelElements)
#endif
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t i = r * cols + c;
          const float gi = rules::masked_decay_grad(g[i], w[i], st.alpha,
                                                    rules::mask_keeps(codes, row_bytes, r, c));
          rules::adamw_element(w[i], m[i], v[i], gi, st);
        }
    } else {
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static) if (n >= kParallelElements)
#endif
      for (int64_t i = 0; i < n; ++i) rules::adamw_element(w[i], m[i], v[i], g[i], st);
    }
  }
}

void AdamW::zero_grad() {
  for (Param& p : params_) fill_zeros(p.grad);
}

std::vector<TensorView> AdamW::grads() const {
  std::vector<TensorView> out;
  out.reserve(params_.size());
  for (const Param& p : params_) out.push_back(p.grad);
  return out;
}

const Tensor& AdamW::exp_avg(size_t index) const {
  S24_CHECK(index < params_.size(), kValue, "AdamW::exp_avg: no parameter ", index, " (",
            params_.size(), " registered)");
  return params_[index].m;
}

const Tensor& AdamW::exp_avg_sq(size_t index) const {
  S24_CHECK(index < params_.size(), kValue, "AdamW::exp_avg_sq: no parameter ", index, " (",
            params_.size(), " registered)");
  return params_[index].v;
}

void AdamW::save(std::ostream& os) const {
  binio::Writer wr(os, "AdamW::save");
  wr.header(kAdamMagic, kAdamVersion);
  wr.put(config_.lr);
  wr.put(config_.beta1);
  wr.put(config_.beta2);
  wr.put(config_.eps);
  wr.put(config_.weight_decay);
  wr.put<int64_t>(t_);
  wr.put<uint64_t>(params_.size());
  for (const Param& p : params_) {
    wr.put<int64_t>(p.param.numel());
    wr.put<float>(p.alpha);
    const Tensor m = p.m.to(Device::kCPU), v = p.v.to(Device::kCPU);  // copies of CUDA moments
    wr.bytes(m.data<float>(), size_t(p.param.numel()) * sizeof(float));
    wr.bytes(v.data<float>(), size_t(p.param.numel()) * sizeof(float));
  }
  wr.trailer(kAdamMagic);
}

void AdamW::load(std::istream& is) {
  binio::Reader rd(is, "AdamW::load");
  rd.header(kAdamMagic, kAdamVersion);
  AdamWConfig c;
  c.lr = rd.get<float>("config.lr");
  c.beta1 = rd.get<float>("config.beta1");
  c.beta2 = rd.get<float>("config.beta2");
  c.eps = rd.get<float>("config.eps");
  c.weight_decay = rd.get<float>("config.weight_decay");
  try {
    validate(c);
  } catch (const Error& e) {
    S24_FAIL(kIO, rd.what(), ": the stream holds an invalid config: ", e.what());
  }
  const auto t = rd.get<int64_t>("the step count");
  S24_CHECK(t >= 0, kIO, rd.what(), ": step count ", t, " (corrupt stream)");
  const auto count = rd.get<uint64_t>("the parameter count");
  S24_CHECK(count == params_.size(), kIO, rd.what(), ": the stream holds ", count,
            " parameters, this optimizer has ", params_.size(),
            " (register the same parameters in the same order before loading; mismatched stream)");
  std::vector<Tensor> ms, vs;
  std::vector<float> alphas;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto n = rd.get<int64_t>("a parameter's size");
    S24_CHECK(n == params_[i].param.numel(), kIO, rd.what(), ": parameter ", i, " has ", n,
              " elements in the stream, ", params_[i].param.numel(), " here (mismatched stream)");
    alphas.push_back(rd.get<float>("a masked-decay alpha"));
    S24_CHECK(std::isfinite(alphas.back()) && alphas.back() >= 0, kIO, rd.what(), ": parameter ", i,
              "'s masked-decay alpha is ", alphas.back(), " (must be finite and >= 0)");
    Tensor m = Tensor::empty({n}, DType::kF32), v = Tensor::empty({n}, DType::kF32);
    rd.bytes(m.data<float>(), size_t(n) * sizeof(float), "the first moments");
    rd.bytes(v.data<float>(), size_t(n) * sizeof(float), "the second moments");
    for (int64_t k = 0; k < n; ++k)  // a sum of squares: never negative (NaN after NaN gradients)
      S24_CHECK(!(v.data<float>()[k] < 0), kIO, rd.what(), ": parameter ", i, "'s second moment at element ", k,
                " is ", v.data<float>()[k], " (AdamW never writes a negative one)");
    ms.push_back(m.to(params_[i].param.device));
    vs.push_back(v.to(params_[i].param.device));
  }
  rd.trailer(kAdamMagic);
  config_ = c;
  t_ = t;
  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i].m = std::move(ms[i]);
    params_[i].v = std::move(vs[i]);
    if (params_[i].mask) params_[i].alpha = alphas[i];
  }
}

// ---- Clipping ------------------------------------------------------------------------------

double clip_grad_norm(const std::vector<TensorView>& grads, double max_norm) {
  const char* op = "clip_grad_norm";
  S24_CHECK(std::isfinite(max_norm) && max_norm > 0.0, kValue, op,
            ": max_norm must be finite and > 0, got ", max_norm);
  check_grad_list(op, grads);
  double sum = 0.0;
  for (const TensorView& g : grads) {
    if (g.device == Device::kCUDA) {
      sum += cuda::sum_squares(g.data, g.dtype, g.numel());
      continue;
    }
    for_each_element(g, [&](auto* e) {
      const double x = to_f32(*e);
      sum += x * x;
    });
  }
  const double norm = std::sqrt(sum);
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = float(coef);
    for (const TensorView& g : grads) {
      if (g.device == Device::kCUDA) {
        cuda::scale_in_place(g.data, g.dtype, g.numel(), c);
        continue;
      }
      for_each_element(g, [&](auto* e) {
        using T = std::remove_pointer_t<decltype(e)>;
        *e = from_f32<T>(to_f32(*e) * c, 1.f, Overflow::kPyTorch);
      });
    }
  }
  return norm;
}

// ---- Loss scaling --------------------------------------------------------------------------

LossScaler::LossScaler(const LossScalerConfig& config) : config_(config), scale_(config.init_scale) {
  validate(config_);
}

bool LossScaler::unscale_and_check(const std::vector<TensorView>& grads) {
  const char* op = "LossScaler::unscale_and_check";
  check_grad_list(op, grads);
  const float inv = float(1.0 / double(scale_));
  bool finite = true;
  for (const TensorView& g : grads) {
    if (g.device == Device::kCUDA) {
      finite = cuda::scale_in_place(g.data, g.dtype, g.numel(), inv) && finite;
      continue;
    }
    for_each_element(g, [&](auto* e) {
      using T = std::remove_pointer_t<decltype(e)>;
      const float x = to_f32(*e) * inv;
      if (!std::isfinite(x)) finite = false;
      *e = from_f32<T>(x, 1.f, Overflow::kPyTorch);
    });
  }
  checked_ = true;
  last_ok_ = finite;
  if (!finite) {
    // Never below the smallest normal float: a scale of 0 would divide the next gradients by 0.
    scale_ = std::max(scale_ * config_.backoff_factor, std::numeric_limits<float>::min());
    good_steps_ = 0;
    ++skipped_;
  }
  return finite;
}

void LossScaler::update() {
  S24_CHECK(checked_, kValue, "LossScaler::update: call unscale_and_check on this iteration's "
            "gradients first (once per iteration, then update)");
  checked_ = false;
  if (!last_ok_) return;
  if (++good_steps_ >= config_.growth_interval) {
    const float grown = scale_ * config_.growth_factor;
    if (std::isfinite(grown)) scale_ = grown;
    good_steps_ = 0;
  }
}

void LossScaler::save(std::ostream& os) const {
  binio::Writer wr(os, "LossScaler::save");
  wr.header(kScalerMagic, kScalerVersion);
  wr.put(config_.init_scale);
  wr.put(config_.growth_factor);
  wr.put(config_.backoff_factor);
  wr.put<int32_t>(config_.growth_interval);
  wr.put(scale_);
  wr.put<int32_t>(good_steps_);
  wr.put<int64_t>(skipped_);
  wr.put<uint8_t>(last_ok_);
  wr.put<uint8_t>(checked_);
  wr.trailer(kScalerMagic);
}

void LossScaler::load(std::istream& is) {
  binio::Reader rd(is, "LossScaler::load");
  rd.header(kScalerMagic, kScalerVersion);
  LossScalerConfig c;
  c.init_scale = rd.get<float>("config.init_scale");
  c.growth_factor = rd.get<float>("config.growth_factor");
  c.backoff_factor = rd.get<float>("config.backoff_factor");
  c.growth_interval = rd.get<int32_t>("config.growth_interval");
  try {
    validate(c);
  } catch (const Error& e) {
    S24_FAIL(kIO, rd.what(), ": the stream holds an invalid config: ", e.what());
  }
  const auto scale = rd.get<float>("the scale");
  const auto good = rd.get<int32_t>("the growth tracker");
  const auto skipped = rd.get<int64_t>("the skipped-step count");
  const auto last_ok = rd.get<uint8_t>("the last check");
  const auto checked = rd.get<uint8_t>("the check flag");
  rd.trailer(kScalerMagic);
  S24_CHECK(std::isfinite(scale) && scale > 0.f && good >= 0 && skipped >= 0 && last_ok <= 1 &&
                checked <= 1,
            kIO, rd.what(), ": corrupt state (scale ", scale, ", growth tracker ", good, ")");
  config_ = c;
  scale_ = scale;
  good_steps_ = good;
  skipped_ = skipped;
  last_ok_ = last_ok != 0;
  checked_ = checked != 0;
}

}  // namespace sparse24
