// CPU backend of the transposable 2:4 transforms: for every aligned 4x4 block, the best of the 90
// patterns (rules::best_transposable) or a given transposable mask's, then W and W^T compressed.
#include <vector>

#include "core/rules24.h"
#include "cpu/transforms_cpu.h"

namespace sparse24::cpu {
namespace {

template <typename In, typename Out>
void transposable_typed(const TensorView& w, const Mask24* mask, const CompressOptions& opts,
                        Transposable24& res) {
  const int64_t brows = w.rows() / 4, bcols = w.cols() / 4;
  const float scale = res.w.scale;
  const Overflow ov = opts.overflow;
  // NonFinite::kPropagate (the only way non-finite weights get here): a group holding NaN or Inf
  // stores the canonical NaN in both kept slots, in W (a row's four) and in W^T (a column's four),
  // as apply_group does for every other transform.
  auto nan = [&] { return from_f32<Out>(rules::canonical_nan(), scale, ov); };

  // 1. The pattern of every block: the best one, or the given mask's.
  std::vector<uint16_t> choice(size_t(brows * bcols));
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t bi = 0; bi < brows; ++bi)
    for (int64_t bj = 0; bj < bcols; ++bj) {
      if (mask) {
        uint16_t packed = 0;
        for (int r = 0; r < 4; ++r) {
          const uint8_t code = mask->code(4 * bi + r, bj);
          packed = uint16_t(packed | rules::pair_index(code & 3, code >> 2) << (3 * r));
        }
        choice[size_t(bi * bcols + bj)] = packed;
        continue;
      }
      float absw[16];
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) absw[4 * r + c] = rules::abs_f(to_f32(*w.at<const In>(4 * bi + r, 4 * bj + c)));
      choice[size_t(bi * bcols + bj)] = rules::best_transposable(absw);
    }

  // 2. W: row 4*bi + r keeps the pattern's pair of row r in group bj.
  Out* wv = res.w.values.data<Out>();
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t bi = 0; bi < brows; ++bi)
    for (int64_t bj = 0; bj < bcols; ++bj)
      for (int r = 0; r < 4; ++r) {
        int a, b;
        rules::pattern_row(choice[size_t(bi * bcols + bj)], r, &a, &b);
        const int64_t row = 4 * bi + r;
        float x[4];
        for (int c = 0; c < 4; ++c) x[c] = to_f32(*w.at<const In>(row, 4 * bj + c));
        const bool ok = rules::is_finite4(x);
        wv[row * 2 * bcols + 2 * bj] = ok ? from_f32<Out>(x[a], scale, ov) : nan();
        wv[row * 2 * bcols + 2 * bj + 1] = ok ? from_f32<Out>(x[b], scale, ov) : nan();
        res.w.mask.set_code(row, bj, group_code(a, b));
      }

  // 3. W^T: its row 4*bj + c (column c of the block) keeps the two rows of the pattern that hold
  //    a one in column c, as group bi.
  Out* tv = res.wt.values.data<Out>();
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t bj = 0; bj < bcols; ++bj)
    for (int64_t bi = 0; bi < brows; ++bi) {
      int rows_of_col[4][2], n[4] = {0, 0, 0, 0};
      for (int r = 0; r < 4; ++r) {
        int a, b;
        rules::pattern_row(choice[size_t(bi * bcols + bj)], r, &a, &b);
        rows_of_col[a][n[a]++] = r;
        rows_of_col[b][n[b]++] = r;
      }
      for (int c = 0; c < 4; ++c) {
        const int64_t trow = 4 * bj + c;
        const int r0 = rows_of_col[c][0], r1 = rows_of_col[c][1];
        float x[4];
        for (int r = 0; r < 4; ++r) x[r] = to_f32(*w.at<const In>(4 * bi + r, trow));
        const bool ok = rules::is_finite4(x);
        tv[trow * 2 * brows + 2 * bi] = ok ? from_f32<Out>(x[r0], scale, ov) : nan();
        tv[trow * 2 * brows + 2 * bi + 1] = ok ? from_f32<Out>(x[r1], scale, ov) : nan();
        res.wt.mask.set_code(trow, bi, group_code(r0, r1));
      }
    }
  res.mask = res.w.mask;
}

}  // namespace

void prune_transposable(const TensorView& w, const Mask24* mask, const CompressOptions& opts,
                        Transposable24& res) {
  dispatch_input_dtype(w.dtype, [&](auto itag) {
    dispatch_dtype(res.w.dtype, [&](auto otag) {
      using In = typename decltype(itag)::type;
      using Out = typename decltype(otag)::type;
      if constexpr (kIsValueType<Out>) transposable_typed<In, Out>(w, mask, opts, res);
    });
  });
}

}  // namespace sparse24::cpu
