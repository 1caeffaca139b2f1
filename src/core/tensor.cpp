#include "sparse24/tensor.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <sstream>

#include "cuda/cast_cuda.h"
#include "cuda/runtime.h"
#include "sparse24/error.h"

namespace sparse24 {

const char* device_name(Device d) { return d == Device::kCPU ? "cpu" : "cuda"; }

TensorView TensorView::matrix(void* data, DType dtype, int64_t rows, int64_t cols, Layout layout,
                              Device device) {
  S24_CHECK(rows >= 0 && cols >= 0, kShape, "negative matrix shape ", rows, " x ", cols);
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.device = device;
  v.rank = 2;
  v.shape[0] = rows;
  v.shape[1] = cols;
  v.strides[0] = layout == Layout::kRowMajor ? cols : 1;
  v.strides[1] = layout == Layout::kRowMajor ? 1 : rows;
  return v;
}

int64_t TensorView::numel() const {
  S24_CHECK(rank >= 0 && rank <= kMaxRank, kShape, "a view of rank ", rank, " (0 to ", kMaxRank, " supported)");
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) {
    S24_CHECK(shape[i] >= 0, kShape, "view ", describe(), " has a negative dimension");
    // Elements and their bytes must fit int64 (a larger shape cannot describe real memory).
    S24_CHECK(!__builtin_mul_overflow(n, shape[i], &n) && n <= INT64_MAX / 8, kShape, "view ", describe(),
              " holds more elements than can be addressed");
  }
  return n;
}

bool TensorView::is_row_major() const {
  return rank == 2 && (strides[1] == 1 || shape[1] <= 1) && (strides[0] == shape[1] || shape[0] <= 1);
}

bool TensorView::is_col_major() const {
  return rank == 2 && (strides[0] == 1 || shape[0] <= 1) && (strides[1] == shape[0] || shape[1] <= 1);
}

bool TensorView::is_contiguous() const {
  if (rank < 0 || rank > kMaxRank) return false;
  int64_t expect = 1;
  for (int i = rank - 1; i >= 0; --i) {
    if (shape[i] != 1 && strides[i] != expect) return false;
    if (__builtin_mul_overflow(expect, shape[i], &expect)) return false;
  }
  return true;
}

TensorView TensorView::t() const {
  S24_CHECK(rank == 2, kShape, "t() needs a matrix, got rank ", rank);
  TensorView v = *this;
  std::swap(v.shape[0], v.shape[1]);
  std::swap(v.strides[0], v.strides[1]);
  return v;
}

std::string TensorView::describe() const {
  std::ostringstream os;
  os << dtype_name(dtype) << "[";
  if (rank < 0 || rank > kMaxRank) os << "rank " << rank;  // not a valid view: its shape is not read
  else
    for (int i = 0; i < rank; ++i) os << (i ? " x " : "") << shape[i];
  if (rank == 2) os << (is_row_major() ? ", row-major" : is_col_major() ? ", col-major" : ", strided");
  os << ", " << device_name(device) << "]";
  return os.str();
}

namespace {
std::atomic<bool> g_poison{false};

std::shared_ptr<void> allocate(size_t bytes, Device device) {
  if (device == Device::kCUDA) {
    std::shared_ptr<void> p = cuda::alloc(bytes);
    if (g_poison) cuda::fill(p.get(), 0xFF, bytes);
    return p;
  }
  void* p = ::operator new(bytes ? bytes : 1, std::align_val_t(64));
  if (g_poison) std::memset(p, 0xFF, bytes);
  return std::shared_ptr<void>(p, [](void* q) { ::operator delete(q, std::align_val_t(64)); });
}
}  // namespace

void set_alloc_poison(bool on) { g_poison = on; }

Tensor Tensor::empty(std::initializer_list<int64_t> shape, DType dtype, Device device) {
  S24_CHECK(shape.size() >= 1 && shape.size() <= size_t(kMaxRank), kShape,
            "tensor rank must be 1..", kMaxRank, ", got ", shape.size());
  Tensor t;
  t.view_.dtype = dtype;
  t.view_.device = device;
  t.view_.rank = int(shape.size());
  int i = 0;
  for (int64_t s : shape) {
    S24_CHECK(s >= 0, kShape, "negative dimension ", s);
    t.view_.shape[i++] = s;
  }
  int64_t stride = 1;
  for (int d = t.view_.rank - 1; d >= 0; --d) {
    t.view_.strides[d] = stride;
    S24_CHECK(t.view_.shape[d] == 0 || stride <= (int64_t(1) << 56) / t.view_.shape[d] / dtype_size(dtype), kShape,
              "tensor of ", t.view_.describe(), " is too large to allocate");
    stride *= t.view_.shape[d];
  }
  t.storage_ = allocate(size_t(stride) * size_t(dtype_size(dtype)), device);
  t.view_.data = t.storage_.get();
  return t;
}

