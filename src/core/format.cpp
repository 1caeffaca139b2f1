#include "sparse24/format.h"

#include <cmath>
#include <cstring>

#include "cuda/cast_cuda.h"
#include "cuda/runtime.h"
#include "cuda/transforms_cuda.h"
#include "sparse24/error.h"

namespace sparse24 {

Mask24 Mask24::empty(int64_t rows, int64_t cols, Device device) {
  S24_CHECK(rows >= 0 && cols >= 0 && cols % 4 == 0, kShape,
            "a 2:4 mask needs rows, cols >= 0 and columns divisible by 4, got ", rows, " x ", cols);
  Mask24 m;
  m.rows_ = rows;
  m.cols_ = cols;
  m.codes_ = Tensor::matrix(rows, m.row_bytes(), DType::kU8, Layout::kRowMajor, device);
  // The unused high nibble of an odd row's last byte must be 0 (FORMAT.md); CPU writers set codes
  // one nibble at a time, so start from zeros. Device kernels write whole bytes.
  if (device == Device::kCPU) std::memset(m.codes_.data<uint8_t>(), 0, size_t(rows * m.row_bytes()));
  return m;
}

uint8_t Mask24::code(int64_t r, int64_t g) const {
  const uint8_t byte = codes_.data<uint8_t>()[r * row_bytes() + g / 2];
  return uint8_t((g & 1) ? byte >> 4 : byte & 0xF);
}

void Mask24::set_code(int64_t r, int64_t g, uint8_t c) const {
  uint8_t& byte = codes_.data<uint8_t>()[r * row_bytes() + g / 2];
  byte = (g & 1) ? uint8_t((byte & 0x0F) | (c << 4)) : uint8_t((byte & 0xF0) | c);
}

Mask24 Mask24::from_dense(const TensorView& mask) {
  S24_CHECK(mask.is_matrix(), kShape, "a mask must be a matrix, got ", mask.describe());
  S24_CHECK(mask.device == Device::kCPU, kDevice, "Mask24::from_dense reads CPU masks, got ", mask.describe());
  S24_CHECK(mask.cols() % 4 == 0, kShape, "mask ", mask.describe(), ": columns not divisible by 4");
  S24_CHECK(mask.data != nullptr || mask.numel() == 0, kValue, "Mask24::from_dense: null data pointer");
  Mask24 m = empty(mask.rows(), mask.cols());
  dispatch_dtype(mask.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t r = 0; r < m.rows_; ++r)
      for (int64_t g = 0; g < m.groups_per_row(); ++g) {
        int kept[4], n = 0;
        for (int i = 0; i < 4; ++i) {
          const float v = to_f32(*mask.at<const T>(r, 4 * g + i));
          if (v != 0.f) {  // NaN counts as non-zero, i.e. kept
            if (n < 4) kept[n] = i;
            ++n;
          }
        }
        S24_CHECK(n == 2, kInvalidMask, "mask group at row ", r, ", group ", g, " (columns ", 4 * g,
                  "..", 4 * g + 3, ") keeps ", n, " entries; a 2:4 mask keeps exactly 2 of every 4");
        m.set_code(r, g, group_code(kept[0], kept[1]));
      }
  });
  return m;
}

Tensor Mask24::to_dense() const {
  S24_CHECK(device() == Device::kCPU, kDevice, "Mask24::to_dense needs a CPU mask");
  Tensor out = Tensor::matrix(rows_, cols_, DType::kU8);
  uint8_t* o = out.data<uint8_t>();
  for (int64_t r = 0; r < rows_; ++r)
    for (int64_t c = 0; c < cols_; ++c) o[r * cols_ + c] = kept(r, c) ? 1 : 0;
  return out;
}

Mask24 Mask24::transposed() const {
  S24_CHECK(device() == Device::kCPU, kDevice, "Mask24::transposed needs a CPU mask");
  S24_CHECK(rows_ % 4 == 0, kShape, "the transpose of a ", rows_, " x ", cols_,
            " mask is not 2:4: rows not divisible by 4");
  Tensor dense = to_dense();
  return from_dense(dense.view().t());
}

