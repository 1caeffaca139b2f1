// Loss-curve plots and the PNG writer: see plot.h.
#include "trainer/plot.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

#include "sparse24/error.h"
#include "io/files.h"
#include "trainer/metrics.h"

namespace sparse24::trainer {

Color palette(int i) {
  static const Color kTab10[10] = {{0x1f, 0x77, 0xb4}, {0xff, 0x7f, 0x0e}, {0x2c, 0xa0, 0x2c}, {0xd6, 0x27, 0x28},
                                   {0x94, 0x67, 0xbd}, {0x8c, 0x56, 0x4b}, {0xe3, 0x77, 0xc2}, {0x7f, 0x7f, 0x7f},
                                   {0xbc, 0xbd, 0x22}, {0x17, 0xbe, 0xcf}};
  return kTab10[((i % 10) + 10) % 10];
}

// ---- PNG ---------------------------------------------------------------------------------------

namespace {

uint32_t crc32(const unsigned char* p, size_t n, uint32_t crc) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t adler32(const unsigned char* p, size_t n) {
  uint32_t a = 1, b = 0;
  while (n) {
    const size_t k = std::min<size_t>(n, 5552);  // the most bytes before b can overflow
    for (size_t i = 0; i < k; ++i) {
      a += p[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
    p += k;
    n -= k;
  }
  return b << 16 | a;
}

void put_be32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out += char((v >> s) & 0xFF);
}

void chunk(std::string& out, const char* type, const std::string& data) {
  put_be32(out, uint32_t(data.size()));
  const size_t start = out.size();
  out.append(type, 4);
  out += data;
  put_be32(out, crc32(reinterpret_cast<const unsigned char*>(out.data() + start), out.size() - start, 0));
}

}  // namespace

std::string encode_png(int width, int height, const uint8_t* rgb) {
  S24_CHECK(width >= 1 && height >= 1, kValue, "PNG size ", width, " x ", height, " must be at least 1 x 1");
  S24_CHECK(int64_t(width) * height <= (int64_t(1) << 28), kValue, "PNG size ", width, " x ", height,
            " too large");
  // The raw scanlines: filter byte 0 (none), then the row's RGB bytes.
  const size_t row = size_t(width) * 3;
  std::string raw;
  raw.reserve((row + 1) * size_t(height));
  for (int y = 0; y < height; ++y) {
    raw += '\0';
    raw.append(reinterpret_cast<const char*>(rgb) + size_t(y) * row, row);
  }
  // zlib: CMF 0x78 (deflate, 32K window), FLG 0x01 (check bits: 0x7801 % 31 == 0), stored blocks
  // of at most 65535 bytes (BFINAL on the last, BTYPE 00, LEN, ~LEN), Adler-32 big-endian.
  std::string z = "\x78\x01";
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(raw.size() - pos, 65535);
    z += char(pos + n == raw.size() ? 1 : 0);
    z += char(n & 0xFF);
    z += char(n >> 8);
    z += char(~n & 0xFF);
    z += char((~n >> 8) & 0xFF);
    z.append(raw, pos, n);
    pos += n;
  } while (pos < raw.size());
  put_be32(z, adler32(reinterpret_cast<const unsigned char*>(raw.data()), raw.size()));

  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_be32(ihdr, uint32_t(width));
  put_be32(ihdr, uint32_t(height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, filter 0, no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", "");
  return png;
}

void write_png(const std::string& path, int width, int height, const uint8_t* rgb) {
  const std::string png = encode_png(width, height, rgb);
  AtomicFile out(path);
  out.write(png);
  out.commit();
}

// ---- Drawing -----------------------------------------------------------------------------------

namespace {

// 5x7 glyphs of printable ASCII (32..126): five column bytes each, bit 0 the top row, bit 6 the
// baseline; bit 7 is the descender row (g j p q y , ;).
constexpr uint8_t kFont[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, {0x00, 0x07, 0x00, 0x07, 0x00},  //  !"
    {0x14, 0x7F, 0x14, 0x7F, 0x14}, {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},  // #$%
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, {0x00, 0x1C, 0x22, 0x41, 0x00},  // &'(
    {0x00, 0x41, 0x22, 0x1C, 0x00}, {0x14, 0x08, 0x3E, 0x08, 0x14}, {0x08, 0x08, 0x3E, 0x08, 0x08},  // )*+
    {0x00, 0xE0, 0x60, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, {0x00, 0x60, 0x60, 0x00, 0x00},  // ,-.
    {0x20, 0x10, 0x08, 0x04, 0x02}, {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00},  // /01
    {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4B, 0x31}, {0x18, 0x14, 0x12, 0x7F, 0x10},  // 234
    {0x27, 0x45, 0x45, 0x45, 0x39}, {0x3C, 0x4A, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03},  // 567
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1E}, {0x00, 0x36, 0x36, 0x00, 0x00},  // 89:
    {0x00, 0xF6, 0x36, 0x00, 0x00}, {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14},  // ;<=
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06}, {0x32, 0x49, 0x79, 0x41, 0x3E},  // >?@
    {0x7E, 0x11, 0x11, 0x11, 0x7E}, {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22},  // ABC
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, {0x7F, 0x49, 0x49, 0x49, 0x41}, {0x7F, 0x09, 0x09, 0x09, 0x01},  // DEF
    {0x3E, 0x41, 0x49, 0x49, 0x7A}, {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00},  // GHI
    {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, {0x7F, 0x40, 0x40, 0x40, 0x40},  // JKL
    {0x7F, 0x02, 0x0C, 0x02, 0x7F}, {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E},  // MNO
    {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, {0x7F, 0x09, 0x19, 0x29, 0x46},  // PQR
    {0x46, 0x49, 0x49, 0x49, 0x31}, {0x01, 0x01, 0x7F, 0x01, 0x01}, {0x3F, 0x40, 0x40, 0x40, 0x3F},  // STU
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x3F, 0x40, 0x38, 0x40, 0x3F}, {0x63, 0x14, 0x08, 0x14, 0x63},  // VWX
    {0x07, 0x08, 0x70, 0x08, 0x07}, {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7F, 0x41, 0x41, 0x00},  // YZ[
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7F, 0x00}, {0x04, 0x02, 0x01, 0x02, 0x04},  // \]^
    {0x40, 0x40, 0x40, 0x40, 0x40}, {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78},  // _`a
    {0x7F, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20}, {0x38, 0x44, 0x44, 0x48, 0x7F},  // bcd
    {0x38, 0x54, 0x54, 0x54, 0x18}, {0x08, 0x7E, 0x09, 0x01, 0x02}, {0x18, 0xA4, 0xA4, 0xA4, 0x7C},  // efg
    {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00}, {0x40, 0x80, 0x84, 0x7D, 0x00},  // hij
    {0x7F, 0x10, 0x28, 0x44, 0x00}, {0x00, 0x41, 0x7F, 0x40, 0x00}, {0x7C, 0x04, 0x18, 0x04, 0x78},  // klm
    {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, {0xFC, 0x24, 0x24, 0x24, 0x18},  // nop
    {0x18, 0x24, 0x24, 0x24, 0xFC}, {0x7C, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20},  // qrs
    {0x04, 0x3F, 0x44, 0x40, 0x20}, {0x3C, 0x40, 0x40, 0x20, 0x7C}, {0x1C, 0x20, 0x40, 0x20, 0x1C},  // tuv
    {0x3C, 0x40, 0x30, 0x40, 0x3C}, {0x44, 0x28, 0x10, 0x28, 0x44}, {0x1C, 0xA0, 0xA0, 0xA0, 0x7C},  // wxy
    {0x44, 0x64, 0x54, 0x4C, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, {0x00, 0x00, 0x7F, 0x00, 0x00},  // z{|
    {0x00, 0x41, 0x36, 0x08, 0x00}, {0x08, 0x04, 0x08, 0x10, 0x08}};                                  // }~

constexpr int kGlyphAdvance = 6;  // 5 columns and a space
constexpr int kGlyphHeight = 8;  // 7 rows and the descender row

const Color kWhite{255, 255, 255}, kText{0x22, 0x22, 0x22}, kAxis{0x44, 0x44, 0x44}, kGrid{0xE6, 0xE6, 0xE6},
    kLegendBorder{0xBB, 0xBB, 0xBB};

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), px_(size_t(w) * size_t(h) * 3, 255) {}
  int width() const { return w_; }
  int height() const { return h_; }
  std::vector<uint8_t> take() { return std::move(px_); }

  // Blends color over pixel (x, y) with opacity a in [0, 1]; outside the canvas: nothing.
  void blend(int x, int y, Color c, float a) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_ || a <= 0.f) return;
    if (a > 1.f) a = 1.f;
    uint8_t* p = &px_[(size_t(y) * size_t(w_) + size_t(x)) * 3];
    const uint8_t src[3] = {c.r, c.g, c.b};
    for (int k = 0; k < 3; ++k) p[k] = uint8_t(float(p[k]) * (1.f - a) + float(src[k]) * a + 0.5f);
  }
  void fill(int x0, int y0, int x1, int y1, Color c) {  // [x0, x1) x [y0, y1)
    for (int y = std::max(y0, 0); y < std::min(y1, h_); ++y)
      for (int x = std::max(x0, 0); x < std::min(x1, w_); ++x) blend(x, y, c, 1.f);
  }
  void hline(int x0, int x1, int y, Color c) { fill(x0, y, x1 + 1, y + 1, c); }
  void vline(int x, int y0, int y1, Color c) { fill(x, y0, x + 1, y1 + 1, c); }
  void rect(int x0, int y0, int x1, int y1, Color c) {  // outline, inclusive corners
    hline(x0, x1, y0, c);
    hline(x0, x1, y1, c);
    vline(x0, y0, y1, c);
    vline(x1, y0, y1, c);
  }

