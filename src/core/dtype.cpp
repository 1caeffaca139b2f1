#include "sparse24/dtype.h"

#include <cstring>

#include "sparse24/error.h"

namespace sparse24 {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "fp32";
    case DType::kF16: return "fp16";
    case DType::kBF16: return "bf16";
    case DType::kI8: return "int8";
    case DType::kF8E4M3: return "e4m3";
    case DType::kF8E5M2: return "e5m2";
    case DType::kU8: return "uint8";
    case DType::kI32: return "int32";
  }
  return "?";
}

DType parse_dtype(const char* name) {
  struct Alias { const char* name; DType t; };
  static const Alias kAliases[] = {
      {"fp32", DType::kF32},  {"float32", DType::kF32},    {"fp16", DType::kF16},
      {"float16", DType::kF16}, {"bf16", DType::kBF16},    {"bfloat16", DType::kBF16},
      {"int8", DType::kI8},   {"e4m3", DType::kF8E4M3},    {"fp8_e4m3", DType::kF8E4M3},
      {"e5m2", DType::kF8E5M2}, {"fp8_e5m2", DType::kF8E5M2}, {"uint8", DType::kU8},
      {"int32", DType::kI32}};
  S24_CHECK(name != nullptr, kDType, "parse_dtype: a null name");
  for (const Alias& a : kAliases)
    if (std::strcmp(a.name, name) == 0) return a.t;
  S24_FAIL(kDType, "unknown dtype '", name, "' (expected fp32, fp16, bf16, int8, e4m3, e5m2, uint8, int32)");
}

float dtype_max(DType t) {
  switch (t) {
    case DType::kF32: return 3.40282347e38f;
    case DType::kF16: return 65504.f;
    case DType::kBF16: return 3.38953139e38f;
    case DType::kI8: return 127.f;
    case DType::kF8E4M3: return 448.f;
    case DType::kF8E5M2: return 57344.f;
    case DType::kU8: return 255.f;
    case DType::kI32: return 2147483647.f;
  }
  return 0.f;
}

}  // namespace sparse24
