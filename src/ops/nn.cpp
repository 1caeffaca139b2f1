// The GPT-2 layers of sparse24/nn.h: argument checks with clear errors, then the backend the
// device picks: the CPU, or CUDA for the functions that have kernels (gelu_forward,
// gelu_backward, bias_backward); any other function throws kDevice for CUDA tensors.
//
// Every public function follows the same steps:
//   1. the shape-defining tensors are matrices; sizes (N, C, OC, V) are read from them;
//   2. every tensor has its documented rank, shape and dtype, is contiguous (bias_backward's dout
//      may be strided), and has data;
//   3. outputs do not overlap inputs or each other (elementwise functions may run in place);
//   4. all tensors are on one device; CUDA stops here unless the function has CUDA kernels;
//   5. token ids / targets are in range (read on the CPU), then the CPU or CUDA kernel runs.
#include "sparse24/nn.h"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "cpu/nn_cpu.h"
#include "cuda/nn_cuda.h"
#include "sparse24/error.h"

namespace sparse24::nn {
namespace {

// "[6 x 8]": a shape as describe() writes it.
std::string shape_string(std::initializer_list<int64_t> shape) {
  std::string s = "[";
  bool first = true;
  for (int64_t d : shape) {
    s += (first ? "" : " x ") + std::to_string(d);
    first = false;
  }
  return s + "]";
}

// The byte range a view's elements span, from the lowest address to the end of the highest
// element (any strides; for a contiguous view exactly its numel() elements).
struct Span {
  const char* begin;
  const char* end;
};
Span span_of(const TensorView& v) {
  const char* p = static_cast<const char*>(v.data);
  if (v.numel() == 0) return {p, p};
  int64_t lo = 0, hi = 0;  // element offsets of the lowest and the highest element
  for (int i = 0; i < v.rank; ++i) {
    const int64_t reach = (v.shape[i] - 1) * v.strides[i];
    (reach < 0 ? lo : hi) += reach;
  }
  const int64_t es = dtype_size(v.dtype);
  return {p + lo * es, p + (hi + 1) * es};
}
bool overlap(const TensorView& a, const TensorView& b) {
  const Span x = span_of(a), y = span_of(b);
  return x.begin < y.end && y.begin < x.end;
}

// The checks of one call: each tensor is checked as it is named, then the set as a whole.
class Args {
 public:
  explicit Args(const char* op) : op_(op) {}

  // A matrix whose two dimensions define sizes (checked for dtype etc. by tensor() later).
  void matrix(const char* name, const TensorView& v, const char* dims) const {
    S24_CHECK(v.rank == 2, kShape, op_, ": ", name, " must be a matrix ", dims, ", got ", v.describe());
  }

  // A tensor of exactly `shape` and `dtype`, contiguous, with data. `dims` names the shape
  // symbolically ("[B*T, C]") for the message.
  void tensor(const char* name, const TensorView& v, const char* dims, std::initializer_list<int64_t> shape,
              DType dtype = DType::kF32, bool output = false) {
    bool same = v.rank == int(shape.size());
    int i = 0;
    for (int64_t d : shape) same = same && v.shape[i++] == d;
    S24_CHECK(same, kShape, op_, ": ", name, " is ", v.describe(), ", expected ", dims, " = ",
              shape_string(shape));
    check_common(name, v, dtype, output);
  }

  // A tensor of the same shape as `like` (elementwise functions, any rank), of `dtype`;
  // `dtype_from` names the tensor that set the dtype, for the message (nullptr: fixed dtype).
  void same_shape(const char* name, const TensorView& v, const char* like_name, const TensorView& like,
                  bool output = false, DType dtype = DType::kF32, const char* dtype_from = nullptr) {
    bool same = v.rank == like.rank;
    for (int i = 0; same && i < v.rank; ++i) same = v.shape[i] == like.shape[i];
    S24_CHECK(same, kShape, op_, ": ", name, " ", v.describe(), " and ", like_name, " ", like.describe(),
              " must have one shape");
    check_common(name, v, dtype, output, dtype_from);
  }