  static int text_width(const std::string& s, int scale) {
    return s.empty() ? 0 : (int(s.size()) * kGlyphAdvance - 1) * scale;
  }
  // Text with its top-left corner at (x, y); up = true draws it rotated a quarter turn
  // counter-clockwise (reading upwards) with its bottom-left corner at (x, y).
  void text(int x, int y, const std::string& s, int scale, Color c, bool up = false) {
    for (size_t i = 0; i < s.size(); ++i) {
      const unsigned char ch = static_cast<unsigned char>(s[i]);
      const uint8_t* g = kFont[(ch >= 32 && ch <= 126 ? ch : '?') - 32];
      for (int col = 0; col < 5; ++col)
        for (int row = 0; row < kGlyphHeight; ++row) {
          if (!((g[col] >> row) & 1)) continue;
          const int u = int(i) * kGlyphAdvance + col;  // along the text
          for (int dy = 0; dy < scale; ++dy)
            for (int dx = 0; dx < scale; ++dx) {
              if (up)
                blend(x + row * scale + dy, y - u * scale - dx, c, 1.f);
              else
                blend(x + u * scale + dx, y + row * scale + dy, c, 1.f);
            }
        }
    }
  }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

// Anti-aliased strokes of one series: the coverage of every pixel of a clip rectangle (the max
// over the segments, so that joints are not drawn twice), blended once at the end.
class Stroke {
 public:
  Stroke(int x0, int y0, int x1, int y1, float width)
      : x0_(x0), y0_(y0), w_(x1 - x0 + 1), h_(y1 - y0 + 1), half_(width / 2), cov_(size_t(w_) * size_t(h_), 0.f) {}

