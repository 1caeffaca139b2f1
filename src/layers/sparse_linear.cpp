// The sparse linear layer (sparse24/layers.h), CPU path: FST, S-STE and dense, forward and
// backward, the dense switch, statistics and the binary state.
#include "sparse24/layers.h"

#include "cpu/nn_cpu.h"

#include <algorithm>
#include <cmath>
#include <istream>
#include <memory>
#include <ostream>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "layers/binary_io.h"
#include "sparse24/build_info.h"
#include "sparse24/error.h"
#include "sparse24/gemm.h"
#include "sparse24/nn.h"
#include "sparse24/transforms.h"

namespace sparse24 {

const char* sparse_mode_name(SparseMode mode) {
  switch (mode) {
    case SparseMode::kDense: return "dense";
    case SparseMode::kFst: return "fst";
    case SparseMode::kSste: return "sste";
  }
  return "?";
}

namespace {

// A B for matrices of any float dtype and layout: a fresh fp32 [a.rows x b.cols]. Runs the CPU
// backend's dense matmul (cpu/nn_cpu.h) on B^T, which sums every element's products in
// increasing k from +0, one rounding per addition, as the 2:4 kernel does: a dense product with
// a decompressed 2:4 operand (whose zeros add +-0) equals the 2:4 product bit for bit. For
// x W^T, B = W.t() and B^T is W itself: no copy.
Tensor dense_mm(const TensorView& a, const TensorView& b) {
  Tensor ha, hbt;
  const float* pa = f32_row_major(a, ha);
  const float* pbt = f32_row_major(b.t(), hbt);
  Tensor c = Tensor::matrix(a.rows(), b.cols(), DType::kF32);
  cpu::nn::matmul_forward(c.data<float>(), pa, pbt, nullptr, a.rows(), a.cols(), b.cols());
  return c;
}

// out[i][j] = bias[j] + out[i][j] (the order of addmm's 2:4 kernel).
void add_bias(Tensor& out, const Tensor& bias) {
  if (!bias.defined()) return;
  float* o = out.data<float>();
  const float* bp = bias.data<float>();
  const int64_t n = out.rows(), m = out.cols();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) o[i * m + j] = bp[j] + o[i * m + j];
}

// Writes an fp32 row-major matrix into a view of any float dtype and layout.
void store(const TensorView& dst, const Tensor& src) {
  const float* s = src.data<float>();
  const int64_t n = src.rows(), m = src.cols();
  dispatch_input_dtype(dst.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j) *dst.at<T>(i, j) = from_f32<T>(s[i * m + j], 1.f, Overflow::kPyTorch);
  });
}

// FP8 simulation: x quantized to `dt` (e4m3 or e5m2) with its per-tensor scale (tensor.h:
// fp8_scale, quantize_into), decoded into a fp32 row-major matrix and multiplied back by the
// scale: the values an FP8 GEMM reads. Inf becomes NaN in e4m3 (no Inf there) and stays Inf in
// e5m2, so an overflow still reaches the loss scaler.
Tensor fake_quant(const TensorView& x, DType dt) {
  const float scale = fp8_scale(finite_amax(x), dt);
  Tensor q = Tensor::matrix(x.rows(), x.cols(), dt);
  quantize_into(q, x, scale);
  Tensor out = to_f32_row_major(q);
  float* p = out.data<float>();
  for (int64_t i = 0, n = out.numel(); i < n; ++i) p[i] *= scale;
  return out;
}

// Compress in fp32 (the layer converts to its storage dtype itself: to_storage).
CompressOptions f32_storage() {
  CompressOptions o;
  o.dtype = DType::kF32;
  return o;
}

bool valid_weight_dtype(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kF8E4M3;
}