  // A matrix of exactly `shape` and `dtype` with data, in any layout (strides are followed).
  void strided(const char* name, const TensorView& v, const char* dims, std::initializer_list<int64_t> shape,
               DType dtype) {
    bool same = v.rank == int(shape.size());
    int i = 0;
    for (int64_t d : shape) same = same && v.shape[i++] == d;
    S24_CHECK(same, kShape, op_, ": ", name, " is ", v.describe(), ", expected ", dims, " = ",
              shape_string(shape));
    check_common(name, v, dtype, /*output=*/false, nullptr, /*contiguous=*/false);
  }

  // A float tensor of the types computed in fp32 (fp32, fp16, bf16): returns its dtype.
  DType float_dtype(const char* name, const TensorView& v) const {
    S24_CHECK(is_input_dtype(v.dtype), kDType, op_, ": ", name, " ", v.describe(),
              " must be fp32, fp16 or bf16");
    return v.dtype;
  }

  // Outputs must not overlap the inputs or one another; with `in_place`, an output may be
  // exactly an input (same memory, same shape: elementwise functions).
  void outputs_apart(bool in_place = false) const {
    for (size_t i = 0; i < seen_.size(); ++i) {
      if (!seen_[i].output) continue;
      for (size_t j = 0; j < seen_.size(); ++j) {
        if (j == i || (seen_[j].output && j < i)) continue;
        const TensorView& a = *seen_[i].view;
        const TensorView& b = *seen_[j].view;
        const bool same = a.data == b.data && a.numel() == b.numel();
        if (in_place && same && !seen_[j].output) continue;
        S24_CHECK(!overlap(a, b), kValue, op_, ": ", seen_[i].name, " ", a.describe(), " overlaps ",
                  seen_[j].name, " ", b.describe(), " in memory",
                  in_place ? " (an output may be an input exactly, not partly)" : "");
      }
    }
  }

  // All tensors on one device, which is returned. A CUDA device ends the call unless the
  // function has CUDA kernels (`cuda_kernels`).
  Device device(bool cuda_kernels = false) const {
    const Device dev = seen_.front().view->device;
    for (const Seen& s : seen_)
      S24_CHECK(s.view->device == dev, kDevice, op_, ": ", s.name, " ", s.view->describe(), " is on ",
                device_name(s.view->device), " but ", seen_.front().name, " on ", device_name(dev),
                ": all tensors must be on one device");
    if (dev == Device::kCUDA && !cuda_kernels)
      S24_FAIL(kDevice, op_, ": no CUDA kernel yet (CPU only in this version)");
    return dev;
  }

 private:
  struct Seen {
    const char* name;
    const TensorView* view;
    bool output;
  };

  void check_common(const char* name, const TensorView& v, DType dtype, bool output,
                    const char* dtype_from = nullptr, bool contiguous = true) {
    S24_CHECK(v.dtype == dtype, kDType, op_, ": ", name, " ", v.describe(), " must be ", dtype_name(dtype),
              dtype == DType::kI32 ? " (token ids)" : "", dtype_from ? " (the dtype of " : "",
              dtype_from ? dtype_from : "", dtype_from ? ")" : "");
    S24_CHECK(!contiguous || v.is_contiguous(), kShape, op_, ": ", name, " ", v.describe(),
              " must be contiguous (row-major, no gaps)");
    S24_CHECK(v.data != nullptr || v.numel() == 0, kValue, op_, ": ", name, " ", v.describe(),
              " has a null data pointer");
    seen_.push_back({name, &v, output});
  }