  // The segment (ax, ay) - (bx, by) in pixel coordinates (pixel centers at integer + 0.5).
  void segment(double ax, double ay, double bx, double by) {
    const double r = half_ + 1.0;
    const int xa = std::max(0, int(std::floor(std::min(ax, bx) - r)) - x0_);
    const int xb = std::min(w_ - 1, int(std::ceil(std::max(ax, bx) + r)) - x0_);
    const int ya = std::max(0, int(std::floor(std::min(ay, by) - r)) - y0_);
    const int yb = std::min(h_ - 1, int(std::ceil(std::max(ay, by) + r)) - y0_);
    const double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    for (int y = ya; y <= yb; ++y)
      for (int x = xa; x <= xb; ++x) {
        const double px = x0_ + x + 0.5, py = y0_ + y + 0.5;
        double t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0.0;
        t = std::clamp(t, 0.0, 1.0);
        const double ex = px - (ax + t * dx), ey = py - (ay + t * dy);
        const float d = float(std::sqrt(ex * ex + ey * ey));
        const float c = std::clamp(half_ + 0.5f - d, 0.f, 1.f);
        float& slot = cov_[size_t(y) * size_t(w_) + size_t(x)];
        slot = std::max(slot, c);
      }
  }
  void dot(double cx, double cy, double radius) {
    const float saved = half_;
    half_ = float(radius);
    segment(cx, cy, cx, cy);
    half_ = saved;
  }
  // Sets ink[] (a w x h grid of the same origin, set by the caller) where the stroke covers.
  void mark(std::vector<uint8_t>& ink) const {
    for (size_t k = 0; k < cov_.size() && k < ink.size(); ++k)
      if (cov_[k] > 0.f) ink[k] = 1;
  }
  void paint(Canvas& canvas, Color c) const {
    for (int y = 0; y < h_; ++y)
      for (int x = 0; x < w_; ++x) canvas.blend(x0_ + x, y0_ + y, c, cov_[size_t(y) * size_t(w_) + size_t(x)]);
  }