void validate(const LinearConfig& c) {
  S24_CHECK(c.in >= 1 && c.out >= 1, kShape, "SparseLinear: in and out must be >= 1, got in = ",
            c.in, ", out = ", c.out);
  S24_CHECK(c.mode == SparseMode::kDense || c.mode == SparseMode::kFst || c.mode == SparseMode::kSste,
            kValue, "SparseLinear: unknown mode ", int(c.mode));
  S24_CHECK(c.mode != SparseMode::kFst || (c.in % 4 == 0 && c.out % 4 == 0), kShape,
            "SparseLinear (fst): in and out must be divisible by 4 (the transposable mask is made "
            "of 4x4 blocks), got in = ", c.in, ", out = ", c.out);
  S24_CHECK(c.mode != SparseMode::kSste || c.in % 4 == 0, kShape,
            "SparseLinear (sste): in must be divisible by 4 (2:4 groups run along in), got in = ", c.in);
  S24_CHECK(c.mask_freq >= 1, kValue, "SparseLinear: mask_freq must be >= 1, got ", c.mask_freq);
  S24_CHECK(std::isfinite(c.decay_alpha) && c.decay_alpha >= 0.f, kValue,
            "SparseLinear: decay_alpha must be finite and >= 0, got ", c.decay_alpha);
  S24_CHECK(valid_weight_dtype(c.weight_dtype), kDType, "SparseLinear: weight_dtype ",
            dtype_name(c.weight_dtype), " is not supported (fp32, fp16, bf16 or e4m3)");
  S24_CHECK(c.dense_switch == DenseSwitch::kKeepWeights || c.dense_switch == DenseSwitch::kApplyMask,
            kValue, "SparseLinear: unknown dense_switch ", int(c.dense_switch));
  S24_CHECK(c.device == Device::kCPU || c.device == Device::kCUDA, kValue, "SparseLinear: unknown device ",
            int(c.device));
  S24_CHECK(c.device == Device::kCPU || c.weight_dtype != DType::kF32, kDType, "SparseLinear: on CUDA "
            "weight_dtype is the dtype of the GEMMs and must be fp16, bf16 or e4m3 (FP8 GEMMs on bf16 "
            "activations), got ", dtype_name(c.weight_dtype));
  S24_CHECK(c.device == Device::kCPU || c.mode == SparseMode::kDense || (c.in % 16 == 0 && c.out % 16 == 0),
            kShape, "SparseLinear (", sparse_mode_name(c.mode), ", cuda): in and out must be multiples of "
            "16 (the K of the 2:4 GEMMs and their 16-byte rows), got in = ", c.in, ", out = ", c.out);
  S24_CHECK(c.device == Device::kCPU || c.mode == SparseMode::kDense || c.weight_dtype != DType::kF8E4M3 ||
                (c.in % 32 == 0 && c.out % 32 == 0),
            kShape, "SparseLinear (", sparse_mode_name(c.mode), ", cuda, e4m3): in and out must be multiples of "
            "32 (the K of the FP8 2:4 GEMMs), got in = ", c.in, ", out = ", c.out);
}

// A CPU copy (the tensor itself when it is on the CPU).
Tensor on_host(const Tensor& t) { return !t.defined() || t.device() == Device::kCPU ? t : t.to(Device::kCPU); }
Mask24 on_host(const Mask24& m) { return !m.defined() || m.device() == Device::kCPU ? m : m.to(Device::kCPU); }

const Mask24& no_mask() {
  static const Mask24 empty;
  return empty;
}

constexpr char kLayerMagic[9] = "s24linr\n";
constexpr uint32_t kLayerVersion = 1;

void write_mask(binio::Writer& w, const Mask24& m) {
  w.put<uint8_t>(m.defined() ? 1 : 0);
  if (!m.defined()) return;
  w.put<int64_t>(m.rows());
  w.put<int64_t>(m.cols());
  w.bytes(m.codes().data<uint8_t>(), size_t(m.rows() * m.row_bytes()));
}

Mask24 read_mask(binio::Reader& r, const char* name, int64_t rows, int64_t cols, bool transposable) {
  const auto has = r.get<uint8_t>(name);
  S24_CHECK(has <= 1, kIO, r.what(), ": corrupt flag for ", name);
  if (!has) return {};
  const auto mr = r.get<int64_t>(name), mc = r.get<int64_t>(name);
  S24_CHECK(mr == rows && mc == cols, kIO, r.what(), ": ", name, " is ", mr, " x ", mc,
            ", the layer's weight is ", rows, " x ", cols);
  Mask24 m = Mask24::empty(rows, cols);
  r.bytes(m.codes().data<uint8_t>(), size_t(rows * m.row_bytes()), name);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t g = 0; g < m.groups_per_row(); ++g)
      S24_CHECK(is_valid_group_code(m.code(i, g)), kIO, r.what(), ": ", name, " is corrupt: row ",
                i, ", group ", g, " has code ", int(m.code(i, g)));
  if (transposable) {
    try {
      (void)m.transposed();
    } catch (const Error& e) {
      S24_FAIL(kIO, r.what(), ": ", name, " is not transposable: ", e.what());
    }
  }
  return m;
}

}  // namespace

// ---- Construction --------------------------------------------------------------------------

SparseLinear::SparseLinear(const LinearConfig& config)
    : config_(config), mask_(std::make_unique<Mask24>()), flip_rate_(std::nan("")) {
  validate(config_);
  if (on_cuda()) gpu_ = current_gpu();
  const Device dev = config_.device;
  w_ = Tensor::matrix(config_.out, config_.in, DType::kF32, Layout::kRowMajor, dev);
  dw_ = Tensor::matrix(config_.out, config_.in, DType::kF32, Layout::kRowMajor, dev);
  if (config_.bias) {
    b_ = Tensor::empty({config_.out}, DType::kF32, dev);
    db_ = Tensor::empty({config_.out}, DType::kF32, dev);
  }
  init(config_.seed);
}

