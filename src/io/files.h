// src/io/files.h: the file primitives every reader and writer of the library uses.
//
// Reading: open_regular_file and file_size, with errors that name the path.
// Writing: every file the library writes (.npy, token files, checkpoints, plots) goes through
// AtomicFile:
// the bytes go to a temporary file beside the target, which is flushed, fsynced and renamed over
// the target on commit(). A failure at any step, or destruction without commit(), removes the
// temporary file and leaves an existing target byte for byte as it was.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace sparse24 {

// A FILE* closed when it goes out of scope.
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// Opens a regular file for reading; kIO "<path>: cannot open: <reason>" or "<path>: not a regular
// file" (a directory, a device) otherwise.
File open_regular_file(const std::string& path);
// The size of an open file in bytes (the position is reset to the start); kIO on failure.
int64_t file_size(const std::string& path, std::FILE* f);

// A file written to "<path>.tmp.<pid>.<counter>" and renamed over `path` on commit(). Destroyed
// without commit() (an error, an exception), it removes the temporary file: `path` is untouched.
// Every failure throws kIO "<path>: <step> failed: <reason> (file left unchanged)".
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  // Flush, fsync, close, rename over the target, then fsync its directory (best effort).
  void commit();
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  [[noreturn]] void fail(const char* step, int err);
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
};

}  // namespace sparse24
