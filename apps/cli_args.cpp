#include "cli_args.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "sparse24/error.h"

namespace sparse24::cli {

Args::Args(int argc, char** argv, const std::vector<std::string>& valued, const std::vector<std::string>& flags) {
  auto known = [](const std::vector<std::string>& list, const std::string& s) {
    return std::find(list.begin(), list.end(), s) != list.end();
  };
  bool options_end = false;  // after a "--", every argument is positional (a file named "--x")
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--" && !options_end) {
      options_end = true;
      continue;
    }
    if (options_end || a.rfind("--", 0) != 0) {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    const size_t eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (known(flags, name)) {
      S24_CHECK(!inline_value, kValue, "option --", name, " takes no value");
      values_[name] = "1";
    } else if (known(valued, name)) {
      if (!inline_value) {
        S24_CHECK(i + 1 < argc, kValue, "option --", name, " needs a value");
        value = argv[++i];
      }
      values_[name] = value;
    } else {
      S24_FAIL(kValue, "unknown option --", name);
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  return get(name).value_or(fallback);
}

int64_t Args::get_int(const std::string& name, int64_t fallback) const {
  const auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v->c_str(), &end, 10);
  S24_CHECK(errno == 0 && end != v->c_str() && *end == '\0', kValue, "--", name, " expects an integer, got '", *v, "'");
  return x;
}

int64_t Args::get_int(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const {
  const int64_t v = get_int(name, fallback);
  S24_CHECK(v >= lo && v <= hi, kValue, "--", name, " must be in [", lo, ", ", hi, "], got ", v);
  return v;
}

uint64_t Args::get_u64(const std::string& name, uint64_t fallback) const {
  const auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const unsigned long long x = std::strtoull(v->c_str(), &end, 10);
  S24_CHECK(errno == 0 && end != v->c_str() && *end == '\0' && (*v)[0] != '-', kValue, "--", name,
            " expects a non-negative integer, got '", *v, "'");
  return x;
}

std::optional<float> Args::get_float(const std::string& name) const {
  const auto v = get(name);
  if (!v) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const float x = std::strtof(v->c_str(), &end);
  S24_CHECK(end != v->c_str() && *end == '\0', kValue, "--", name, " expects a number, got '", *v, "'");
  S24_CHECK(errno == 0, kValue, "--", name, " is ", *v, ", outside the range of fp32 (its normal numbers span ",
            "1.2e-38 to 3.4e38 in magnitude)");
  return x;
}

void Args::expect_positional(size_t n, const std::string& usage) const {
  S24_CHECK(positional_.size() == n, kValue, "expected ", n, " argument", (n == 1 ? "" : "s"), " (", usage,
            "), got ", positional_.size());
}

}  // namespace sparse24::cli