Mask24 Mask24::to(Device device) const {
  Mask24 m = *this;
  m.codes_ = codes_.to(device);
  return m;
}

void Mask24::check_codes(const char* op) const {
  auto fail = [&](int64_t r, int64_t g, uint8_t c) {
    S24_FAIL(kInvalidMask, op, ": the mask's row ", r, ", group ", g, " has code 0x", std::hex, int(c), std::dec,
             ", not one of the six valid codes");
  };
  if (device() == Device::kCUDA) {
    const int64_t i = cuda::first_invalid_code(*this);
    if (i < 0) return;
    const int64_t r = i / groups_per_row(), g = i % groups_per_row();
    uint8_t byte = 0;
    cuda::copy(&byte, false, codes_.data<uint8_t>() + r * row_bytes() + g / 2, true, 1);
    fail(r, g, uint8_t((byte >> (4 * (g % 2))) & 0xF));
  }
  for (int64_t r = 0; r < rows_; ++r)
    for (int64_t g = 0; g < groups_per_row(); ++g)
      if (!is_valid_group_code(code(r, g))) fail(r, g, code(r, g));
}

bool Mask24::operator==(const Mask24& other) const {
  if (rows_ != other.rows_ || cols_ != other.cols_) return false;
  if (rows_ * row_bytes() == 0) return true;  // memcmp takes no null pointers, even for 0 bytes
  return std::memcmp(codes_.data<uint8_t>(), other.codes_.data<uint8_t>(), size_t(rows_ * row_bytes())) == 0;
}

std::string Sparse24Matrix::describe() const {
  return detail::concat("2:4 ", dtype_name(dtype), "[", rows, " x ", cols, ", scale ", scale, ", ",
                        device_name(device()), "]");
}

void Sparse24Matrix::check(const char* op) const {
  S24_CHECK(values.defined() && mask.defined(), kValue, op, ": the 2:4 operand (", rows, " x ", cols,
            ") has no values or metadata (build it with make_sparse24 or a prune)");
  S24_CHECK(rows >= 0 && cols >= 0 && cols % 4 == 0, kShape, op, ": ", describe(), " needs columns divisible by 4");
  S24_CHECK(is_value_dtype(dtype) && values.dtype() == dtype, kDType, op, ": ", describe(), " holds values of dtype ",
            dtype_name(values.dtype()));
  S24_CHECK(values.view().is_matrix() && values.rows() == rows && values.cols() == cols / 2 &&
                values.view().is_row_major(),
            kShape, op, ": ", describe(), " has values ", values.view().describe(), ", expected ", rows, " x ",
            cols / 2, " row-major");
  S24_CHECK(mask.rows() == rows && mask.cols() == cols, kShape, op, ": ", describe(), " has metadata for ",
            mask.rows(), " x ", mask.cols());
  S24_CHECK(std::isfinite(scale) && scale > 0, kValue, op, ": ", describe(), " has scale ", scale,
            " (must be finite and > 0)");
  S24_CHECK(mask.device() == device(), kDevice, op, ": ", describe(), " has its metadata on ",
            device_name(mask.device()));
}

Sparse24Matrix Sparse24Matrix::to(Device device) const {
  Sparse24Matrix s = *this;
  s.values = values.to(device);
  s.mask = mask.to(device);
  if (hw_meta.defined()) s.hw_meta = hw_meta.to(device);
  return s;
}

const char* meta_layout_name(MetaLayout l) {
  switch (l) {
    case MetaLayout::kCanonical: return "canonical";
    case MetaLayout::kSm90K64: return "sm90-k64";
    case MetaLayout::kSm90K128: return "sm90-k128";
  }
  return "?";
}