void SparseLinear::init(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, 0.02f);
  const Tensor w = Tensor::matrix(config_.out, config_.in, DType::kF32);
  float* wp = w.data<float>();
  for (int64_t i = 0, n = w.numel(); i < n; ++i) wp[i] = dist(rng);
  set_weights(w, nullptr);
}

void SparseLinear::set_weights(const TensorView& w, const TensorView* b) {
  const char* op = "SparseLinear::set_weights";
  check_gpu(op);
  S24_CHECK(w.is_matrix() && w.rows() == config_.out && w.cols() == config_.in, kShape, op, ": weight ",
            w.describe(), " must be ", config_.out, " x ", config_.in);
  S24_CHECK(w.device == Device::kCPU || w.device == config_.device, kDevice, op, ": weight ", w.describe(),
            " must be on the CPU or the layer's device (", device_name(config_.device), ")");
  S24_CHECK(is_input_dtype(w.dtype), kDType, op, ": weight ", w.describe(), " must be fp32, fp16 or bf16");
  S24_CHECK(config_.bias || b == nullptr, kShape, op, ": the layer has no bias");
  if (b) {
    S24_CHECK(b->numel() == config_.out && (b->rank == 1 || (b->rank == 2 && b->shape[0] == 1)), kShape,
              op, ": bias ", b->describe(), " must have ", config_.out, " elements");
    S24_CHECK(is_input_dtype(b->dtype), kDType, op, ": bias ", b->describe(), " must be fp32, fp16 or bf16");
    S24_CHECK(b->device == Device::kCPU || b->device == config_.device, kDevice, op, ": bias ",
              b->describe(), " must be on the CPU or the layer's device (", device_name(config_.device), ")");
  }
  // Through fp32 row-major host copies: any dtype, layout and device in, the masters out.
  const Tensor wh = to_f32_row_major(w.device == Device::kCPU ? w : Tensor::copy_of(w, Device::kCPU).view());
  // S-STE's scale first: it throws on weights it cannot scale (all zero, NaN), and the layer must
  // then be left as it was.
  const double beta = config_.mode == SparseMode::kSste ? sste_scale(wh) : 1.0;
  const Tensor bh = Tensor::empty({config_.out}, DType::kF32);
  if (config_.bias) {
    float* bp = bh.data<float>();
    if (!b) {
      std::fill(bp, bp + config_.out, 0.f);
    } else {
      const Tensor bc = b->device == Device::kCPU ? Tensor() : Tensor::copy_of(*b, Device::kCPU);
      const TensorView bv = bc.defined() ? bc.view() : *b;
      const int64_t stride = bv.strides[bv.rank - 1];
      dispatch_input_dtype(bv.dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        for (int64_t i = 0; i < config_.out; ++i) bp[i] = to_f32(static_cast<const T*>(bv.data)[i * stride]);
      });
    }
    copy_into(b_, bh);
  }
  copy_into(w_, wh);
  zero_grad();
  dense_ = config_.mode == SparseMode::kDense;
  step_ = -1;
  *mask_ = Mask24{};
  ws_ = wts_ = sw_ = Sparse24Matrix{};
  wc_ = bc_ = wsd_ = wsdt_ = Tensor();
  compressed_ = sw_valid_ = prepared_ = false;
  mask_updates_ = 0;
  last_mask_step_ = -1;
  flip_rate_ = std::nan("");
  sste_prev_mask_ = Mask24{};
  sste_mask_step_ = -2;
  beta_ = beta;
}

void SparseLinear::zero_grad() {
  check_gpu("SparseLinear::zero_grad");
  fill_zeros(dw_);
  if (db_.defined()) fill_zeros(db_);
}

void SparseLinear::add_parameters(AdamW& opt) {
  opt.add(w_, dw_, /*decay=*/true, decay_mask(), config_.decay_alpha);
  if (config_.bias) opt.add(b_, db_, /*decay=*/false);
}

const Mask24& SparseLinear::mask() const {
  if (dense_) return no_mask();
  if (config_.mode == SparseMode::kFst) return *mask_;
  if (config_.mode == SparseMode::kSste && sw_valid_) return sw_.mask;
  return no_mask();
}

// ---- The step ------------------------------------------------------------------------------

