// sparse24/npy.h: reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0).
//
// Reads little-endian float64/float32/float16, int8/uint8/bool and int16/32/64, uint16/32/64
// arrays of rank 1 to 4 in C or Fortran order (a Fortran-order matrix becomes a column-major
// view: no transpose; rank 3-4 Fortran arrays are converted to C order). float64 and the wider
// integers are converted to fp32 (the transforms work in fp32). Malformed, truncated or
// unsupported files, and files with trailing bytes after the data, throw kIO with the file name
// and what is wrong; so do empty arrays with more than 2^32 elements along their non-zero
// dimensions (loops over the empty rows of a 2^61 x 0 matrix would never end). Writes are
// atomic: the data goes to a temporary file beside the target, which is then renamed over it, so
// an existing file is never left half-written.
#pragma once

#include <string>

#include "sparse24/tensor.h"

namespace sparse24 {

struct NpyArray {
  Tensor tensor;      // on the CPU
  std::string descr;  // the file's dtype descriptor, e.g. "<f8"
};

NpyArray read_npy(const std::string& path);
// Writes fp32 ('<f4'), fp16 ('<f2'), int8 ('|i1') or uint8 ('|u1') tensors of any rank; other
// dtypes throw kDType (numpy has no bf16/fp8: convert first), rank 0 or > 4 throws kShape.
void write_npy(const std::string& path, const TensorView& t);

}  // namespace sparse24
