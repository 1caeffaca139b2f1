#include "sparse24/error.h"

namespace sparse24 {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kShape: return "shape error";
    case ErrorKind::kDType: return "dtype error";
    case ErrorKind::kInvalidMask: return "invalid mask";
    case ErrorKind::kNonFinite: return "non-finite value";
    case ErrorKind::kValue: return "bad value";
    case ErrorKind::kIO: return "file error";
    case ErrorKind::kDevice: return "device error";
    case ErrorKind::kInternal: return "internal error";
  }
  return "error";
}

Error::Error(ErrorKind kind, const std::string& message)
    : std::runtime_error(std::string(error_kind_name(kind)) + ": " + message), kind_(kind) {}

}  // namespace sparse24