void SparseLinear::begin_step(int64_t step) {
  S24_CHECK(step >= 0, kValue, "SparseLinear::begin_step: step must be >= 0, got ", step);
  check_gpu("SparseLinear::begin_step");
  step_ = step;
  compressed_ = prepared_ = false;  // until this step's weights are ready (a throw leaves none)
  if (!dense_ && config_.dense_from_step >= 0 && step >= config_.dense_from_step)
    switch_to_dense(config_.dense_switch);
  if (!dense_ && config_.mode == SparseMode::kFst) {
    const CompressOptions opts = weight_storage();
    if (!mask_->defined() || step % config_.mask_freq == 0) {
      Transposable24 t = prune_transposable(w_, opts);
      if (mask_->defined()) flip_rate_ = flip_rate(*mask_, t.mask);
      *mask_ = t.mask;  // in place: the optimizer reads this object
      ++mask_updates_;
      last_mask_step_ = step;
      compress_fst(std::move(t));
    } else {
      compress_fst(compress_transposable(w_, *mask_, opts));
    }
  }
  if (on_cuda()) prepare_cuda_weights();
}

void SparseLinear::recompress() {
  check_gpu("SparseLinear::recompress");
  if (!dense_ && config_.mode == SparseMode::kFst && mask_->defined())
    compress_fst(compress_transposable(w_, *mask_, weight_storage()));
  if (on_cuda()) prepare_cuda_weights();
}

void SparseLinear::update_sste_weight(bool forward) {
  // beta * S(W) from the current masters. CUDA propagates non-finite weights (NaN outputs)
  // rather than wait for the GPU at every forward to throw.
  CompressOptions o = weight_storage();
  if (on_cuda()) o.non_finite = NonFinite::kPropagate;
  sw_ = prune_soft_threshold(w_, float(beta_), o);
  if (o.dtype != config_.weight_dtype) sw_ = to_storage(sw_, config_.weight_dtype, storage_layout());
  sw_valid_ = true;
  wsd_ = wsdt_ = Tensor();
  if (forward && step_ != sste_mask_step_) {  // a step's first forward: compare with the previous step's
    if (sste_prev_mask_.defined()) {
      flip_rate_ = flip_rate(sste_prev_mask_, sw_.mask);
      ++mask_updates_;
    }
    sste_prev_mask_ = sw_.mask;
    sste_mask_step_ = step_;
  }
}

CompressOptions SparseLinear::weight_storage() const {
  if (!on_cuda() || is_fp8(config_.weight_dtype)) return f32_storage();
  CompressOptions o;
  o.dtype = config_.weight_dtype;
  o.layout = storage_layout();
  return o;
}

MetaLayout SparseLinear::storage_layout() const {
  // On CUDA in and out are multiples of 16 (32 for e4m3): validate.
  return on_cuda() ? native_layout(config_.weight_dtype) : MetaLayout::kCanonical;
}

DType SparseLinear::compute_dtype() const {
  if (!on_cuda()) return DType::kF32;
  return config_.weight_dtype == DType::kF8E4M3 ? DType::kBF16 : config_.weight_dtype;
}

void SparseLinear::compress_fst(Transposable24 t) {
  const bool stored = weight_storage().dtype == config_.weight_dtype;  // compressed straight to it
  ws_ = stored ? std::move(t.w) : to_storage(t.w, config_.weight_dtype, storage_layout());
  wts_ = stored ? std::move(t.wt) : to_storage(t.wt, config_.weight_dtype, storage_layout());
  ws_.mask = *mask_;  // the same codes: one copy in memory
  compressed_ = true;
  wsd_ = wsdt_ = Tensor();
}

void SparseLinear::switch_to_dense(DenseSwitch how) {
  check_gpu("SparseLinear::switch_to_dense");
  if (dense_) return;
  if (how == DenseSwitch::kApplyMask) {
    Tensor sparse_w;  // the forward weight, dense, fp32
    if (config_.mode == SparseMode::kFst) {
      const Mask24 m = mask_->defined() ? *mask_ : prune_transposable(w_, f32_storage()).mask;
      sparse_w = decompress(prune_with_mask(w_, m, f32_storage()), DType::kF32);
    } else if (config_.mode == SparseMode::kSste) {
      sparse_w = decompress(prune_soft_threshold(w_, float(beta_), f32_storage()), DType::kF32);
    }
    if (sparse_w.defined()) copy_into(w_, sparse_w);
  }
  dense_ = true;
  *mask_ = Mask24{};  // ends the fused masked decay
  ws_ = wts_ = sw_ = Sparse24Matrix{};
  wsd_ = wsdt_ = Tensor();
  compressed_ = sw_valid_ = false;
  sste_prev_mask_ = Mask24{};
  if (on_cuda()) prepare_cuda_weights();  // the 16-bit W the dense GEMMs read from now on
}

// ---- Forward and backward ------------------------------------------------------------------

void SparseLinear::check_gpu(const char* op) const {
  S24_CHECK(!on_cuda() || current_gpu() == gpu_, kDevice, op, ": the layer's memory is on GPU ", gpu_,
            " but the current GPU is ", on_cuda() ? current_gpu() : -1, " (cudaSetDevice(", gpu_, ") first)");
}