Tensor Tensor::matrix(int64_t rows, int64_t cols, DType dtype, Layout layout, Device device) {
  Tensor t = empty({rows, cols}, dtype, device);
  t.view_ = TensorView::matrix(t.storage_.get(), dtype, rows, cols, layout, device);
  return t;
}

Tensor Tensor::copy_of(const TensorView& src, Device device) {
  Tensor dst;
  dst.view_ = src;
  dst.view_.device = device;
  if (src.is_matrix() && src.is_col_major() && !src.is_row_major()) {
    dst.view_.strides[0] = 1;  // keep a column-major matrix column-major
    dst.view_.strides[1] = src.rows();
  } else {
    int64_t stride = 1;
    for (int d = src.rank - 1; d >= 0; --d) {
      dst.view_.strides[d] = stride;
      stride *= src.shape[d];
    }
  }
  dst.storage_ = allocate(size_t(src.numel()) * size_t(dtype_size(src.dtype)), device);
  dst.view_.data = dst.storage_.get();
  copy_into(dst.view_, src);
  return dst;
}

void copy_into(const TensorView& dst, const TensorView& src) {
  const bool convert = dst.dtype != src.dtype;
  S24_CHECK(!convert || (is_input_dtype(dst.dtype) && is_input_dtype(src.dtype)), kDType, "copy from ",
            src.describe(), " to ", dst.describe(), ": the dtypes differ and are not both float "
            "(fp32, fp16, bf16)");
  S24_CHECK(dst.rank == src.rank, kShape, "copy from ", src.describe(), " to ", dst.describe());
  for (int i = 0; i < src.rank; ++i)
    S24_CHECK(dst.shape[i] == src.shape[i], kShape, "copy from ", src.describe(), " to ", dst.describe());
  const size_t bytes = size_t(src.numel()) * size_t(dtype_size(src.dtype));
  const bool same_order = (src.is_contiguous() && dst.is_contiguous()) ||
                          (src.is_col_major() && dst.is_col_major());
  const bool on_cpu = src.device == Device::kCPU && dst.device == Device::kCPU;
  if (same_order && !convert) {
    if (on_cpu) {
      if (bytes) std::memmove(dst.data, src.data, bytes);  // the views may overlap
    } else {
      cuda::copy(dst.data, dst.device == Device::kCUDA, src.data, src.device == Device::kCUDA, bytes);
    }
    return;
  }
  if (same_order && src.device == Device::kCUDA && dst.device == Device::kCUDA) {
    cuda::convert(dst.data, dst.dtype, src.data, src.dtype, src.numel());
    return;
  }
  S24_CHECK(on_cpu, kDevice, convert ? "converting" : "strided", " copy from ", src.describe(), " to ",
            dst.describe(), convert ? " (convert on one device, in one layout)" : " (copy to a contiguous layout first)");
  // Element-wise copy on the CPU, over a rank-4 index space padded with size-1 dims.
  int64_t shape[kMaxRank] = {1, 1, 1, 1}, ss[kMaxRank] = {0, 0, 0, 0}, ds[kMaxRank] = {0, 0, 0, 0};
  for (int i = 0; i < src.rank; ++i) {
    const int k = kMaxRank - src.rank + i;
    shape[k] = src.shape[i];
    ss[k] = src.strides[i];
    ds[k] = dst.strides[i];
  }
  const int64_t es = dtype_size(src.dtype), ed = dtype_size(dst.dtype);
  const char* s = static_cast<const char*>(src.data);
  char* d = static_cast<char*>(dst.data);
  // element(from, to) for every index; the dtype dispatch happens once, outside the loops.
  auto each = [&](auto element) {
    for (int64_t a = 0; a < shape[0]; ++a)
      for (int64_t b = 0; b < shape[1]; ++b)
        for (int64_t c = 0; c < shape[2]; ++c)
          for (int64_t e = 0; e < shape[3]; ++e) {
            const int64_t so = a * ss[0] + b * ss[1] + c * ss[2] + e * ss[3];
            const int64_t dof = a * ds[0] + b * ds[1] + c * ds[2] + e * ds[3];
            element(s + so * es, d + dof * ed);
          }
  };
  if (!convert) return each([&](const char* from, char* to) { std::memcpy(to, from, size_t(es)); });
  dispatch_input_dtype(src.dtype, [&](auto stag) {
    dispatch_input_dtype(dst.dtype, [&](auto dtag) {
      using S = typename decltype(stag)::type;
      using D = typename decltype(dtag)::type;
      each([](const char* from, char* to) {
        *reinterpret_cast<D*>(to) = from_f32<D>(to_f32(*reinterpret_cast<const S*>(from)), 1.f, Overflow::kPyTorch);
      });
    });
  });
}

