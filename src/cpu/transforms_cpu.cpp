// CPU backend of the group transforms: plain loops over groups calling the rules of
// src/core/rules24.h, parallel over rows with OpenMP.
#include "cpu/transforms_cpu.h"

#include <cstring>
#include <vector>

#include "core/rules24.h"
#include "sparse24/error.h"

namespace sparse24::cpu {
namespace {

template <typename In, typename Out>
void prune_groups_typed(const TensorView& in, const GroupArgs& args, const CompressOptions& opts,
                        Sparse24Matrix& out) {
  const int64_t rows = in.rows(), groups = in.cols() / 4;
  Out* values = out.values.data<Out>();
  const float scale = out.scale;
  const Overflow ov = opts.overflow;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      float x[4], v0 = 0.f, v1 = 0.f;
      for (int i = 0; i < 4; ++i) x[i] = to_f32(*in.at<const In>(r, 4 * g + i));
      const uint8_t mask_code = args.rule == rules::GroupRule::kMask ? args.mask->code(r, g) : 0;
      float u0 = 0.f, u1 = 0.f;
      if (args.rule == rules::GroupRule::kMvue) mvue_uniforms(args.seed, uint64_t(r), uint64_t(g), uint64_t(groups), &u0, &u1);
      const rules::Pick p = rules::apply_group(x, args.rule, mask_code, u0, u1, args.beta, &v0, &v1);
      values[r * 2 * groups + 2 * g] = from_f32<Out>(v0, scale, ov);
      values[r * 2 * groups + 2 * g + 1] = from_f32<Out>(v1, scale, ov);
      out.mask.set_code(r, g, group_code(p.i0, p.i1));
    }
  }
}

}  // namespace

void prune_groups(const TensorView& in, const GroupArgs& args, const CompressOptions& opts,
                  Sparse24Matrix& out) {
  dispatch_input_dtype(in.dtype, [&](auto itag) {
    dispatch_dtype(out.dtype, [&](auto otag) {
      using In = typename decltype(itag)::type;
      using Out = typename decltype(otag)::type;
      if constexpr (kIsValueType<Out>) prune_groups_typed<In, Out>(in, args, opts, out);
    });
  });
}

double sste_scale(const TensorView& w) {
  const int64_t rows = w.rows(), groups = w.cols() / 4;
  // Per-row partial sums, then a fixed-order total: the result does not depend on thread count.
  std::vector<double> dot(size_t(rows), 0.0), norm(size_t(rows), 0.0);
  dispatch_input_dtype(w.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t r = 0; r < rows; ++r) {
      double d = 0.0, n = 0.0;
      for (int64_t g = 0; g < groups; ++g) {
        float x[4], v0, v1;
        for (int i = 0; i < 4; ++i) x[i] = to_f32(*w.at<const T>(r, 4 * g + i));
        const rules::Pick p = rules::soft_threshold(x, 1.f, &v0, &v1);
        d += double(x[p.i0]) * v0 + double(x[p.i1]) * v1;
        n += double(v0) * v0 + double(v1) * v1;
      }
      dot[size_t(r)] = d;
      norm[size_t(r)] = n;
    }
  });
  double d = 0.0, n = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    d += dot[size_t(r)];
    n += norm[size_t(r)];
  }
  S24_CHECK(n > 0.0, kValue, "S-STE scale undefined: the soft threshold of ", w.describe(),
            " is all zero (every group has ties at its threshold)");
  return d / n;
}