void SparseLinear::check_compressed(const char* op) const {
  check_gpu(op);
  S24_CHECK(dense_ || config_.mode != SparseMode::kFst || compressed_, kValue, op, ": FST compresses W "
            "once per optimizer step: call begin_step(step) before the first forward of every step");
  S24_CHECK(!on_cuda() || prepared_, kValue, op, ": on CUDA the GEMMs read weights that begin_step "
            "prepares: call begin_step(step) before the first forward of every optimizer step");
}

void SparseLinear::check_io(const char* op, const TensorView& x, const TensorView& other,
                            int64_t other_cols, const char* other_name) const {
  S24_CHECK(x.is_matrix(), kShape, op, ": x must be a matrix [N, in], got ", x.describe());
  S24_CHECK(x.device == config_.device && other.device == config_.device, kDevice, op, ": the layer runs on ",
            device_name(config_.device), "; got x ", x.describe(), " and ", other_name, " ", other.describe());
  S24_CHECK(is_input_dtype(x.dtype), kDType, op, ": x ", x.describe(), " must be fp32, fp16 or bf16");
  S24_CHECK(!on_cuda() || (x.dtype == compute_dtype() && other.dtype == compute_dtype()), kDType,
            op, ": on CUDA the activations have the compute dtype ", dtype_name(compute_dtype()),
            "; got x ", x.describe(), " and ", other_name, " ", other.describe());
  S24_CHECK(x.cols() == config_.in, kShape, op, ": x ", x.describe(), " has ", x.cols(),
            " features, the layer's in is ", config_.in);
  S24_CHECK(other.is_matrix() && other.rows() == x.rows() && other.cols() == other_cols, kShape, op,
            ": ", other_name, " ", other.describe(), " must be ", x.rows(), " x ", other_cols,
            " (x is ", x.describe(), ")");
  S24_CHECK(is_input_dtype(other.dtype), kDType, op, ": ", other_name, " ", other.describe(),
            " must be fp32, fp16 or bf16");
  S24_CHECK(x.data != nullptr || x.numel() == 0, kValue, op, ": x has a null data pointer");
}

void SparseLinear::forward(const TensorView& x, const TensorView& y) {
  const char* op = "SparseLinear::forward";
  check_io(op, x, y, config_.out, "y");
  check_compressed(op);
  if (on_cuda()) return forward_cuda(x, y);
  const bool fp8 = !dense_ && config_.weight_dtype == DType::kF8E4M3;
  Tensor xq;
  const TensorView* xin = &x;
  if (fp8) {
    xq = fake_quant(x, DType::kF8E4M3);
    xin = &xq.view();
  }
  const Sparse24Matrix* s = nullptr;
  if (!dense_ && config_.mode == SparseMode::kFst) {
    s = &ws_;
  } else if (!dense_ && config_.mode == SparseMode::kSste) {
    update_sste_weight(/*forward=*/true);
    s = &sw_;
  }
  Tensor out;
  if (!s) {
    out = dense_mm(*xin, w_.view().t());
    add_bias(out, b_);
  } else if (config_.sparse.forward) {
    out = b_.defined() ? addmm(b_, *xin, t(*s), DType::kF32) : mm(*xin, t(*s), DType::kF32);
  } else {
    const Tensor wd = decompress(*s, DType::kF32);
    out = dense_mm(*xin, wd.view().t());
    add_bias(out, b_);
  }
  store(y, out);
}

Tensor SparseLinear::forward(const TensorView& x) {
  Tensor y = Tensor::matrix(x.is_matrix() ? x.rows() : 0, config_.out, compute_dtype(),
                            Layout::kRowMajor, config_.device);
  forward(x, y);
  return y;
}

