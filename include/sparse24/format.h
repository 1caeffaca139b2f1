// sparse24/format.h: the 2:4 mask and the compressed 2:4 matrix (docs/FORMAT.md).
//
// A 2:4 matrix keeps exactly two slots in every group of 4 consecutive elements along each row
// (the reduction dimension K of the sparse GEMM operand). Groups with fewer than two non-zeros
// still store two slots (zero fill), so the compressed shape never depends on the data.
//
// Canonical layout (MetaLayout::kCanonical), used by the CPU and as the exchange format:
//   values: rows x cols/2, row-major; row r holds, for g = 0..cols/4-1, the kept values of group g
//           in increasing column order (value[r][2g] at column 4g+i0, value[r][2g+1] at 4g+i1).
//   meta:   rows x ceil(cols/8) bytes, row-major; group g of row r is the nibble g%2 (low nibble
//           first) of byte r*row_bytes + g/2, holding the code i0 | (i1 << 2) with i0 < i1.
//           The six valid codes: 0x4 (0,1) 0x8 (0,2) 0xC (0,3) 0x9 (1,2) 0xD (1,3) 0xE (2,3).
// The metadata is also the mask: 4 bits per group of 4, i.e. one bit per element.
#pragma once

#include <cstdint>

#include "sparse24/tensor.h"

namespace sparse24 {

// The 4-bit code of a group keeping positions i0 < i1.
constexpr uint8_t group_code(int i0, int i1) { return uint8_t(i0 | (i1 << 2)); }
// True for the six valid codes.
constexpr bool is_valid_group_code(uint8_t c) {
  return (c & 3) < (c >> 2) && (c >> 2) <= 3 && c < 16;
}
// Bit i (0..3) set when position i is kept.
constexpr uint8_t group_code_bits(uint8_t c) { return uint8_t((1u << (c & 3)) | (1u << (c >> 2))); }

// Which positions of every group are kept: the canonical metadata.
class Mask24 {
 public:
  Mask24() = default;
  // Codes left uninitialised.
  static Mask24 empty(int64_t rows, int64_t cols, Device device = Device::kCPU);
  // From a dense 0/1 (any non-zero = keep) matrix of any dtype and layout, validated: a group
  // without exactly two kept entries throws kInvalidMask naming its row and group.
  static Mask24 from_dense(const TensorView& mask);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t groups_per_row() const { return cols_ / 4; }
  int64_t row_bytes() const { return (cols_ / 4 + 1) / 2; }
  Device device() const { return codes_.device(); }
  const Tensor& codes() const { return codes_; }  // U8 [rows x row_bytes]
  bool defined() const { return codes_.defined(); }

  // CPU accessors.
  uint8_t code(int64_t r, int64_t g) const;
  void set_code(int64_t r, int64_t g, uint8_t code) const;
  bool kept(int64_t r, int64_t c) const { return (group_code_bits(code(r, c / 4)) >> (c % 4)) & 1; }
  // A dense U8 0/1 matrix, rows x cols.
  Tensor to_dense() const;
  // The mask of the transpose (cols x rows); throws kInvalidMask if it is not 2:4, i.e. if this
  // mask is not transposable.
  Mask24 transposed() const;
  Mask24 to(Device device) const;
  bool operator==(const Mask24& other) const;  // same shape and codes (CPU)

 private:
  int64_t rows_ = 0, cols_ = 0;
  Tensor codes_;
};

// Metadata layouts a Sparse24Matrix can carry. The hardware layouts (Hopper CUTLASS, cuSPARSELt's
// opaque buffer) are added beside kCanonical by the GEMM backends that read them.
enum class MetaLayout : uint8_t { kCanonical };

// A compressed 2:4 matrix: kept values (any value dtype, with a per-tensor scale) plus metadata.
struct Sparse24Matrix {
  int64_t rows = 0, cols = 0;  // the dense shape; groups run along cols
  DType dtype = DType::kF32;   // of the stored values
  float scale = 1.f;           // real value = stored value * scale
  MetaLayout layout = MetaLayout::kCanonical;
  Tensor values;               // [rows x cols/2] row-major
  Mask24 mask;                 // canonical metadata

  Device device() const { return values.device(); }
  Sparse24Matrix to(Device device) const;
};

// Allocates a compressed matrix (values and metadata uninitialised).
Sparse24Matrix make_sparse24(int64_t rows, int64_t cols, DType dtype, float scale, Device device);

}  // namespace sparse24