 private:
  int x0_, y0_, w_, h_;
  float half_;
  std::vector<float> cov_;
};

// s, cut to at most max_w pixels at `scale` with "..." when it is wider.
std::string fit_text(const std::string& s, int scale, int max_w) {
  if (Canvas::text_width(s, scale) <= max_w) return s;
  std::string t = s;
  while (!t.empty() && Canvas::text_width(t + "...", scale) > max_w) t.pop_back();
  return t.empty() ? std::string() : t + "...";
}

// Ticks at multiples of a 1-2-5 step, about `target` of them over [lo, hi], and how to print them:
// fixed-point with as many decimals as the step needs, with a k/M/G/T suffix from 10^5 on
// (250000 -> "250k", 1.5e9 -> "1.5G"), and %g for tiny steps.
struct Ticks {
  double step;
  std::vector<double> values;
  double unit = 1;          // the labels show value / unit ...
  const char* suffix = "";  // ... followed by this
  int decimals = 0;         // digits after the point; -1: %.4g
};

Ticks nice_ticks(double lo, double hi, int target) {
  Ticks t;
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  t.step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const double eps = t.step * 1e-9;
  for (double k = std::ceil((lo - eps) / t.step); k * t.step <= hi + eps && t.values.size() < 1000; k += 1)
    t.values.push_back(k == 0 ? 0.0 : k * t.step);
  const double biggest = std::max(std::fabs(lo), std::fabs(hi));
  static const std::pair<double, const char*> kUnits[] = {{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}};
  if (biggest >= 1e5 && biggest < 1e18) {
    for (const auto& [unit, suffix] : kUnits)
      if (biggest >= unit) {
        t.unit = unit;
        t.suffix = suffix;
        break;
      }
  }
  const int d = std::max(0, -int(std::floor(std::log10(t.step / t.unit) + 1e-9)));
  t.decimals = (biggest >= 1e18 || d > 6) ? -1 : d;
  return t;
}

std::string tick_label(double v, const Ticks& t) {
  char buf[64];
  if (t.decimals < 0)
    std::snprintf(buf, sizeof(buf), "%.4g", v);
  else
    std::snprintf(buf, sizeof(buf), "%.*f%s", t.decimals, v / t.unit, v == 0 ? "" : t.suffix);
  return buf;
}

// The data range [lo, hi] of one coordinate over every finite point, or (0, 1) if none; widened
// when empty.
std::pair<double, double> data_range(const std::vector<Series>& series, bool y) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const Series& s : series)
    for (const auto& p : s.points)
      if (std::isfinite(p.first) && std::isfinite(p.second)) {
        const double v = y ? p.second : p.first;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
  if (!(lo <= hi)) return {0.0, 1.0};
  if (lo == hi) {
    const double pad = lo == 0 ? 1.0 : std::fabs(lo) * 0.1;
    return {lo - pad, hi + pad};
  }
  return {lo, hi};
}

}  // namespace

