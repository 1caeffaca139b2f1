// sparse24/tensor.h: strided tensors, owning (Tensor) and non-owning (TensorView).
//
// A TensorView is a plain description of memory: pointer, dtype, device, shape and strides (in
// elements). Row- and column-major matrices are both just strides, so a transposed gradient is a
// view (t()), never a copy. Operations take views and pick their backend from view.device.
// A Tensor owns its memory (shared, reference counted) and hands out views.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "sparse24/dtype.h"

namespace sparse24 {

enum class Device : uint8_t { kCPU, kCUDA };
const char* device_name(Device d);

// Named layouts of a freshly allocated matrix.
enum class Layout : uint8_t {
  kRowMajor,  // element (i, j) at i * cols + j
  kColMajor,  // element (i, j) at j * rows + i
};

constexpr int kMaxRank = 4;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  int rank = 0;
  int64_t shape[kMaxRank] = {0, 0, 0, 0};
  int64_t strides[kMaxRank] = {0, 0, 0, 0};  // in elements, not bytes

  // A rows x cols matrix over existing memory.
  static TensorView matrix(void* data, DType dtype, int64_t rows, int64_t cols,
                           Layout layout = Layout::kRowMajor, Device device = Device::kCPU);

  // The element count; throws kShape for a rank outside 0..kMaxRank, a negative dimension, or
  // more elements (or bytes) than int64 counts.
  int64_t numel() const;
  int64_t rows() const { return shape[0]; }  // for rank-2 views
  int64_t cols() const { return shape[1]; }
  bool is_matrix() const { return rank == 2; }
  bool is_row_major() const;  // rank 2, stride (cols, 1)
  bool is_col_major() const;  // rank 2, stride (1, rows)
  bool is_contiguous() const; // row-major order without gaps, any rank
  // The transpose of a matrix: same memory, dims and strides swapped.
  TensorView t() const;
  // Element (i, j) of a matrix, as a typed pointer.
  template <typename T>
  T* at(int64_t i, int64_t j) const {
    return static_cast<T*>(data) + i * strides[0] + j * strides[1];
  }
  // "fp16[3072 x 768, col-major, cpu]", for error messages.
  std::string describe() const;
};

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised, contiguous row-major tensor.
  static Tensor empty(std::initializer_list<int64_t> shape, DType dtype, Device device = Device::kCPU);
  static Tensor matrix(int64_t rows, int64_t cols, DType dtype, Layout layout = Layout::kRowMajor,
                       Device device = Device::kCPU);
  // A copy of any view into fresh memory on `device`, same dtype, same layout if it is a
  // row- or column-major matrix, otherwise row-major.
  static Tensor copy_of(const TensorView& src, Device device);

  bool defined() const { return storage_ != nullptr; }
  const TensorView& view() const { return view_; }
  operator const TensorView&() const { return view_; }  // NOLINT: a Tensor is usable as a view
  template <typename T>
  T* data() const { return static_cast<T*>(view_.data); }
  Tensor to(Device device) const { return copy_of(view_, device); }

  int64_t numel() const { return view_.numel(); }
  int64_t rows() const { return view_.rows(); }
  int64_t cols() const { return view_.cols(); }
  DType dtype() const { return view_.dtype; }
  Device device() const { return view_.device; }

 private:
  std::shared_ptr<void> storage_;
  TensorView view_;
};

// For tests: while on, every new Tensor (CPU or CUDA) starts filled with 0xFF bytes (NaN for
// float types, invalid 2:4 metadata codes), so an output element a kernel forgets to write shows.
void set_alloc_poison(bool on);

// Copies src into dst (same shape). Same dtype: any strides, any devices (strided layouts on
// the CPU only). Float dtypes (fp32, fp16, bf16) convert into one another, rounding to nearest
// even (overflow to Inf), on one device: any strides on the CPU, one layout on CUDA.
void copy_into(const TensorView& dst, const TensorView& src);

// ---- FP8 casts with a per-tensor scale (the operands of FP8 GEMMs; docs/DTYPES.md) -------------
// The largest |x| over the finite elements of a matrix (fp32, fp16 or bf16, any layout, CPU or
// CUDA); 0 when there are none. On CUDA the result is read back (synchronises).
float finite_amax(const TensorView& x);
// The per-tensor scale that maps amax to the largest finite value of an fp8 dtype: amax / 448
// (e4m3) or amax / 57344 (e5m2); 1 when that is 0 or not finite (an all-zero tensor).
float fp8_scale(float amax, DType fp8);
// dst = quantize_f32(src / scale) (dtype.h: round to nearest even, finite values saturate, Inf and
// NaN stay non-finite). dst: an e4m3 or e5m2 matrix; src: fp32, fp16 or bf16 of the same shape
// on the same device; any strides on both (a column-major dst makes a transposed copy, as FP8
// GEMMs need for their K-major operands). scale must be finite and > 0. `also`, when given, is a
// second destination (same shape, dtype and device as dst, other strides: typically the
// transposed copy beside a row-major one), written from the same read of src.
void quantize_into(const TensorView& dst, const TensorView& src, float scale, const TensorView* also = nullptr);

// Sets every byte of a contiguous tensor (CPU or CUDA) to zero: +0 for the float dtypes.
void fill_zeros(const TensorView& t);

// A CPU fp32 row-major copy of a CPU matrix of any float dtype and layout (int8 is unscaled).
Tensor to_f32_row_major(const TensorView& src);
// The same without a copy when src already is fp32 row-major: returns src's memory, or the
// memory of a copy kept alive in `holder`.
const float* f32_row_major(const TensorView& src, Tensor& holder);

}  // namespace sparse24