  const char* op_;
  std::vector<Seen> seen_;
};

constexpr bool kOut = true;         // marks an output in Args::tensor / same_shape
constexpr bool kCudaKernels = true;  // Args::device: the function runs on CUDA too

void check_sizes(const char* op, int B, int T) {
  S24_CHECK(B > 0 && T > 0, kValue, op, ": B and T must be positive, got B = ", B, ", T = ", T);
}

// CPU: every id in [0, V), else kValue naming the first bad position (as b, t when T is known).
void check_ids(const char* op, const char* what, const TensorView& ids, int64_t V, int64_t T) {
  const int32_t* p = static_cast<const int32_t*>(ids.data);
  for (int64_t i = 0, n = ids.numel(); i < n; ++i) {
    if (p[i] >= 0 && p[i] < V) continue;
    if (T > 0)
      S24_FAIL(kValue, op, ": ", what, " ", p[i], " at position ", i, " (b = ", i / T, ", t = ", i % T,
               ") is outside [0, V) with V = ", V);
    S24_FAIL(kValue, op, ": ", what, " ", p[i], " at position ", i, " is outside [0, V) with V = ", V);
  }
}

const float* f32(const TensorView& v) { return static_cast<const float*>(v.data); }
float* f32_out(const TensorView& v) { return static_cast<float*>(v.data); }
const int32_t* i32(const TensorView& v) { return static_cast<const int32_t*>(v.data); }

}  // namespace

// ---------------------------------------------------------------------------------------------
void encoder_forward(const TensorView& out, const TensorView& tokens, const TensorView& wte,
                     const TensorView& wpe, int B, int T) {
  const char* op = "encoder_forward";
  check_sizes(op, B, T);
  Args a(op);
  a.matrix("wte", wte, "[V, C]");
  a.matrix("wpe", wpe, "[maxT, C]");
  const int64_t V = wte.rows(), C = wte.cols(), BT = int64_t(B) * T;
  S24_CHECK(T <= wpe.rows(), kShape, op, ": T = ", T, " exceeds the ", wpe.rows(), " positions of wpe ",
            wpe.describe());
  a.tensor("out", out, "[B*T, C]", {BT, C}, DType::kF32, kOut);
  a.tensor("tokens", tokens, "[B*T]", {BT}, DType::kI32);
  a.tensor("wte", wte, "[V, C]", {V, C});
  a.tensor("wpe", wpe, "[maxT, C]", {wpe.rows(), C});
  a.outputs_apart();
  a.device();
  check_ids(op, "token id", tokens, V, T);
  cpu::nn::encoder_forward(f32_out(out), i32(tokens), f32(wte), f32(wpe), B, T, C);
}

void encoder_backward(const TensorView& dwte, const TensorView& dwpe, const TensorView& dout,
                      const TensorView& tokens, int B, int T) {
  const char* op = "encoder_backward";
  check_sizes(op, B, T);
  Args a(op);
  a.matrix("dwte", dwte, "[V, C]");
  a.matrix("dwpe", dwpe, "[maxT, C]");
  const int64_t V = dwte.rows(), C = dwte.cols(), BT = int64_t(B) * T;
  S24_CHECK(T <= dwpe.rows(), kShape, op, ": T = ", T, " exceeds the ", dwpe.rows(), " positions of dwpe ",
            dwpe.describe());
  a.tensor("dwte", dwte, "[V, C]", {V, C}, DType::kF32, kOut);
  a.tensor("dwpe", dwpe, "[maxT, C]", {dwpe.rows(), C}, DType::kF32, kOut);
  a.tensor("dout", dout, "[B*T, C]", {BT, C});
  a.tensor("tokens", tokens, "[B*T]", {BT}, DType::kI32);
  a.outputs_apart();
  a.device();
  check_ids(op, "token id", tokens, V, T);
  cpu::nn::encoder_backward(f32_out(dwte), f32_out(dwpe), f32(dout), i32(tokens), B, T, C);
}

// ---------------------------------------------------------------------------------------------
void layernorm_forward(const TensorView& out, const TensorView& mean, const TensorView& rstd,
                       const TensorView& inp, const TensorView& weight, const TensorView& bias) {
  const char* op = "layernorm_forward";
  Args a(op);
  a.matrix("inp", inp, "[N, C]");
  const int64_t N = inp.rows(), C = inp.cols();
  S24_CHECK(C > 0, kShape, op, ": inp ", inp.describe(), " has no channels to normalise");
  a.tensor("out", out, "[N, C]", {N, C}, DType::kF32, kOut);
  a.tensor("mean", mean, "[N]", {N}, DType::kF32, kOut);
  a.tensor("rstd", rstd, "[N]", {N}, DType::kF32, kOut);
  a.tensor("inp", inp, "[N, C]", {N, C});
  a.tensor("weight", weight, "[C]", {C});
  a.tensor("bias", bias, "[C]", {C});
  a.outputs_apart();
  a.device();
  cpu::nn::layernorm_forward(f32_out(out), f32_out(mean), f32_out(rstd), f32(inp), f32(weight), f32(bias),
                             N, C);
}

void layernorm_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dbias,
                        const TensorView& dout, const TensorView& inp, const TensorView& weight,
                        const TensorView& mean, const TensorView& rstd) {
  const char* op = "layernorm_backward";
  Args a(op);
  a.matrix("inp", inp, "[N, C]");
  const int64_t N = inp.rows(), C = inp.cols();
  S24_CHECK(C > 0, kShape, op, ": inp ", inp.describe(), " has no channels");
  a.tensor("dinp", dinp, "[N, C]", {N, C}, DType::kF32, kOut);
  a.tensor("dweight", dweight, "[C]", {C}, DType::kF32, kOut);
  a.tensor("dbias", dbias, "[C]", {C}, DType::kF32, kOut);
  a.tensor("dout", dout, "[N, C]", {N, C});
  a.tensor("inp", inp, "[N, C]", {N, C});
  a.tensor("weight", weight, "[C]", {C});
  a.tensor("mean", mean, "[N]", {N});
  a.tensor("rstd", rstd, "[N]", {N});
  a.outputs_apart();
  a.device();
  cpu::nn::layernorm_backward(f32_out(dinp), f32_out(dweight), f32_out(dbias), f32(dout), f32(inp),
                              f32(weight), f32(mean), f32(rstd), N, C);
}