void SparseLinear::backward(const TensorView& x, const TensorView& dy, const TensorView* dx,
                            uint64_t mvue_seed) {
  const char* op = "SparseLinear::backward";
  check_io(op, x, dy, config_.out, "dy");
  if (dx) {
    S24_CHECK(dx->is_matrix() && dx->rows() == x.rows() && dx->cols() == config_.in, kShape, op,
              ": dx ", dx->describe(), " must be ", x.rows(), " x ", config_.in);
    S24_CHECK(is_input_dtype(dx->dtype) && (!on_cuda() || dx->dtype == compute_dtype()), kDType, op,
              ": dx ", dx->describe(), on_cuda() ? " must have the compute dtype " : " must be fp32, fp16 or bf16",
              on_cuda() ? dtype_name(compute_dtype()) : "");
    S24_CHECK(dx->device == config_.device, kDevice, op, ": dx ", dx->describe(), " must be on the layer's device (",
              device_name(config_.device), ")");
  }
  const bool sparse_dw = !dense_ && config_.sparse.weight_grad;
  // CUDA: N is the K of the 2:4 weight-gradient GEMM (32 for FP8); FP8's dense weight gradient
  // reads N-byte rows of dY^T and X^T, which cuBLASLt wants 16-byte aligned.
  const int64_t n_unit = !on_cuda() ? 4 : fp8_gemms() ? (sparse_dw ? 32 : 16) : 16;
  S24_CHECK(!sparse_dw || x.rows() % n_unit == 0, kShape, op, ": the 2:4 weight gradient prunes dY^T "
            "along the tokens in groups of 4, so N must be divisible by ", n_unit,
            on_cuda() ? " on CUDA (the GEMM's K)" : "", "; got N = ", x.rows(), " (x ", x.describe(),
            "); pad the tokens or set GemmChoice::weight_grad = false");
  S24_CHECK(sparse_dw || !fp8_gemms() || x.rows() % n_unit == 0, kShape, op, ": the FP8 weight gradient "
            "reads dY^T and X^T in e5m2/e4m3 rows of N bytes, which must be a multiple of 16; got N = ",
            x.rows(), " (x ", x.describe(), "); pad the tokens");
  check_compressed(op);
  if (config_.bias) nn::bias_backward(db_, dy);  // db += column sums of dY (fp32, in token order)
  if (on_cuda()) return backward_cuda(x, dy, dx, mvue_seed);

  const Sparse24Matrix* s = nullptr;  // the forward's 2:4 weight (FST: W^T's twin W)
  if (!dense_ && config_.mode == SparseMode::kFst) {
    s = &ws_;
  } else if (!dense_ && config_.mode == SparseMode::kSste) {
    if (!sw_valid_) update_sste_weight(/*forward=*/false);  // the weight a forward would use
    s = &sw_;
  }
  const bool fp8 = s && config_.weight_dtype == DType::kF8E4M3;
  Tensor xq, dyq;
  const TensorView* xin = &x;
  const TensorView* dyin = &dy;
  if (fp8) {  // e4m3 activations (as the forward used), e5m2 gradients
    xq = fake_quant(x, DType::kF8E4M3);
    dyq = fake_quant(dy, DType::kF8E5M2);
    xin = &xq.view();
    dyin = &dyq.view();
  }

  // dX = dY W_eff.
  if (dx) {
    Tensor g;
    if (!s) {
      g = dense_mm(*dyin, w_);
    } else if (config_.mode == SparseMode::kFst && config_.sparse.input_grad) {
      g = mm(*dyin, t(wts_), DType::kF32);  // dY ((W^T)_s)^T, 2:4 along out
    } else {
      const Tensor wd = decompress(*s, DType::kF32);
      g = dense_mm(*dyin, wd);
    }
    store(*dx, g);
  }

  // dW += dY^T X (dense) or MVUE24(dY^T) X (2:4 along the tokens); straight-through to W.
  Tensor g;
  if (sparse_dw) {
    CompressOptions opts = f32_storage();
    opts.non_finite = NonFinite::kPropagate;  // an overflow must reach the loss scaler
    const Sparse24Matrix p = prune_mvue(dy.t(), mvue_seed, opts);
    g = mm(fp8 ? to_storage(p, DType::kF8E5M2) : p, *xin, DType::kF32);
  } else {
    g = dense_mm(dyin->t(), *xin);
  }
  float* dw = dw_.data<float>();
  const float* gp = g.data<float>();
  for (int64_t i = 0, n = dw_.numel(); i < n; ++i) dw[i] = dw[i] + gp[i];
}

// ---- Statistics ----------------------------------------------------------------------------

LayerStats SparseLinear::stats() const {
  LayerStats st;
  st.mode = config_.mode;
  st.dense = dense_;
  st.step = step_;
  st.mask_updates = mask_updates_;
  st.last_mask_update_step = last_mask_step_;
  st.steps_since_mask_update =
      config_.mode == SparseMode::kFst && last_mask_step_ >= 0 && step_ >= 0 ? step_ - last_mask_step_ : 0;
  st.flip_rate = flip_rate_;
  st.beta = beta_;
  st.kept_fraction = dense_ ? 1.0 : 0.5;
  const Tensor wh = on_host(w_);  // statistics are computed on the CPU
  const float* w = wh.data<float>();
  const int64_t total = wh.numel();
  int64_t nonzero = 0;
  double pruned = 0.0;
  if (dense_) {
    for (int64_t i = 0; i < total; ++i) nonzero += w[i] != 0.f;
  } else if (config_.mode == SparseMode::kFst) {
    if (mask_->defined()) {
      const Mask24 m = on_host(*mask_);
      for (int64_t r = 0; r < config_.out; ++r)
        for (int64_t c = 0; c < config_.in; ++c) {
          const float v = w[r * config_.in + c];
          if (m.kept(r, c)) nonzero += v != 0.f;
          else pruned += double(v) * v;
        }
    }
  } else {  // S-STE: the forward weight of the current masters
    const Sparse24Matrix s = prune_soft_threshold(wh, float(beta_), f32_storage());
    const float* v = s.values.data<float>();
    for (int64_t i = 0, n = s.values.numel(); i < n; ++i) nonzero += v[i] != 0.f;
    for (int64_t r = 0; r < config_.out; ++r)
      for (int64_t c = 0; c < config_.in; ++c)
        if (!s.mask.kept(r, c)) pruned += double(w[r * config_.in + c]) * w[r * config_.in + c];
  }
  st.nonzero_fraction = total ? double(nonzero) / double(total) : 0.0;
  st.pruned_norm = std::sqrt(pruned);
  return st;
}

