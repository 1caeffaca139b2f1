// apps/cli_args.h: a small command-line parser: positionals plus --name value / --flag options,
// every option declared up front so that a typo is an error, not silently ignored.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sparse24::cli {

class Args {
 public:
  // argv after the sub-command. `valued` take a value, `flags` don't.
  Args(int argc, char** argv, const std::vector<std::string>& valued, const std::vector<std::string>& flags);

  const std::vector<std::string>& positional() const { return positional_; }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  int64_t get_int(const std::string& name, int64_t fallback) const;
  // An integer option that must lie in [lo, hi] (kValue naming the option otherwise).
  int64_t get_int(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const;
  uint64_t get_u64(const std::string& name, uint64_t fallback) const;
  std::optional<float> get_float(const std::string& name) const;
  // Throws kValue unless exactly n positionals were given; `usage` names them.
  void expect_positional(size_t n, const std::string& usage) const;

 private:
  std::vector<std::string> positional_;
  std::map<std::string, std::string> values_;
};

}  // namespace sparse24::cli