// ---------------------------------------------------------------------------------------------
void matmul_forward(const TensorView& out, const TensorView& inp, const TensorView& weight,
                    const TensorView* bias) {
  const char* op = "matmul_forward";
  Args a(op);
  a.matrix("inp", inp, "[N, C]");
  a.matrix("weight", weight, "[OC, C]");
  const int64_t N = inp.rows(), C = inp.cols(), OC = weight.rows();
  a.tensor("out", out, "[N, OC]", {N, OC}, DType::kF32, kOut);
  a.tensor("inp", inp, "[N, C]", {N, C});
  a.tensor("weight", weight, "[OC, C]", {OC, C});
  if (bias) a.tensor("bias", *bias, "[OC]", {OC});
  a.outputs_apart();
  a.device();
  cpu::nn::matmul_forward(f32_out(out), f32(inp), f32(weight), bias ? f32(*bias) : nullptr, N, C, OC);
}

void matmul_backward(const TensorView* dinp, const TensorView& dweight, const TensorView* dbias,
                     const TensorView& dout, const TensorView& inp, const TensorView& weight) {
  const char* op = "matmul_backward";
  Args a(op);
  a.matrix("inp", inp, "[N, C]");
  a.matrix("weight", weight, "[OC, C]");
  const int64_t N = inp.rows(), C = inp.cols(), OC = weight.rows();
  if (dinp) a.tensor("dinp", *dinp, "[N, C]", {N, C}, DType::kF32, kOut);
  a.tensor("dweight", dweight, "[OC, C]", {OC, C}, DType::kF32, kOut);
  if (dbias) a.tensor("dbias", *dbias, "[OC]", {OC}, DType::kF32, kOut);
  a.tensor("dout", dout, "[N, OC]", {N, OC});
  a.tensor("inp", inp, "[N, C]", {N, C});
  a.tensor("weight", weight, "[OC, C]", {OC, C});
  a.outputs_apart();
  a.device();
  cpu::nn::matmul_backward(dinp ? f32_out(*dinp) : nullptr, f32_out(dweight), dbias ? f32_out(*dbias) : nullptr,
                           f32(dout), f32(inp), f32(weight), N, C, OC);
}

