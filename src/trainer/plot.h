// trainer/plot.h: loss-curve plots as PNG files, with no external dependency.
//
// write_png writes 8-bit RGB PNGs whose zlib stream is made of stored (uncompressed) deflate
// blocks, with the CRC-32 and Adler-32 implemented here; every file is written atomically.
// plot_curves draws axes with "nice" ticks (1, 2, 5 x 10^k) and numeric tick labels, a grid, a
// title, axis labels, a legend and one anti-aliased polyline per series, with a built-in 5x7
// bitmap font (printable ASCII; other bytes draw as '?'). Non-finite points break a line;
// isolated finite points are drawn as dots.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sparse24::trainer {

struct Color {
  uint8_t r = 0, g = 0, b = 0;
};
// The i-th color of a 10-color palette (matplotlib's tab10), cycling.
Color palette(int i);

struct Series {
  std::string label;
  std::vector<std::pair<double, double>> points;  // (x, y) in drawing order
  Color color = palette(0);
};

struct PlotOptions {
  int width = 900, height = 560;  // at least 200 x 150
  // Axis ranges; NaN: from the data (x exactly, y with 5% padding).
  double x_min = NAN, x_max = NAN, y_min = NAN, y_max = NAN;
  double line_width = 2.0;  // pixels
};

// rgb: width * height * 3 bytes, rows top to bottom. width, height >= 1 (kValue otherwise).
void write_png(const std::string& path, int width, int height, const uint8_t* rgb);
// The bytes of that PNG file.
std::string encode_png(int width, int height, const uint8_t* rgb);

// An RGB image of the plot (opt.width * opt.height * 3 bytes), and the same written as a PNG.
std::vector<uint8_t> render_plot(const std::string& title, const std::vector<Series>& series,
                                 const std::string& x_label, const std::string& y_label,
                                 const PlotOptions& opt = {});
void plot_curves(const std::string& path, const std::string& title, const std::vector<Series>& series,
                 const std::string& x_label, const std::string& y_label, const PlotOptions& opt = {});

// Plots from JSONL metrics logs (trainer/metrics.h): one series per (file, y field), points from
// the rows holding both fields with finite values. A resumed run's log (the step going back) keeps
// only the newest rows: a row whose x is below the previous row's drops the points at or beyond
// its x. kValue if no file has any point.
struct MetricsPlotOptions {
  std::string field_x = "step";
  std::vector<std::string> fields_y = {"val_loss"};
  // One per file; empty: each file's name without extension, or its directory's name when all
  // files share that name (run1/metrics.jsonl, run2/metrics.jsonl -> "run1", "run2").
  std::vector<std::string> labels;
  std::string title;             // empty: "<fields_y> vs <field_x>"
  std::string x_label, y_label;  // empty: the field names
  PlotOptions plot;
};
void plot_from_metrics(const std::string& output_png, const std::vector<std::string>& jsonl_paths,
                       const MetricsPlotOptions& opt = {});
// The series plot_from_metrics draws (labels and colors included); kValue naming `what` if no
// file has any point.
std::vector<Series> metrics_series(const std::vector<std::string>& jsonl_paths, const MetricsPlotOptions& opt,
                                   const std::string& what = "plot");
inline void plot_from_metrics(const std::string& output_png, const std::vector<std::string>& jsonl_paths,
                              const std::string& field_x, const std::string& field_y,
                              const std::vector<std::string>& labels = {}) {
  MetricsPlotOptions opt;
  opt.field_x = field_x;
  opt.fields_y = {field_y};
  opt.labels = labels;
  plot_from_metrics(output_png, jsonl_paths, opt);
}

}  // namespace sparse24::trainer