Sm90Meta sm90_meta(MetaLayout layout, int64_t rows, int64_t cols, DType dtype) {
  S24_CHECK(layout != MetaLayout::kCanonical, kValue, "sm90_meta: the canonical layout has no sm90 geometry");
  const bool sixteen = dtype == DType::kF16 || dtype == DType::kBF16;
  const bool eight = dtype == DType::kF8E4M3 || dtype == DType::kF8E5M2 || dtype == DType::kI8;
  S24_CHECK(sixteen || eight, kDType, "the ", meta_layout_name(layout), " metadata layout needs 16-bit or 8-bit values (",
            "fp16, bf16, e4m3, e5m2, int8), not ", dtype_name(dtype));
  const int64_t k_align = sixteen ? 16 : 32;
  S24_CHECK(cols % k_align == 0, kShape, "the ", meta_layout_name(layout), " metadata layout needs K (columns, ", cols,
            ") divisible by ", k_align, " for ", dtype_name(dtype), " values");
  Sm90Meta m;
  m.atom_k = layout == MetaLayout::kSm90K64 ? 64 : 128;
  m.eight_bit = eight;
  m.m_padded = (rows + 63) / 64 * 64;
  m.k_padded = (cols + m.atom_k - 1) / m.atom_k * m.atom_k;
  return m;
}

Tensor to_sm90_meta(const Mask24& mask, MetaLayout layout, DType dtype) {
  const Sm90Meta g = sm90_meta(layout, mask.rows(), mask.cols(), dtype);
  mask.check_codes("to_sm90_meta");  // the GEMM reads the codes as they are
  Tensor out = Tensor::empty({g.bytes()}, DType::kU8, mask.device());
  fill_zeros(out);
  if (mask.device() == Device::kCUDA) {
    cuda::scatter_sm90_meta(out.data<uint8_t>(), mask, g);
    return out;
  }
  const uint8_t* in = mask.codes().data<uint8_t>();
  for (int64_t r = 0; r < mask.rows(); ++r)
    for (int64_t b = 0; b < mask.row_bytes(); ++b) out.data<uint8_t>()[g.offset(r, b)] = in[r * mask.row_bytes() + b];
  return out;
}

Sparse24Matrix to_storage(const Sparse24Matrix& s, DType dtype, MetaLayout layout) {
  S24_CHECK(is_input_dtype(s.dtype) && s.scale == 1.f, kDType, "to_storage: the values must be fp32, fp16 or bf16 "
            "without a scale, got ", dtype_name(s.dtype), " with scale ", s.scale);
  S24_CHECK(is_input_dtype(dtype) || is_fp8(dtype), kDType, "to_storage: cannot re-store values as ",
            dtype_name(dtype), " (fp32, fp16, bf16, e4m3 or e5m2)");
  if (dtype == s.dtype && layout == s.layout) return s;
  Sparse24Matrix out;
  out.rows = s.rows;
  out.cols = s.cols;
  out.dtype = dtype;
  out.mask = s.mask;
  out.values = Tensor::matrix(s.values.rows(), s.values.cols(), dtype, Layout::kRowMajor, s.device());
  if (is_fp8(dtype)) {
    out.scale = fp8_scale(finite_amax(s.values), dtype);
    quantize_into(out.values, s.values, out.scale);
  } else {
    copy_into(out.values, s.values);
  }
  out.layout = layout;
  if (layout != MetaLayout::kCanonical) out.hw_meta = to_sm90_meta(out.mask, layout, dtype);
  return out;
}

Sparse24Matrix make_sparse24(int64_t rows, int64_t cols, DType dtype, float scale, Device device, MetaLayout layout) {
  S24_CHECK(cols % 4 == 0, kShape, "a 2:4 matrix needs columns divisible by 4, got ", rows, " x ", cols);
  S24_CHECK(is_value_dtype(dtype), kDType, "2:4 values cannot be stored as ", dtype_name(dtype));
  S24_CHECK(std::isfinite(scale) && scale > 0, kValue, "a 2:4 matrix's scale must be finite and > 0, got ", scale);
  Sparse24Matrix s;
  s.rows = rows;
  s.cols = cols;
  s.dtype = dtype;
  s.scale = scale;
  s.values = Tensor::matrix(rows, cols / 2, dtype, Layout::kRowMajor, device);
  s.mask = Mask24::empty(rows, cols, device);
  s.layout = layout;
  if (layout != MetaLayout::kCanonical) {
    const int64_t bytes = sm90_meta(layout, rows, cols, dtype).bytes();
    s.hw_meta = Tensor::empty({bytes}, DType::kU8, device);
    fill_zeros(s.hw_meta);
  }
  return s;
}

}  // namespace sparse24