void bias_backward(const TensorView& dbias, const TensorView& dout) {
  const char* op = "bias_backward";
  Args a(op);
  a.matrix("dout", dout, "[N, OC]");
  const int64_t N = dout.rows(), OC = dout.cols();
  a.tensor("dbias", dbias, "[OC]", {OC}, DType::kF32, kOut);
  a.strided("dout", dout, "[N, OC]", {N, OC}, a.float_dtype("dout", dout));
  a.outputs_apart();
  const Device dev = a.device(kCudaKernels);
  if (N == 0 || OC == 0) return;
  if (dev == Device::kCUDA) return cuda::nn::bias_backward(f32_out(dbias), dout);
  dispatch_input_dtype(dout.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::nn::bias_backward(f32_out(dbias), static_cast<const T*>(dout.data), N, OC, dout.strides[0],
                           dout.strides[1]);
  });
}

// ---------------------------------------------------------------------------------------------
namespace {
void check_attention_sizes(const char* op, int B, int T, int C, int NH) {
  check_sizes(op, B, T);
  S24_CHECK(C > 0 && NH > 0, kValue, op, ": C and NH must be positive, got C = ", C, ", NH = ", NH);
  S24_CHECK(C % NH == 0, kShape, op, ": C = ", C, " channels do not split into NH = ", NH, " heads");
}
}  // namespace

void attention_forward(const TensorView& out, const TensorView& preatt, const TensorView& att,
                       const TensorView& qkv, int B, int T, int C, int NH) {
  const char* op = "attention_forward";
  check_attention_sizes(op, B, T, C, NH);
  const int64_t BT = int64_t(B) * T;
  Args a(op);
  a.tensor("out", out, "[B*T, C]", {BT, C}, DType::kF32, kOut);
  a.tensor("preatt", preatt, "[B, NH, T, T]", {B, NH, T, T}, DType::kF32, kOut);
  a.tensor("att", att, "[B, NH, T, T]", {B, NH, T, T}, DType::kF32, kOut);
  a.tensor("qkv", qkv, "[B*T, 3C]", {BT, 3 * int64_t(C)});
  a.outputs_apart();
  a.device();
  cpu::nn::attention_forward(f32_out(out), f32_out(preatt), f32_out(att), f32(qkv), B, T, C, NH);
}

void attention_backward(const TensorView& dqkv, const TensorView& dpreatt, const TensorView& datt,
                        const TensorView& dout, const TensorView& qkv, const TensorView& att,
                        int B, int T, int C, int NH) {
  const char* op = "attention_backward";
  check_attention_sizes(op, B, T, C, NH);
  const int64_t BT = int64_t(B) * T;
  Args a(op);
  a.tensor("dqkv", dqkv, "[B*T, 3C]", {BT, 3 * int64_t(C)}, DType::kF32, kOut);
  a.tensor("dpreatt", dpreatt, "[B, NH, T, T]", {B, NH, T, T}, DType::kF32, kOut);
  a.tensor("datt", datt, "[B, NH, T, T]", {B, NH, T, T}, DType::kF32, kOut);
  a.tensor("dout", dout, "[B*T, C]", {BT, C});
  a.tensor("qkv", qkv, "[B*T, 3C]", {BT, 3 * int64_t(C)});
  a.tensor("att", att, "[B, NH, T, T]", {B, NH, T, T});
  a.outputs_apart();
  a.device();
  cpu::nn::attention_backward(f32_out(dqkv), f32_out(dpreatt), f32_out(datt), f32(dout), f32(qkv), f32(att),
                              B, T, C, NH);
}