std::vector<uint8_t> render_plot(const std::string& title, const std::vector<Series>& series,
                                 const std::string& x_label, const std::string& y_label, const PlotOptions& opt) {
  S24_CHECK(opt.width >= 200 && opt.height >= 150 && opt.width <= 16384 && opt.height <= 16384, kValue,
            "plot size ", opt.width, " x ", opt.height, " must be between 200 x 150 and 16384 x 16384");
  S24_CHECK(opt.line_width > 0 && opt.line_width <= 50, kValue, "plot line width ", opt.line_width,
            " must be in (0, 50]");
  Canvas cv(opt.width, opt.height);

  // Ranges: the data's (y padded by 5%), overridden by the options.
  auto [xlo, xhi] = data_range(series, false);
  auto [ylo, yhi] = data_range(series, true);
  const double ypad = (yhi - ylo) * 0.05;
  ylo -= ypad;
  yhi += ypad;
  if (std::isfinite(opt.x_min)) xlo = opt.x_min;
  if (std::isfinite(opt.x_max)) xhi = opt.x_max;
  if (std::isfinite(opt.y_min)) ylo = opt.y_min;
  if (std::isfinite(opt.y_max)) yhi = opt.y_max;
  S24_CHECK(xlo < xhi && ylo < yhi, kValue, "plot axis range is empty: x [", xlo, ", ", xhi, "], y [", ylo,
            ", ", yhi, "]");
  // A span that doubles cannot divide into ticks: not finite (values near +-1e308), under 1e-12
  // of the values (1e17 .. 1e17 + 16) or under 1e-290 (subnormal values).
  auto drawable = [](double lo, double hi) {
    const double span = hi - lo;
    return std::isfinite(span) && span >= 1e-290 && span >= 1e-12 * std::max(std::fabs(lo), std::fabs(hi));
  };
  S24_CHECK(drawable(xlo, xhi) && drawable(ylo, yhi), kValue, "plot axis range cannot be drawn: x [", xlo, ", ",
            xhi, "], y [", ylo, ", ", yhi, "] (a span must be finite, at least 1e-290 and at least 1e-12 of its "
            "values)");

  // Layout: text is the 5x7 font at scale 2 (16 pixels with the descender row), the title at
  // scale 3 when it fits. Text too wide for the image is cut with "...".
  constexpr int kS = 2, kPad = 12, kTick = 5;
  const int th = kGlyphHeight * kS;
  const int title_s = Canvas::text_width(title, 3) <= opt.width - 2 * kPad ? 3 : 2;
  const std::string title_text = fit_text(title, title_s, opt.width - 2 * kPad);
  const Ticks xt = nice_ticks(xlo, xhi, std::max(2, opt.width / 140));
  const Ticks yt = nice_ticks(ylo, yhi, std::max(2, opt.height / 80));
  int ylabel_w = 0;
  for (double v : yt.values) ylabel_w = std::max(ylabel_w, Canvas::text_width(tick_label(v, yt), kS));
  // Half of the last x tick label may hang over the right end of the axis.
  const int overhang = xt.values.empty() ? 0 : Canvas::text_width(tick_label(xt.values.back(), xt), kS) / 2;
  const int left = kPad + (y_label.empty() ? 0 : th + kPad) + ylabel_w + kTick + 6;
  const int right = opt.width - kPad - std::max(8, overhang);
  const int top = kPad + (title.empty() ? 0 : kGlyphHeight * title_s + kPad);
  const int bottom = opt.height - kPad - (x_label.empty() ? 0 : th + kPad) - th - kTick - 6;
  S24_CHECK(right - left >= 40 && bottom - top >= 40, kValue, "plot of ", opt.width, " x ", opt.height,
            " too small for its labels");
  auto X = [&](double x) { return left + (x - xlo) / (xhi - xlo) * (right - left); };
  auto Y = [&](double y) { return bottom - (y - ylo) / (yhi - ylo) * (bottom - top); };

  // Grid, ticks and tick labels.
  for (double v : xt.values) {
    const int px = int(std::lround(X(v)));
    if (px < left || px > right) continue;
    cv.vline(px, top, bottom, kGrid);
    cv.vline(px, bottom, bottom + kTick, kAxis);
    const std::string t = tick_label(v, xt);
    cv.text(px - Canvas::text_width(t, kS) / 2, bottom + kTick + 5, t, kS, kText);
  }
  for (double v : yt.values) {
    const int py = int(std::lround(Y(v)));
    if (py < top || py > bottom) continue;
    cv.hline(left, right, py, kGrid);
    cv.hline(left - kTick, left, py, kAxis);
    const std::string t = tick_label(v, yt);
    cv.text(left - kTick - 5 - Canvas::text_width(t, kS), py - (kGlyphHeight - 1) * kS / 2, t, kS, kText);
  }

  // The curves, clipped to the plot area; `ink` marks the pixels they cover (for the legend).
  const int ix0 = left + 1, iy0 = top + 1, iw = right - left - 1, ih = bottom - top - 1;
  std::vector<uint8_t> ink(size_t(iw) * size_t(ih), 0);
  for (const Series& s : series) {
    Stroke st(ix0, iy0, right - 1, bottom - 1, float(opt.line_width));
    size_t i = 0;
    const size_t n = s.points.size();
    auto ok = [&](size_t k) { return std::isfinite(s.points[k].first) && std::isfinite(s.points[k].second); };
    while (i < n) {  // runs of finite points
      if (!ok(i)) {
        ++i;
        continue;
      }
      size_t j = i + 1;
      while (j < n && ok(j)) ++j;
      if (j - i == 1) {
        st.dot(X(s.points[i].first), Y(s.points[i].second), opt.line_width + 1.0);
      } else {
        for (size_t k = i + 1; k < j; ++k)
          st.segment(X(s.points[k - 1].first), Y(s.points[k - 1].second), X(s.points[k].first),
                     Y(s.points[k].second));
      }
      i = j;
    }
    st.paint(cv, s.color);
    st.mark(ink);
  }

  // Frame, title, axis labels.
  cv.rect(left, top, right, bottom, kAxis);
  if (!title_text.empty())
    cv.text(opt.width / 2 - Canvas::text_width(title_text, title_s) / 2, kPad, title_text, title_s, kText);
  if (!x_label.empty()) {
    const std::string t = fit_text(x_label, kS, right - left);
    cv.text((left + right) / 2 - Canvas::text_width(t, kS) / 2, opt.height - kPad - th, t, kS, kText);
  }
  if (!y_label.empty()) {
    const std::string t = fit_text(y_label, kS, bottom - top);
    cv.text(kPad, (top + bottom) / 2 + Canvas::text_width(t, kS) / 2, t, kS, kText, true);
  }

  // Legend: a line sample and the label per named series, in the corner of the plot area the
  // curves cross least (top right first on ties).
  std::vector<std::pair<const Series*, std::string>> named;
  constexpr int kSample = 26, kRow = kGlyphHeight * kS + 6, kInner = 8, kGap = 10;
  const int max_text = (right - left) - 2 * kGap - 2 * kInner - kSample - 8;
  for (const Series& s : series)
    if (!s.label.empty()) named.emplace_back(&s, fit_text(s.label, kS, max_text));
  const int rows_fit = (bottom - top - 2 * kGap - 2 * kInner + 6) / kRow;
  if (named.size() > size_t(std::max(rows_fit, 1))) {  // too many entries: the last says how many more
    const size_t keep = size_t(std::max(rows_fit - 1, 0));
    const size_t more = named.size() - keep;
    named.resize(keep);
    named.emplace_back(nullptr, "(" + std::to_string(more) + " more)");
  }
  if (!named.empty() && max_text > 0) {
    int text_w = 0;
    for (const auto& e : named) text_w = std::max(text_w, Canvas::text_width(e.second, kS));
    const int w = kInner + kSample + 8 + text_w + kInner, h = kInner * 2 + kRow * int(named.size()) - 6;
    const int corners[4][2] = {{right - kGap - w, top + kGap},
                               {left + kGap, top + kGap},
                               {right - kGap - w, bottom - kGap - h},
                               {left + kGap, bottom - kGap - h}};
    int lx = corners[0][0], ly = corners[0][1];
    int64_t best = -1;
    for (const auto& c : corners) {
      int64_t covered = 0;
      for (int y = std::max(c[1], iy0); y <= std::min(c[1] + h, iy0 + ih - 1); ++y)
        for (int x = std::max(c[0], ix0); x <= std::min(c[0] + w, ix0 + iw - 1); ++x)
          covered += ink[size_t(y - iy0) * size_t(iw) + size_t(x - ix0)];
      if (best < 0 || covered < best) {
        best = covered;
        lx = c[0];
        ly = c[1];
      }
    }
    cv.fill(lx, ly, lx + w, ly + h, kWhite);
    cv.rect(lx, ly, lx + w, ly + h, kLegendBorder);
    for (size_t k = 0; k < named.size(); ++k) {
      const int ty = ly + kInner + int(k) * kRow;
      if (named[k].first) {
        Stroke st(lx + 1, ly + 1, lx + w - 1, ly + h - 1, float(opt.line_width));
        const double my = ty + (kGlyphHeight - 1) * kS / 2.0;
        st.segment(lx + kInner, my, lx + kInner + kSample, my);
        st.paint(cv, named[k].first->color);
      }
      cv.text(lx + kInner + kSample + 8, ty, named[k].second, kS, kText);
    }
  }
  return cv.take();
}

