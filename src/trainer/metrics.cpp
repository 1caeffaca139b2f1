// The JSONL training log: see metrics.h.
#include "trainer/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <set>

#include "io/files.h"
#include "sparse24/error.h"

namespace sparse24::trainer {

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round-trip form
  return std::string(buf, r.ptr);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char esc[8];
          std::snprintf(esc, sizeof(esc), "\\u%04x", c);
          out += esc;
        } else {
          out += ch;  // UTF-8 bytes pass through
        }
    }
  }
  return out + "\"";
}

// ---- MetricsLog --------------------------------------------------------------------------------

namespace {

// If the file's last line has no newline, cuts it off (a run killed mid-line).
void drop_partial_last_line(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return;  // missing: append creates it
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(f, std::fclose);
  S24_CHECK(std::fseek(f, 0, SEEK_END) == 0, kIO, path, ": cannot seek: ", std::strerror(errno));
  long end = std::ftell(f);
  S24_CHECK(end >= 0, kIO, path, ": cannot tell the size: ", std::strerror(errno));
  long keep = end;  // bytes to keep: up to and including the last '\n'
  char buf[4096];
  while (keep > 0) {
    const long chunk = keep < long(sizeof(buf)) ? keep : long(sizeof(buf));
    S24_CHECK(std::fseek(f, keep - chunk, SEEK_SET) == 0, kIO, path, ": cannot seek: ", std::strerror(errno));
    S24_CHECK(std::fread(buf, 1, size_t(chunk), f) == size_t(chunk), kIO, path, ": read error");
    long i = chunk;
    while (i > 0 && buf[i - 1] != '\n') --i;
    if (i > 0) {
      keep = keep - chunk + i;
      break;
    }
    keep -= chunk;
  }
  if (keep == end) return;
  S24_CHECK(::truncate(path.c_str(), keep) == 0, kIO, path, ": cannot cut off the incomplete last line: ",
            std::strerror(errno));
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, bool append) : path_(path) {
  if (append) drop_partial_last_line(path);
  f_ = std::fopen(path.c_str(), append ? "ab" : "wb");
  S24_CHECK(f_, kIO, path, ": cannot open the metrics log for ", append ? "appending" : "writing", ": ",
            std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const std::vector<std::pair<std::string, double>>& numbers,
                       const std::vector<std::pair<std::string, std::string>>& strings) {
  std::set<std::string> seen;
  std::string line = "{";
  auto key = [&](const std::string& k) {
    S24_CHECK(seen.insert(k).second, kValue, path_, ": metric '", k, "' given twice in one line");
    if (line.size() > 1) line += ", ";
    line += json_string(k) + ": ";
  };
  for (const auto& [k, v] : numbers) {
    key(k);
    line += json_number(v);
  }
  for (const auto& [k, v] : strings) {
    key(k);
    line += json_string(v);
  }
  line += "}\n";
  S24_CHECK(std::fwrite(line.data(), 1, line.size(), f_) == line.size() && std::fflush(f_) == 0, kIO,
            path_, ": cannot write the metrics log: ", std::strerror(errno));
}

// ---- Reading -----------------------------------------------------------------------------------

namespace {

// A parser for one line holding a flat JSON object. Errors are returned, not thrown, so that the
// caller can forgive an incomplete last line.
class LineParser {
 public:
  explicit LineParser(const std::string& s) : s_(s) {}

  // Parses the line into row; returns an empty string on success, else the problem.
  std::string parse(MetricsRow& row) {
    ws();
    if (!eat('{')) return at("expected '{'");
    ws();
    if (!eat('}')) {
      for (;;) {
        ws();
        std::string k;
        if (peek() != '"') return at("expected a quoted key");
        if (!string_literal(k)) return error_;
        ws();
        if (!eat(':')) return at("expected ':'");
        ws();
        const char c = peek();
        row.numbers.erase(k);
        row.strings.erase(k);
        if (c == '"') {
          std::string v;
          if (!string_literal(v)) return error_;
          row.strings[k] = v;
        } else if (word("null")) {
          row.numbers[k] = NAN;
        } else if (word("true")) {
          row.numbers[k] = 1.0;
        } else if (word("false")) {
          row.numbers[k] = 0.0;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
          double v;
          if (!number(v)) return error_;
          row.numbers[k] = v;
        } else if (c == '{' || c == '[') {
          return at("nested objects and arrays are not supported");
        } else {
          return at("expected a value");
        }
        ws();
        if (eat('}')) break;
        if (!eat(',')) return at("expected ',' or '}'");
      }
    }
    ws();
    if (i_ != s_.size()) return at("unexpected text after the object");
    return {};
  }

 private:
  std::string at(const std::string& what) {
    error_ = what + " at column " + std::to_string(i_ + 1);
    return error_;
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool word(const char* w) {
    const size_t n = std::strlen(w);
    if (s_.compare(i_, n, w) != 0) return false;
    i_ += n;
    return true;
  }
  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }
  bool hex4(uint32_t& v) {
    v = 0;
    for (int k = 0; k < 4; ++k, ++i_) {
      const char c = peek();
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return at("bad \\u escape"), false;
      v = v * 16 + uint32_t(d);
    }
    return true;
  }
  bool string_literal(std::string& out) {
    ++i_;  // the opening quote
    for (;;) {
      if (i_ >= s_.size()) return at("unterminated string"), false;
      const char c = s_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return at("control character in a string"), false;
      if (c != '\\') {
        out += c;
        continue;
      }
      const char e = peek();
      ++i_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {  // a surrogate pair
            const size_t save = i_;
            i_ += 2;
            uint32_t lo;
            if (!hex4(lo)) return false;
            if (lo >= 0xDC00 && lo < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              i_ = save;
            }
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --i_;
          return at("bad escape in a string"), false;
      }
    }
  }
  bool number(double& v) {
    const size_t start = i_;
    while (i_ < s_.size() && std::strchr("+-0123456789.eE", s_[i_]) && s_[i_] != '\0') ++i_;
    const char* b = s_.data() + start;
    const char* e = s_.data() + i_;
    const auto r = std::from_chars(b, e, v);
    if (r.ec != std::errc() || r.ptr != e) {
      i_ = start;
      return at("malformed number"), false;
    }
    return true;
  }

  const std::string& s_;
  size_t i_ = 0;
  std::string error_;
};

}  // namespace

MetricsRow parse_json_object(const std::string& text, const std::string& what) {
  MetricsRow row;
  const std::string err = LineParser(text).parse(row);
  S24_CHECK(err.empty(), kIO, what, ": malformed JSON: ", err);
  return row;
}

std::vector<MetricsRow> read_metrics(const std::string& path) {
  const File f = open_regular_file(path);  // names the path: missing, a directory, ...
  std::string text(size_t(file_size(path, f.get())), '\0');
  S24_CHECK(std::fread(text.data(), 1, text.size(), f.get()) == text.size(), kIO, path, ": read error: ",
            std::strerror(errno));
  std::vector<MetricsRow> rows;
  size_t pos = 0;
  for (int line_no = 1; pos < text.size(); ++line_no) {
    const size_t nl = text.find('\n', pos);
    const bool complete = nl != std::string::npos;
    const std::string line = text.substr(pos, complete ? nl - pos : std::string::npos);
    pos = complete ? nl + 1 : text.size();
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    MetricsRow row;
    row.line = line_no;
    const std::string err = LineParser(line).parse(row);
    if (err.empty()) {
      rows.push_back(std::move(row));
    } else if (complete) {
      S24_FAIL(kIO, path, ":", line_no, ": malformed metrics line: ", err);
    }  // an incomplete last line: a run killed mid-write, skipped
  }
  return rows;
}

}  // namespace sparse24::trainer