void decompress(const Sparse24Matrix& s, const TensorView& out) {
  const int64_t groups = s.cols / 4;
  dispatch_dtype(s.dtype, [&](auto vtag) {
    dispatch_input_dtype(out.dtype, [&](auto otag) {
      using V = typename decltype(vtag)::type;
      using O = typename decltype(otag)::type;
      if constexpr (kIsValueType<V>) {
        const V* values = s.values.data<V>();
        for (int64_t r = 0; r < s.rows; ++r)
          for (int64_t g = 0; g < groups; ++g) {
            const uint8_t code = s.mask.code(r, g);
            for (int i = 0; i < 4; ++i) *out.at<O>(r, 4 * g + i) = from_f32<O>(0.f, 1.f, Overflow::kPyTorch);
            const float v0 = to_f32(values[r * 2 * groups + 2 * g]) * s.scale;
            const float v1 = to_f32(values[r * 2 * groups + 2 * g + 1]) * s.scale;
            *out.at<O>(r, 4 * g + (code & 3)) = from_f32<O>(v0, 1.f, Overflow::kPyTorch);
            *out.at<O>(r, 4 * g + (code >> 2)) = from_f32<O>(v1, 1.f, Overflow::kPyTorch);
          }
      }
    });
  });
}

void masked_decay(const TensorView& grad, const TensorView& w, const Mask24& mask, float alpha) {
  dispatch_input_dtype(grad.dtype, [&](auto gtag) {
    dispatch_input_dtype(w.dtype, [&](auto wtag) {
      using G = typename decltype(gtag)::type;
      using W = typename decltype(wtag)::type;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
      for (int64_t r = 0; r < grad.rows(); ++r)
        for (int64_t c = 0; c < grad.cols(); ++c) {
          if (mask.kept(r, c)) continue;
          G* g = grad.at<G>(r, c);
          *g = from_f32<G>(to_f32(*g) + alpha * to_f32(*w.at<const W>(r, c)), 1.f, Overflow::kPyTorch);
        }
    });
  });
}

double flip_rate(const Mask24& a, const Mask24& b) {
  const int64_t total = a.rows() * a.cols();
  if (total == 0) return 0.0;
  int64_t flips = 0;
  for (int64_t r = 0; r < a.rows(); ++r)
    for (int64_t g = 0; g < a.groups_per_row(); ++g)
      flips += __builtin_popcount(group_code_bits(a.code(r, g)) ^ group_code_bits(b.code(r, g)));
  return double(flips) / double(total);
}

SparsityReport check_24(const TensorView& dense) {
  SparsityReport rep;
  dispatch_dtype(dense.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto nonzero = [&](int64_t i, int64_t j) { return to_f32(*dense.at<const T>(i, j)) != 0.f; };
    // Along rows: groups of 4 consecutive columns.
    rep.rows_24 = dense.cols() % 4 == 0;
    for (int64_t i = 0; rep.rows_24 && i < dense.rows(); ++i)
      for (int64_t g = 0; g < dense.cols() / 4; ++g) {
        const int n = nonzero(i, 4 * g) + nonzero(i, 4 * g + 1) + nonzero(i, 4 * g + 2) + nonzero(i, 4 * g + 3);
        if (n > 2) {
          rep.rows_24 = false;
          rep.bad_row = i;
          rep.bad_row_group = g;
          break;
        }
      }
    // Along columns: groups of 4 consecutive rows.
    rep.cols_24 = dense.rows() % 4 == 0;
    for (int64_t j = 0; rep.cols_24 && j < dense.cols(); ++j)
      for (int64_t g = 0; g < dense.rows() / 4; ++g) {
        const int n = nonzero(4 * g, j) + nonzero(4 * g + 1, j) + nonzero(4 * g + 2, j) + nonzero(4 * g + 3, j);
        if (n > 2) {
          rep.cols_24 = false;
          rep.bad_col = j;
          rep.bad_col_group = g;
          break;
        }
      }
  });
  return rep;
}

int64_t first_non_finite(const TensorView& m) {
  return dispatch_dtype(m.dtype, [&](auto tag) -> int64_t {
    using T = typename decltype(tag)::type;
    for (int64_t i = 0; i < m.rows(); ++i)
      for (int64_t j = 0; j < m.cols(); ++j)
        if (!rules::is_finite_f(to_f32(*m.at<const T>(i, j)))) return i * m.cols() + j;
    return -1;
  });
}

}  // namespace sparse24::cpu
