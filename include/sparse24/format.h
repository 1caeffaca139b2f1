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
#include <string>

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
  // Throws kInvalidMask naming `op` and the first group whose code is not one of the six valid
  // ones (a mask from empty() holds none until every code is set). A CUDA mask is checked by a
  // kernel, and the call synchronises.
  void check_codes(const char* op) const;

 private:
  int64_t rows_ = 0, cols_ = 0;
  Tensor codes_;
};

// Metadata layouts a Sparse24Matrix can carry besides the canonical one (docs/FORMAT.md).
enum class MetaLayout : uint8_t {
  kCanonical,  // only the canonical metadata (mask)
  kSm90K64,    // also CUTLASS's sm90 sparse-GEMM metadata for a K tile of 64 (hw_meta)
  kSm90K128,   // the same for K tiles of 128 or more
};
const char* meta_layout_name(MetaLayout l);  // "canonical", "sm90-k64", "sm90-k128"

// The sm90 metadata of an M x K 2:4 matrix with 16-bit (fp16, bf16) or 8-bit (fp8, int8) values:
// the canonical bytes at other addresses, in a buffer of m_padded x k_padded / 8 bytes (M rounded
// up to 64, K to the atom; padding zero). Canonical byte b of row m (groups 2b and 2b + 1, columns
// 8b .. 8b + 7) goes to offset(m, b).
struct Sm90Meta {
  int64_t m_padded = 0, k_padded = 0;
  int atom_k = 128;      // min(K tile, 128)
  bool eight_bit = false;
  int64_t bytes() const { return m_padded * k_padded / 8; }
  S24_HD int64_t offset(int64_t m, int64_t b) const {
    const int64_t k = 8 * b, atom = k / atom_k, kk = k % atom_k;
    const int64_t slab = atom * m_padded * atom_k / 8;  // each atom of K columns is one slab
    if (eight_bit) return slab + m * (atom_k / 8) + kk / 8;
    const int64_t n = atom_k / 32;
    return slab + ((kk >> 3) & 1) + 2 * ((m >> 3) & 1) + 4 * ((kk >> 5) % n) + 4 * n * (m & 7) +
           32 * n * ((kk >> 4) & 1) + 64 * n * ((m >> 4) & 3) + 256 * n * (m >> 6);
  }
};
// The sm90 metadata geometry of a rows x cols matrix of `dtype` values; throws kDType for values
// that are not 16- or 8-bit and kShape for K not a multiple of 16 (16-bit) or 32 (8-bit).
Sm90Meta sm90_meta(MetaLayout layout, int64_t rows, int64_t cols, DType dtype);

// A compressed 2:4 matrix: kept values (any value dtype, with a per-tensor scale) plus metadata.
struct Sparse24Matrix {
  int64_t rows = 0, cols = 0;  // the dense shape; groups run along cols
  DType dtype = DType::kF32;   // of the stored values
  float scale = 1.f;           // real value = stored value * scale
  MetaLayout layout = MetaLayout::kCanonical;  // which hw_meta it also carries
  Tensor values;               // [rows x cols/2] row-major
  Mask24 mask;                 // canonical metadata (always present)
  Tensor hw_meta;              // uint8 [sm90_meta(...).bytes()] when layout is a sm90 one

  Device device() const { return values.device(); }
  Sparse24Matrix to(Device device) const;
  // "2:4 e4m3[36 x 60, scale 0.02, cpu]": how error messages name the matrix.
  std::string describe() const;
  // Throws unless the fields agree (every reader of the values trusts them): values and mask
  // present (kValue), cols divisible by 4 and values rows x cols/2 row-major with a rows x cols
  // mask (kShape), a value dtype that the values have (kDType), a finite scale > 0 (kValue), the
  // mask on the values' device (kDevice). Messages start with `op` and describe() (formatted only
  // on failure: this runs in every product).
  void check(const char* op) const;
};

// Allocates a compressed matrix (values and canonical metadata uninitialised; hw_meta, for a sm90
// layout, zero-filled so that its padding is zero).
Sparse24Matrix make_sparse24(int64_t rows, int64_t cols, DType dtype, float scale, Device device,
                             MetaLayout layout = MetaLayout::kCanonical);
// A compressed matrix (fp32, fp16 or bf16 values without a scale; CPU or CUDA) re-stored with
// the same mask as `dtype`: fp32/fp16/bf16 round to nearest even (as compressing straight to
// that dtype does), e4m3/e5m2 are quantized with the per-tensor scale fp8_scale(finite_amax of
// the values) (tensor.h: quantize_into). A sm90 `layout` adds that metadata. Returns s itself
// when nothing changes. FP8 GEMMs need the scale of the values they read, known only after
// they are computed: this is how the layer's FP8 operands are made.
Sparse24Matrix to_storage(const Sparse24Matrix& s, DType dtype, MetaLayout layout = MetaLayout::kCanonical);
// The sm90 metadata of a canonical mask, on the mask's device (what the transform kernels write
// beside the canonical metadata when asked; this rewrites an existing mask). Throws kInvalidMask
// for a code that is not one of the six valid ones (Mask24::check_codes).
Tensor to_sm90_meta(const Mask24& mask, MetaLayout layout, DType dtype);

}  // namespace sparse24