void plot_curves(const std::string& path, const std::string& title, const std::vector<Series>& series,
                 const std::string& x_label, const std::string& y_label, const PlotOptions& opt) {
  const std::vector<uint8_t> rgb = render_plot(title, series, x_label, y_label, opt);
  write_png(path, opt.width, opt.height, rgb.data());
}

// ---- From metrics logs -------------------------------------------------------------------------

namespace {

std::string file_stem(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t dot = name.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? name : name.substr(0, dot);
}

std::string parent_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  const std::string dir = path.substr(0, slash);
  const size_t s2 = dir.find_last_of('/');
  return s2 == std::string::npos ? dir : dir.substr(s2 + 1);
}

}  // namespace

std::vector<Series> metrics_series(const std::vector<std::string>& jsonl_paths, const MetricsPlotOptions& opt,
                                   const std::string& what) {
  S24_CHECK(!jsonl_paths.empty(), kValue, what, ": no metrics files to plot");
  S24_CHECK(!opt.fields_y.empty(), kValue, what, ": no y field to plot");
  S24_CHECK(opt.labels.empty() || opt.labels.size() == jsonl_paths.size(), kValue, what, ": ",
            opt.labels.size(), " labels for ", jsonl_paths.size(), " metrics files");
  std::vector<std::string> labels = opt.labels;
  if (labels.empty()) {
    bool same_stem = jsonl_paths.size() > 1;
    for (const std::string& p : jsonl_paths) same_stem = same_stem && file_stem(p) == file_stem(jsonl_paths[0]);
    for (const std::string& p : jsonl_paths) labels.push_back(same_stem ? parent_name(p) : file_stem(p));
  }

  std::vector<Series> series;
  size_t points = 0;
  for (size_t f = 0; f < jsonl_paths.size(); ++f) {
    const std::vector<MetricsRow> rows = read_metrics(jsonl_paths[f]);
    for (size_t k = 0; k < opt.fields_y.size(); ++k) {
      Series s;
      s.color = palette(int(series.size()));
      if (jsonl_paths.size() == 1 && opt.fields_y.size() > 1)
        s.label = opt.fields_y[k];
      else
        s.label = labels[f] + (opt.fields_y.size() > 1 ? " " + opt.fields_y[k] : "");
      double last_x = -std::numeric_limits<double>::infinity();
      for (const MetricsRow& row : rows) {
        const double x = row.get(opt.field_x);
        if (!std::isfinite(x)) continue;
        if (x < last_x)  // a resumed run: its rows replace the old ones from x on
          while (!s.points.empty() && s.points.back().first >= x) s.points.pop_back();
        last_x = x;
        const double y = row.get(opt.fields_y[k]);
        if (std::isfinite(y)) s.points.emplace_back(x, y);
      }
      if (s.points.empty()) s.label += " (no data)";
      points += s.points.size();
      series.push_back(std::move(s));
    }
  }
  if (points == 0) {
    std::string fields, files;
    for (const std::string& y : opt.fields_y) fields += (fields.empty() ? "'" : ", '") + y + "'";
    for (const std::string& p : jsonl_paths) files += (files.empty() ? "" : ", ") + p;
    S24_FAIL(kValue, what, ": no rows with both '", opt.field_x, "' and ", fields, " in ", files);
  }
  return series;
}

void plot_from_metrics(const std::string& output_png, const std::vector<std::string>& jsonl_paths,
                       const MetricsPlotOptions& opt) {
  const std::vector<Series> series = metrics_series(jsonl_paths, opt, output_png);
  std::string joined;
  for (const std::string& y : opt.fields_y) joined += (joined.empty() ? "" : ", ") + y;
  const std::string title = opt.title.empty() ? joined + " vs " + opt.field_x : opt.title;
  plot_curves(output_png, title, series, opt.x_label.empty() ? opt.field_x : opt.x_label,
              opt.y_label.empty() ? (opt.fields_y.size() == 1 ? opt.fields_y[0] : "value") : opt.y_label, opt.plot);
}

}  // namespace sparse24::trainer
