// File primitives (files.h): regular-file reading, and AtomicFile (write to
// "<path>.tmp.<pid>.<n>", fsync, rename over the target).
#include "io/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "sparse24/error.h"

namespace sparse24 {

File open_regular_file(const std::string& path) {
  struct stat st {};
  S24_CHECK(::stat(path.c_str(), &st) == 0, kIO, path, ": cannot open: ", std::strerror(errno));
  S24_CHECK(S_ISREG(st.st_mode), kIO, path, ": not a regular file");
  File f(std::fopen(path.c_str(), "rb"));
  S24_CHECK(f, kIO, path, ": cannot open: ", std::strerror(errno));
  return f;
}

int64_t file_size(const std::string& path, std::FILE* f) {
  S24_CHECK(std::fseek(f, 0, SEEK_END) == 0, kIO, path, ": cannot seek: ", std::strerror(errno));
  const long size = std::ftell(f);
  S24_CHECK(size >= 0, kIO, path, ": cannot tell the size: ", std::strerror(errno));
  S24_CHECK(std::fseek(f, 0, SEEK_SET) == 0, kIO, path, ": cannot seek: ", std::strerror(errno));
  return int64_t(size);
}

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  static std::atomic<unsigned> counter{0};
  tmp_ = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  f_ = std::fopen(tmp_.c_str(), "wb");
  S24_CHECK(f_, kIO, path, ": cannot create temporary file ", tmp_, ": ", std::strerror(errno),
            " (file left unchanged)");
}

AtomicFile::~AtomicFile() {
  if (f_) std::fclose(f_);
  if (!tmp_.empty()) std::remove(tmp_.c_str());
}

void AtomicFile::fail(const char* step, int err) {
  if (f_) std::fclose(f_);
  f_ = nullptr;
  std::remove(tmp_.c_str());
  tmp_.clear();
  S24_FAIL(kIO, path_, ": ", step, " failed: ", std::strerror(err), " (file left unchanged)");
}

void AtomicFile::write(const void* data, size_t n) {
  S24_CHECK(f_, kInternal, path_, ": write after commit or failure");
  if (n && std::fwrite(data, 1, n, f_) != n) fail("write", errno);
}

void AtomicFile::commit() {
  S24_CHECK(f_, kInternal, path_, ": commit after commit or failure");
  if (std::fflush(f_) != 0) fail("write", errno);
  if (::fsync(::fileno(f_)) != 0) fail("fsync", errno);
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) fail("close", errno);
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename", errno);
  tmp_.clear();
  // Make the rename itself durable. Best effort: the data is complete and in place already.
  const size_t slash = path_.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

}  // namespace sparse24
