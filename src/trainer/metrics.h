// trainer/metrics.h: the training log, one JSON object per line (JSONL).
//
// Each write() appends one line {"name": number, ..., "name": "text", ...} and flushes it, so a
// killed run loses at most the line being written. Numbers are printed in the shortest form that
// reads back to the same double (std::to_chars), so the log round-trips exactly; NaN and +-Inf,
// which JSON lacks, are written as null and read back as NaN.
//
// Appending to a file whose last line is incomplete (a run killed mid-write) first cuts that
// partial line off, so the new lines start on a line of their own.
//
// read_metrics parses what write() produces (and any flat JSON object per line whose values are
// numbers, strings, true/false or null): blank lines are skipped, an incomplete last line (no
// newline, not parseable) is skipped silently, any other malformed line is kIO
// "<path>:<line>: <problem>".
#pragma once

#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sparse24::trainer {

class MetricsLog {
 public:
  // append = false truncates (or creates) the file; true appends (creating it if missing).
  MetricsLog(const std::string& path, bool append);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // One line: the numbers first, then the strings, each in the order given. Names must be unique
  // within the line (kValue otherwise). kIO if the line cannot be written.
  void write(const std::vector<std::pair<std::string, double>>& numbers,
             const std::vector<std::pair<std::string, std::string>>& strings = {});
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

struct MetricsRow {
  std::map<std::string, double> numbers;       // null reads as NaN; true/false as 1/0
  std::map<std::string, std::string> strings;
  int line = 0;                                // 1-based line number in the file

  bool has(const std::string& key) const { return numbers.count(key) != 0; }
  // The number `key`, or `fallback` if absent (or a string).
  double get(const std::string& key, double fallback = NAN) const {
    const auto it = numbers.find(key);
    return it == numbers.end() ? fallback : it->second;
  }
};

std::vector<MetricsRow> read_metrics(const std::string& path);
// One flat JSON object (the same grammar): numbers, strings, true/false (1/0), null (NaN).
// Malformed text throws kIO naming `what`.
MetricsRow parse_json_object(const std::string& text, const std::string& what);

// JSON text of a number as write() prints it: shortest round-trip form, "null" for NaN/Inf.
std::string json_number(double v);
// A JSON string literal (quotes and escapes added; control characters as \u00XX).
std::string json_string(const std::string& s);

}  // namespace sparse24::trainer
