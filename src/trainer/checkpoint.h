// trainer/checkpoint.h: the checkpoint file format, its atomic writer and validating reader, and
// tensor blobs.
//
// File layout (version 1; every integer little-endian):
//   offset 0   8 bytes   magic "S24CKPT\0"
//              u32       format version = 1
//              u64 L     length of the configuration, then L bytes: the configuration JSON (UTF-8,
//                        stored verbatim: this file neither parses nor validates it)
//              u32 N     number of named blobs, then N times:
//                u32 K   name length (K >= 1), then K bytes: the name (UTF-8; unique in the file)
//                u64 M   blob length, then M bytes: the blob
//   last 8     u64       CRC-64/XZ of every byte before it (offset 0 up to the checksum)
// CRC-64/XZ (as xz and Go's crc64.ECMA): reflected polynomial 0xC96C5795D7870F42, initial value and
// final xor 0xFFFFFFFFFFFFFFFF; crc64("123456789") = 0x995DC9BBDF1939FA. Nothing follows the
// checksum. The writer stores blobs in name order; the reader accepts any order.
//
// Reading checks the magic, the version, every length against the bytes that remain before the
// checksum before allocating anything (a corrupt length cannot make it allocate more than the file
// size), unique non-empty names, no bytes between the last blob and the checksum, and the
// checksum. Every failure is kIO naming the file: "empty file", "not a sparse24 checkpoint (bad
// magic)", "unsupported version N", "truncated: ...", "checksum mismatch: file corrupt", ...
//
// Writing is atomic (AtomicFile): a temporary file beside the target, fsync, rename over the
// target, fsync of the directory. A failed write removes the temporary file and leaves an existing
// target byte for byte as it was; a successful one replaces it in one step.
//
// Tensor blobs (tensor_to_blob / tensor_from_blob), little-endian:
//   4 bytes "S24T", u32 dtype code, u32 rank R (1..4), R x i64 dims (>= 0), then the elements in
//   row-major (C) order: prod(dims) * dtype size bytes, nothing after.
//   dtype codes (fixed forever, independent of the DType enum): 0 fp32, 1 fp16, 2 bf16, 3 int8,
//   4 e4m3, 5 e5m2, 6 uint8, 7 int32. An int8 tensor's scale is not part of the blob.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "io/files.h"
#include "sparse24/tensor.h"

namespace sparse24::trainer {

constexpr char kCheckpointMagic[8] = {'S', '2', '4', 'C', 'K', 'P', 'T', '\0'};
constexpr uint32_t kCheckpointVersion = 1;

struct Checkpoint {
  std::string config_json;
  std::map<std::string, std::string> blobs;
  std::string source;  // the path it was read from (empty if built in memory)

  bool has(const std::string& name) const { return blobs.count(name) != 0; }
  // The blob `name`; kIO "<source>: checkpoint has no blob 'name'" if absent.
  const std::string& blob(const std::string& name) const;
};

// Writes a checkpoint atomically. Names must be non-empty (kValue).
void write_checkpoint(const std::string& path, const std::string& config_json,
                      const std::map<std::string, std::string>& blobs);
inline void write_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  write_checkpoint(path, ckpt.config_json, ckpt.blobs);
}
// Reads and verifies a checkpoint (see above); kIO on any problem.
Checkpoint read_checkpoint(const std::string& path);

// CRC-64/XZ, chainable: crc64(b, nb, crc64(a, na)) == crc64(a + b).
uint64_t crc64(const void* data, size_t n, uint64_t crc = 0);

// ---- Tensor blobs ------------------------------------------------------------------------------

// A CPU tensor of any dtype, rank 1..4 and strides as a blob (kDevice for a CUDA tensor: copy it
// to the CPU first).
std::string tensor_to_blob(const TensorView& t);
// "[2 x 3]": a shape as the blob errors write it.
std::string shape_text(const int64_t* shape, int rank);
// A blob's shape, without reading its data; kIO naming `what` if the blob is malformed.
std::vector<int64_t> tensor_blob_shape(const std::string& blob, const std::string& what);
// A contiguous CPU tensor from a blob; kIO naming `what` (e.g. "ckpt.bin: blob 'wte'") if the blob
// is malformed.
Tensor tensor_from_blob(const std::string& blob, const std::string& what);
// Restores a blob into an existing CPU tensor (any strides): kIO if malformed, kDType / kShape
// naming `what` and both types or shapes if they differ from dst's.
void tensor_from_blob_into(const std::string& blob, const TensorView& dst, const std::string& what);

}  // namespace sparse24::trainer
