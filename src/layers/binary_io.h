// src/layers/binary_io.h: the versioned binary streams of the layer, optimizer and loss scaler.
//
// Every stream starts with an 8-byte magic and a uint32 version and ends with the magic reversed,
// so a stream that is truncated, of another kind or misaligned is reported (kIO), never half
// read. Values are written in the machine's byte order (little-endian on every supported host).
#pragma once

#include <cstdint>
#include <cstring>
#include <istream>
#include <ostream>
#include <string>
#include <type_traits>

#include "sparse24/error.h"

namespace sparse24::binio {

class Writer {
 public:
  Writer(std::ostream& os, const char* what) : os_(os), what_(what) {}
  void bytes(const void* p, size_t n) {
    os_.write(static_cast<const char*>(p), std::streamsize(n));
    S24_CHECK(os_.good(), kIO, what_, ": writing to the stream failed");
  }
  template <typename T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes(&v, sizeof v);
  }
  void header(const char (&magic)[9], uint32_t version) {
    bytes(magic, 8);
    put(version);
  }
  void trailer(const char (&magic)[9]) {
    char rev[8];
    for (int i = 0; i < 8; ++i) rev[i] = magic[7 - i];
    bytes(rev, 8);
  }

 private:
  std::ostream& os_;
  const char* what_;
};

class Reader {
 public:
  Reader(std::istream& is, const char* what) : is_(is), what_(what) {}
  void bytes(void* p, size_t n, const char* field) {
    is_.read(static_cast<char*>(p), std::streamsize(n));
    const auto got = size_t(is_.gcount());
    offset_ += got;
    S24_CHECK(got == n, kIO, what_, ": the stream is truncated: it ended after ", offset_,
              " bytes, while reading ", field, " (", n - got, " more bytes expected)");
  }
  template <typename T>
  T get(const char* field) {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    bytes(&v, sizeof v, field);
    return v;
  }
  // Checks the magic and returns the version, which must be in [1, max_version].
  uint32_t header(const char (&magic)[9], uint32_t max_version) {
    char m[8];
    bytes(m, 8, "the magic");
    S24_CHECK(std::memcmp(m, magic, 8) == 0, kIO, what_, ": bad magic (expected \"",
              std::string(magic, 8), "\"): not a stream of this kind, or misaligned");
    const auto version = get<uint32_t>("the version");
    S24_CHECK(version >= 1 && version <= max_version, kIO, what_, ": format version ", version,
              " is not supported (this build reads versions 1 to ", max_version, ")");
    return version;
  }
  void trailer(const char (&magic)[9]) {
    char m[8];
    bytes(m, 8, "the end marker");
    for (int i = 0; i < 8; ++i)
      S24_CHECK(m[i] == magic[7 - i], kIO, what_, ": bad end marker after ", offset_,
                " bytes: the stream is corrupt or was written by another version");
  }
  const char* what() const { return what_; }

 private:
  std::istream& is_;
  const char* what_;
  size_t offset_ = 0;
};

}  // namespace sparse24::binio