size_t SparseLinear::extra_bytes() const {
  std::set<const void*> seen;
  size_t bytes = 0;
  auto count = [&](const Tensor& t) {
    if (!t.defined() || !seen.insert(t.view().data).second) return;
    bytes += size_t(t.numel()) * size_t(dtype_size(t.dtype()));
  };
  auto count_sparse = [&](const Sparse24Matrix& s) {
    count(s.values);
    count(s.mask.codes());
    count(s.hw_meta);
  };
  count(mask_->codes());
  count_sparse(ws_);
  count_sparse(wts_);
  count_sparse(sw_);
  count(sste_prev_mask_.codes());
  count(wc_);
  count(bc_);
  count(wsd_);
  count(wsdt_);
  return bytes;
}

// ---- Saving and loading --------------------------------------------------------------------

struct SparseLinear::Saved {
  LinearConfig config;
  bool dense = false;
  int64_t step = -1, mask_updates = 0, last_mask_step = -1, sste_mask_step = -2;
  double flip_rate = 0.0, beta = 1.0;
  Mask24 mask, sste_prev_mask;
  std::vector<float> w, b;
};

void SparseLinear::save(std::ostream& os) const {
  binio::Writer wr(os, "SparseLinear::save");
  wr.header(kLayerMagic, kLayerVersion);
  const LinearConfig& c = config_;
  wr.put<int64_t>(c.in);
  wr.put<int64_t>(c.out);
  wr.put<uint8_t>(c.bias);
  wr.put<uint8_t>(uint8_t(c.mode));
  wr.put<int32_t>(c.mask_freq);
  wr.put<float>(c.decay_alpha);
  wr.put<uint8_t>(c.sparse.forward);
  wr.put<uint8_t>(c.sparse.input_grad);
  wr.put<uint8_t>(c.sparse.weight_grad);
  wr.put<uint8_t>(uint8_t(c.weight_dtype));
  wr.put<uint64_t>(c.seed);
  wr.put<int64_t>(c.dense_from_step);
  wr.put<uint8_t>(uint8_t(c.dense_switch));
  wr.put<uint8_t>(dense_);
  wr.put<int64_t>(step_);
  wr.put<int64_t>(mask_updates_);
  wr.put<int64_t>(last_mask_step_);
  wr.put<int64_t>(sste_mask_step_);
  wr.put<double>(flip_rate_);
  wr.put<double>(beta_);
  write_mask(wr, on_host(*mask_));
  write_mask(wr, on_host(sste_prev_mask_));
  wr.bytes(on_host(w_).data<float>(), size_t(w_.numel()) * sizeof(float));
  if (c.bias) wr.bytes(on_host(b_).data<float>(), size_t(b_.numel()) * sizeof(float));
  wr.trailer(kLayerMagic);
}

