// sparse24/error.h: the one exception type of the library, and the check macro that throws it.
//
// Every bad input (shape, dtype, invalid mask group, non-finite value, unreadable or corrupt
// file) is reported by throwing sparse24::Error with a message that names the problem and, where
// there is one, the offending position. Values clamp or overflow only as docs/DTYPES.md says;
// an invalid mask is never silently mis-encoded.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace sparse24 {

// The category lets callers (the CLI, tests) react without parsing the message.
enum class ErrorKind {
  kShape,        // dimensions wrong, not divisible by 4 (or by the block an op needs), mismatched
  kDType,        // unsupported or mismatched dtype
  kInvalidMask,  // a mask group without exactly two ones
  kNonFinite,    // NaN or Inf where the non-finite policy forbids it
  kValue,        // a bad scalar argument (scale <= 0, alpha NaN, ...)
  kIO,           // unreadable, malformed, truncated or unwritable file
  kDevice,       // CUDA missing, no GPU, or an operation not available on a device
  kInternal,     // a broken invariant of the library itself (a bug: please report)
};

const char* error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message);
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

namespace detail {
// Builds a message from any streamable parts: S24_FAIL(kShape, "rows ", r, " not divisible by 4").
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace detail

}  // namespace sparse24

#define S24_FAIL(kind, ...) \
  throw ::sparse24::Error(::sparse24::ErrorKind::kind, ::sparse24::detail::concat(__VA_ARGS__))

#define S24_CHECK(cond, kind, ...) \
  do {                             \
    if (!(cond)) S24_FAIL(kind, __VA_ARGS__); \
  } while (0)