float finite_amax(const TensorView& x) {
  S24_CHECK(x.is_matrix(), kShape, "finite_amax: expected a matrix, got ", x.describe());
  S24_CHECK(is_input_dtype(x.dtype), kDType, "finite_amax: ", x.describe(), " must be fp32, fp16 or bf16");
  if (x.numel() == 0) return 0.f;
  S24_CHECK(x.data != nullptr, kValue, "finite_amax: null data pointer");
  if (x.device == Device::kCUDA) return cuda::finite_amax(x);
  float amax = 0.f;
  dispatch_input_dtype(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t i = 0; i < x.rows(); ++i)
      for (int64_t j = 0; j < x.cols(); ++j) {
        const float a = std::fabs(to_f32(*x.at<const T>(i, j)));
        if (a <= dtype_max(DType::kF32)) amax = std::max(amax, a);  // NaN and Inf fail the test
      }
  });
  return amax;
}

float fp8_scale(float amax, DType fp8) {
  S24_CHECK(is_fp8(fp8), kDType, "fp8_scale: ", dtype_name(fp8), " is not an fp8 dtype (e4m3, e5m2)");
  const float scale = amax / dtype_max(fp8);
  return scale > 0.f && std::isfinite(scale) ? scale : 1.f;
}

void quantize_into(const TensorView& dst, const TensorView& src, float scale, const TensorView* also) {
  S24_CHECK(dst.is_matrix() && src.is_matrix() && dst.rows() == src.rows() && dst.cols() == src.cols(), kShape,
            "quantize_into: dst ", dst.describe(), " and src ", src.describe(), " must be matrices of one shape");
  S24_CHECK(is_fp8(dst.dtype), kDType, "quantize_into: dst ", dst.describe(), " must be e4m3 or e5m2");
  S24_CHECK(is_input_dtype(src.dtype), kDType, "quantize_into: src ", src.describe(), " must be fp32, fp16 or bf16");
  S24_CHECK(dst.device == src.device, kDevice, "quantize_into: dst ", dst.describe(), " and src ", src.describe(),
            " must be on one device");
  if (also) {
    S24_CHECK(also->is_matrix() && also->rows() == dst.rows() && also->cols() == dst.cols(), kShape,
              "quantize_into: the second destination ", also->describe(), " must have dst's shape (", dst.describe(), ")");
    S24_CHECK(also->dtype == dst.dtype, kDType, "quantize_into: the second destination ", also->describe(),
              " must have dst's dtype (", dst.describe(), ")");
    S24_CHECK(also->device == dst.device, kDevice, "quantize_into: the second destination ", also->describe(),
              " must be on dst's device (", dst.describe(), ")");
  }
  S24_CHECK(std::isfinite(scale) && scale > 0.f, kValue, "quantize_into: scale must be finite and > 0, got ", scale);
  if (src.numel() == 0) return;
  if (src.device == Device::kCUDA) return cuda::quantize(dst, src, scale, also);
  dispatch_input_dtype(src.dtype, [&](auto stag) {
    dispatch_fp8_dtype(dst.dtype, [&](auto dtag) {
      using S = typename decltype(stag)::type;
      using D = typename decltype(dtag)::type;
      for (int64_t i = 0; i < src.rows(); ++i)
        for (int64_t j = 0; j < src.cols(); ++j) {
          const D q = quantize_f32<D>(to_f32(*src.at<const S>(i, j)), scale);
          *dst.at<D>(i, j) = q;
          if (also) *also->at<D>(i, j) = q;
        }
    });
  });
}

void fill_zeros(const TensorView& t) {
  S24_CHECK(t.is_contiguous(), kShape, "fill_zeros: ", t.describe(), " is not contiguous");
  const size_t bytes = size_t(t.numel()) * size_t(dtype_size(t.dtype));
  if (bytes == 0) return;
  if (t.device == Device::kCPU) {
    std::memset(t.data, 0, bytes);
  } else {
    cuda::fill(t.data, 0, bytes);
  }
}

Tensor to_f32_row_major(const TensorView& src) {
  S24_CHECK(src.is_matrix(), kShape, "expected a matrix, got ", src.describe());
  S24_CHECK(src.device == Device::kCPU, kDevice, "expected a CPU matrix, got ", src.describe());
  Tensor out = Tensor::matrix(src.rows(), src.cols(), DType::kF32);
  float* o = out.data<float>();
  const int64_t cols = src.cols();
  dispatch_dtype(src.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t i = 0; i < src.rows(); ++i)
      for (int64_t j = 0; j < cols; ++j) o[i * cols + j] = to_f32(*src.at<const T>(i, j));
  });
  return out;
}

const float* f32_row_major(const TensorView& src, Tensor& holder) {
  if (src.dtype == DType::kF32 && src.is_row_major()) return static_cast<const float*>(src.data);
  holder = to_f32_row_major(src);
  return holder.data<float>();
}

}  // namespace sparse24