SparseLinear::Saved SparseLinear::read_saved(std::istream& is) {
  binio::Reader rd(is, "SparseLinear::load");
  rd.header(kLayerMagic, kLayerVersion);
  Saved s;
  LinearConfig& c = s.config;
  c.in = rd.get<int64_t>("config.in");
  c.out = rd.get<int64_t>("config.out");
  c.bias = rd.get<uint8_t>("config.bias") != 0;
  c.mode = SparseMode(rd.get<uint8_t>("config.mode"));
  c.mask_freq = rd.get<int32_t>("config.mask_freq");
  c.decay_alpha = rd.get<float>("config.decay_alpha");
  c.sparse.forward = rd.get<uint8_t>("config.sparse") != 0;
  c.sparse.input_grad = rd.get<uint8_t>("config.sparse") != 0;
  c.sparse.weight_grad = rd.get<uint8_t>("config.sparse") != 0;
  c.weight_dtype = DType(rd.get<uint8_t>("config.weight_dtype"));
  c.seed = rd.get<uint64_t>("config.seed");
  c.dense_from_step = rd.get<int64_t>("config.dense_from_step");
  c.dense_switch = DenseSwitch(rd.get<uint8_t>("config.dense_switch"));
  try {
    validate(c);
  } catch (const Error& e) {
    S24_FAIL(kIO, rd.what(), ": the stream holds an invalid layer config: ", e.what());
  }
  S24_CHECK(c.in <= (int64_t(1) << 32) / c.out, kIO, rd.what(), ": implausible layer size ", c.out,
            " x ", c.in, " (corrupt stream)");
  s.dense = rd.get<uint8_t>("the dense flag") != 0;
  s.step = rd.get<int64_t>("the step");
  s.mask_updates = rd.get<int64_t>("the mask update count");
  s.last_mask_step = rd.get<int64_t>("the last mask update step");
  s.sste_mask_step = rd.get<int64_t>("the S-STE mask step");
  s.flip_rate = rd.get<double>("the flip rate");
  s.beta = rd.get<double>("beta");
  S24_CHECK(std::isfinite(s.beta), kIO, rd.what(), ": beta is ", s.beta, " (corrupt stream)");
  s.mask = read_mask(rd, "the transposable mask", c.out, c.in, /*transposable=*/true);
  s.sste_prev_mask = read_mask(rd, "the S-STE previous mask", c.out, c.in, false);
  s.w.resize(size_t(c.out * c.in));
  rd.bytes(s.w.data(), s.w.size() * sizeof(float), "the weights");
  if (c.bias) {
    s.b.resize(size_t(c.out));
    rd.bytes(s.b.data(), s.b.size() * sizeof(float), "the bias");
  }
  rd.trailer(kLayerMagic);
  return s;
}

void SparseLinear::apply_saved(Saved&& s) {
  config_ = s.config;
  copy_into(w_, TensorView::matrix(s.w.data(), DType::kF32, config_.out, config_.in));
  if (config_.bias) {
    TensorView b;  // the loaded bias, rank 1 as b_
    b.data = s.b.data();
    b.rank = 1;
    b.shape[0] = config_.out;
    b.strides[0] = 1;
    copy_into(b_, b);
  }
  zero_grad();
  dense_ = s.dense || config_.mode == SparseMode::kDense;
  step_ = s.step;
  mask_updates_ = s.mask_updates;
  last_mask_step_ = s.last_mask_step;
  sste_mask_step_ = s.sste_mask_step;
  flip_rate_ = s.flip_rate;
  beta_ = s.beta;
  const auto to_device = [&](Mask24& m) { return m.defined() ? m.to(config_.device) : Mask24{}; };
  *mask_ = config_.mode == SparseMode::kFst && !dense_ ? to_device(s.mask) : Mask24{};
  sste_prev_mask_ = config_.mode == SparseMode::kSste && !dense_ ? to_device(s.sste_prev_mask) : Mask24{};
  ws_ = wts_ = sw_ = Sparse24Matrix{};
  wc_ = bc_ = wsd_ = wsdt_ = Tensor();
  compressed_ = sw_valid_ = prepared_ = false;
  // Ready to run at once (evaluation, sampling): FST's W and W^T from the loaded masters and
  // mask (and CUDA's 16-bit copies), as begin_step would make them; training goes on with
  // begin_step as usual.
  recompress();
}

SparseLinear SparseLinear::load(std::istream& is, Device device, std::optional<DType> weight_dtype) {
  Saved s = read_saved(is);
  s.config.device = device;
  if (weight_dtype) s.config.weight_dtype = *weight_dtype;
  try {
    validate(s.config);
  } catch (const Error& e) {
    S24_FAIL(kIO, "SparseLinear::load: the stream's layer cannot run on ", device_name(device), ": ", e.what(),
             device == Device::kCUDA ? " (pass the compute dtype as load's weight_dtype)" : "");
  }
  SparseLinear layer(s.config);
  layer.apply_saved(std::move(s));
  return layer;
}

void SparseLinear::load_state(std::istream& is) {
  Saved s = read_saved(is);
  const LinearConfig& c = s.config;
  S24_CHECK(c.in == config_.in && c.out == config_.out && c.bias == config_.bias &&
                c.mode == config_.mode,
            kIO, "SparseLinear::load_state: the stream holds a ", sparse_mode_name(c.mode), " layer ",
            c.out, " x ", c.in, (c.bias ? " with" : " without"), " bias; this layer is ",
            sparse_mode_name(config_.mode), " ", config_.out, " x ", config_.in,
            (config_.bias ? " with" : " without"), " bias (mismatched stream)");
  s.config.device = config_.device;
  try {
    validate(s.config);
  } catch (const Error& e) {
    S24_FAIL(kIO, "SparseLinear::load_state: the stream's layer cannot run on this layer's device: ", e.what());
  }
  apply_saved(std::move(s));
}

}  // namespace sparse24