// ---------------------------------------------------------------------------------------------
void gelu_forward(const TensorView& out, const TensorView& inp) {
  Args a("gelu_forward");
  const DType dt = a.float_dtype("inp", inp);
  a.same_shape("out", out, "inp", inp, kOut, dt, "inp");
  a.same_shape("inp", inp, "out", out, false, dt);
  a.outputs_apart(/*in_place=*/true);
  const int64_t n = inp.numel();
  if (a.device(kCudaKernels) == Device::kCUDA) return cuda::nn::gelu_forward(out.data, inp.data, dt, n);
  dispatch_input_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::nn::gelu_forward(static_cast<T*>(out.data), static_cast<const T*>(inp.data), n);
  });
}

void gelu_backward(const TensorView& dinp, const TensorView& inp, const TensorView& dout) {
  Args a("gelu_backward");
  const DType dt = a.float_dtype("inp", inp);
  a.same_shape("dinp", dinp, "inp", inp, kOut, dt, "inp");
  a.same_shape("inp", inp, "dinp", dinp, false, dt);
  a.same_shape("dout", dout, "inp", inp, false, dt, "inp");
  a.outputs_apart(/*in_place=*/true);
  const int64_t n = inp.numel();
  if (a.device(kCudaKernels) == Device::kCUDA)
    return cuda::nn::gelu_backward(dinp.data, inp.data, dout.data, dt, n);
  dispatch_input_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::nn::gelu_backward(static_cast<T*>(dinp.data), static_cast<const T*>(inp.data),
                           static_cast<const T*>(dout.data), n);
  });
}

void residual_forward(const TensorView& out, const TensorView& a, const TensorView& b) {
  Args args("residual_forward");
  args.same_shape("out", out, "a", a, kOut);
  args.same_shape("a", a, "out", out);
  args.same_shape("b", b, "a", a);
  args.outputs_apart(/*in_place=*/true);
  args.device();
  cpu::nn::residual_forward(f32_out(out), f32(a), f32(b), out.numel());
}

// ---------------------------------------------------------------------------------------------
void crossentropy_forward(const TensorView& losses, const TensorView& probs, const TensorView& logits,
                          const TensorView& targets) {
  const char* op = "crossentropy_forward";
  Args a(op);
  a.matrix("logits", logits, "[N, V]");
  const int64_t N = logits.rows(), V = logits.cols();
  S24_CHECK(V > 0, kShape, op, ": logits ", logits.describe(), " has an empty vocabulary");
  a.tensor("losses", losses, "[N]", {N}, DType::kF32, kOut);
  a.tensor("probs", probs, "[N, V]", {N, V}, DType::kF32, kOut);
  a.tensor("logits", logits, "[N, V]", {N, V});
  a.tensor("targets", targets, "[N]", {N}, DType::kI32);
  a.outputs_apart();
  a.device();
  check_ids(op, "target", targets, V, 0);
  cpu::nn::crossentropy_forward(f32_out(losses), f32_out(probs), f32(logits), i32(targets), N, V);
}

void crossentropy_backward(const TensorView& dlogits, const TensorView& dlosses, const TensorView& probs,
                           const TensorView& targets) {
  const char* op = "crossentropy_backward";
  Args a(op);
  a.matrix("probs", probs, "[N, V]");
  const int64_t N = probs.rows(), V = probs.cols();
  a.tensor("dlogits", dlogits, "[N, V]", {N, V}, DType::kF32, kOut);
  a.tensor("dlosses", dlosses, "[N]", {N});
  a.tensor("probs", probs, "[N, V]", {N, V});
  a.tensor("targets", targets, "[N]", {N}, DType::kI32);
  a.outputs_apart();
  a.device();
  check_ids(op, "target", targets, V, 0);
  cpu::nn::crossentropy_backward(f32_out(dlogits), f32(dlosses), f32(probs), i32(targets), N, V);
}

}  // namespace sparse24::nn
