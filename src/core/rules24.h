// src/core/rules24.h: the per-group rule of every 2:4 transform, as host+device functions.
//
// These few functions *define* the transforms (docs/ALGORITHMS.md): the CPU backend calls them in
// plain loops, and the CUDA kernels call the very same code, so both backends choose the same
// positions and compute the same values bit for bit (the library builds with no FMA contraction).
// A group is 4 consecutive floats x[0..3]; a choice is two positions i0 < i1.
#pragma once

#include <cmath>
#include <cstdint>

#include "sparse24/dtype.h"  // S24_HD
#include "sparse24/philox.h"
#include "sparse24/transforms.h"  // kMvueEps

namespace sparse24::rules {

struct Pick {
  int i0, i1;  // kept positions, i0 < i1
};

S24_HD float abs_f(float x) { return f32_from_bits(f32_to_bits(x) & 0x7FFFFFFFu); }
S24_HD bool is_finite_f(float x) { return (f32_to_bits(x) & 0x7F800000u) != 0x7F800000u; }
// Whether a group's four values are all finite (no NaN, no Inf).
S24_HD bool is_finite4(const float x[4]) {
  return is_finite_f(x[0]) && is_finite_f(x[1]) && is_finite_f(x[2]) && is_finite_f(x[3]);
}
// The quiet NaN every transform stores for a non-finite group: x86 and the GPU would otherwise
// produce NaNs of different signs and payloads.
S24_HD float canonical_nan() { return f32_from_bits(0x7FC00000u); }
// x[i] for a run-time i, by selects: device code keeps x in registers (no local-memory array).
template <typename T>
S24_HD T pick4(const T* x, int i) { return i == 0 ? x[0] : (i == 1 ? x[1] : (i == 2 ? x[2] : x[3])); }

// The two largest keys; on equal keys the lower index ranks higher. A 4-player tournament
// (0 vs 1, 2 vs 3, then the winners): the runner-up is the final's loser or the champion's
// first-round victim. Five comparisons, no arrays indexed at run time.
S24_HD Pick top2(const uint32_t key[4]) {
  const bool b1 = key[1] > key[0], b3 = key[3] > key[2];  // ties go to the lower index
  const int w01 = b1 ? 1 : 0, l01 = b1 ? 0 : 1, w23 = b3 ? 3 : 2, l23 = b3 ? 2 : 3;
  const uint32_t kw01 = b1 ? key[1] : key[0], kl01 = b1 ? key[0] : key[1];
  const uint32_t kw23 = b3 ? key[3] : key[2], kl23 = b3 ? key[2] : key[3];
  const bool high = kw23 > kw01;  // the champion comes from (2, 3)
  const int first = high ? w23 : w01;
  // Runner-up candidates: the final's loser, and the champion's first-round victim.
  const int c_final = high ? w01 : w23, c_victim = high ? l23 : l01;
  const uint32_t k_final = high ? kw01 : kw23, k_victim = high ? kl23 : kl01;
  const bool victim_wins = k_victim > k_final || (k_victim == k_final && c_victim < c_final);
  const int second = victim_wins ? c_victim : c_final;
  return first < second ? Pick{first, second} : Pick{second, first};
}

// Magnitude keys: |x| as an unsigned integer, which orders non-negative floats exactly as their
// values (+0 lowest); NaN and Inf both map to the Inf code, so non-finite values rank largest and
// equal. The same order for every input type, so keys can be taken from the raw fp16/bf16 bits.
S24_HD uint32_t magnitude_key(float x) {
  const uint32_t a = f32_to_bits(x) & 0x7FFFFFFFu;
  return a < 0x7F800000u ? a : 0x7F800000u;
}
S24_HD uint32_t magnitude_key(f16_t x) {
  const uint32_t a = x.bits & 0x7FFFu;
  return a < 0x7C00u ? a : 0x7C00u;
}
S24_HD uint32_t magnitude_key(bf16_t x) {
  const uint32_t a = x.bits & 0x7FFFu;
  return a < 0x7F80u ? a : 0x7F80u;
}
// The key of the non-finite values of each type.
S24_HD constexpr uint32_t non_finite_key(float) { return 0x7F800000u; }
S24_HD constexpr uint32_t non_finite_key(f16_t) { return 0x7C00u; }
S24_HD constexpr uint32_t non_finite_key(bf16_t) { return 0x7F80u; }

// Magnitude: keep the two largest |x|, ties to the lower index. Non-finite values rank largest
// (used by NonFinite::kPropagate); NaN and Inf rank equal.
S24_HD Pick magnitude(const float x[4]) {
  const uint32_t key[4] = {magnitude_key(x[0]), magnitude_key(x[1]), magnitude_key(x[2]), magnitude_key(x[3])};
  return top2(key);
}

// Soft threshold (S-STE): t = the second smallest |x|; the two largest |x| (magnitude's choice)
// become sign(x) * (|x| - t) * beta, the others 0.
S24_HD Pick soft_threshold(const float x[4], float beta, float* v0, float* v1) {
  const Pick p = magnitude(x);
  float t = 0.f;  // the larger |x| among the two dropped positions
  S24_UNROLL
  for (int i = 0; i < 4; ++i)
    if (i != p.i0 && i != p.i1 && abs_f(x[i]) > t) t = abs_f(x[i]);
  const float x0 = pick4(x, p.i0), x1 = pick4(x, p.i1);
  const float m0 = (abs_f(x0) - t) * beta, m1 = (abs_f(x1) - t) * beta;
  *v0 = x0 < 0.f ? -m0 : m0;
  *v1 = x1 < 0.f ? -m1 : m1;
  return p;
}

// 1/v correctly rounded (to nearest even) for 2^-126 <= v < 2^126. Device code: the
// instructions the compiler emits for 1.f / v on exactly that range (MUFU.RCP and one Newton step
// in FMA), without its range check and slow-path call; the range is the caller's promise. Host:
// 1.f / v. Both are the IEEE reciprocal, so the backends agree bit for bit.
S24_HD float rcp_normal(float v) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
  const float e = __fmaf_rn(v, r, -1.f);
  return __fmaf_rn(r, -e, r);
#else
  return 1.f / v;
#endif
}

// MVUE24 (unbiased 2:4 pruning) of one group of finite values with its two uniforms u0, u1 in
// [0, 1).
//   a_i = |x_i| + eps. First position: i with probability a_i / S (S = sum a, summed in index
//   order), the smallest i whose running sum exceeds u0 * S. Second: among the other three, in
//   index order, probability a_j / T (T = their sum), the same way with u1.
//   Kept values x_i / p_i with the inclusion probability
//     p_i = a_i / S + sum_{j != i} (a_j / S) * (a_i / T_j),   T_j = sum_{k != j} a_k,
//   so E[out] = x exactly. An all-zero group stays zero.
// Every sum is formed once, in index order: a_i > 0, so a running sum that starts at 0 equals
// the sum without the 0, and the running sums of both draws are partial sums of S and T_j.
struct MvueSums {
  float a[4], a01, a02, a12;
  float t[4];  // T_j, in index order
  float s;     // ((a0 + a1) + a2) + a3
};
S24_HD MvueSums mvue_sums(const float x[4], float eps) {
  MvueSums m;
  S24_UNROLL
  for (int i = 0; i < 4; ++i) m.a[i] = fabsf(x[i]) + eps;  // fabsf: a sign-bit clear on both backends
  m.a01 = m.a[0] + m.a[1], m.a02 = m.a[0] + m.a[2], m.a12 = m.a[1] + m.a[2];
  m.t[0] = m.a12 + m.a[3], m.t[1] = m.a02 + m.a[3], m.t[2] = m.a01 + m.a[3], m.t[3] = m.a01 + m.a[2];
  m.s = m.t[3] + m.a[3];
  return m;
}

// The kept pair i0 < i1 as four tests: i0 = [i0 >= 1] + [i0 >= 2], i1 = 1 + [i1 >= 2] + [i1 >= 3].
struct MvueKept {
  bool i0_ge1, i0_ge2, i1_ge2, i1_ge3;
};
S24_HD Pick pick_of(const MvueKept& k) { return {int(k.i0_ge1) + int(k.i0_ge2), 1 + int(k.i1_ge2) + int(k.i1_ge3)}; }
// y[i0] and y[i1], by selects.
template <typename T>
S24_HD T kept0(const MvueKept& k, const T y[4]) { return k.i0_ge2 ? y[2] : (k.i0_ge1 ? y[1] : y[0]); }
template <typename T>
S24_HD T kept1(const MvueKept& k, const T y[4]) { return k.i1_ge3 ? y[3] : (k.i1_ge2 ? y[2] : y[1]); }

// The two draws. First: the number of running sums (a0, a0 + a1, a0 + a1 + a2) not above u0 S,
// as tests first >= 1, 2, 3 (each implies the one before: the running sums never decrease).
// Second, among the others j0 < j1 < j2 in index order: their running sums a_j0, a_j0 + a_j1 and
// T_first = (a_j0 + a_j1) + a_j2 (the very sums of mvue_sums: a01, a02 or a12, and t[first])
// against u1 T_first give rank 0, 1 or 2 (tests rank >= 1, 2), which picks j0, j1 or j2.
// Kept: i0 = min(first, rank), i1 = max(first, rank + 1).
S24_HD MvueKept mvue_draw(const MvueSums& m, float u0, float u1) {
  const float r0 = u0 * m.s;
  const bool f1 = !(r0 < m.a[0]), f2 = !(r0 < m.a01), f3 = !(r0 < m.t[3]);
  const float run0 = f1 ? m.a[0] : m.a[1];                  // a_j0
  const float run1 = run0 + (f2 ? m.a[1] : m.a[2]);         // a_j0 + a_j1
  const float t_first = run1 + (f3 ? m.a[2] : m.a[3]);      // T_first
  const float r1 = u1 * t_first;
  const bool q1 = !(r1 < run0), q2 = !(r1 < run1);
  return {f1 && q1, f2 && q2, f2 || q1, f3 || q2};
}

// The kept values. Factoring a_i / S out of p_i:
//   x_i / p_i = x_i * (S / d_i),   d_i = a_i h_i = a_i + a_i s_i,   s_i = sum_{j != i} c_j,
//   c_j = a_j / T_j,
// with four reciprocals 1/T_j and one 1/d_i per kept value instead of divisions, every term of
// s_i positive (no cancellation), d_i in one fused multiply-add. kNormal (mvue_normal_range:
// S < 2^100, every finite fp16 group): every reciprocal's argument lies in rcp_normal's range
// (T_j in [3 eps, S], d_i in [eps, S]), c_j <= S / (3 eps) and S / d_i <= S / eps stay finite.
// Huge groups (fp32/bf16 values of ~1e30 and more), where c_j could overflow, use the bounded
// terms
//   d_i = p_i = a_i / S + a_i s_i,   c_j = (a_j / S) / T_j,   x_i / d_i,
// with divisions. Both are p_i up to rounding (a few ulps); reciprocals, quotients and fused
// multiply-adds are correctly rounded (IEEE; on the GPU rcp_normal and FFMA, on the host fmaf),
// so both backends agree bit for bit.
S24_HD bool mvue_normal_range(float s, float eps) { return s < 0x1p100f && eps >= 0x1p-126f; }
// a * b + c rounded once: FFMA on the GPU, fmaf (correctly rounded as well) on the host.
S24_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
template <bool kNormal>
S24_HD void mvue_denominators(const MvueSums& m, float d[4]) {
  float c[4];
  S24_UNROLL
  for (int j = 0; j < 4; ++j) c[j] = kNormal ? m.a[j] * rcp_normal(m.t[j]) : (m.a[j] / m.s) / m.t[j];
  const float c01 = c[0] + c[1], c23 = c[2] + c[3];  // s_i: the pair without i, then i's partner
  const float s[4] = {c23 + c[1], c23 + c[0], c01 + c[3], c01 + c[2]};
  S24_UNROLL
  for (int i = 0; i < 4; ++i) d[i] = fma_rn(m.a[i], s[i], kNormal ? m.a[i] : m.a[i] / m.s);
}
// A kept value from its input and d.
template <bool kNormal>
S24_HD float mvue_value(const MvueSums& m, float x, float d) { return kNormal ? x * (m.s * rcp_normal(d)) : x / d; }

// MVUE24 of one group of finite values: the kept positions and their values.
S24_HD Pick mvue(const float x[4], float u0, float u1, float eps, float* v0, float* v1) {
  const MvueSums m = mvue_sums(x, eps);
  const MvueKept k = mvue_draw(m, u0, u1);
  float d[4];
  if (mvue_normal_range(m.s, eps)) {
    mvue_denominators<true>(m, d);
    *v0 = mvue_value<true>(m, kept0(k, x), kept0(k, d));
    *v1 = mvue_value<true>(m, kept1(k, x), kept1(k, d));
  } else {
    mvue_denominators<false>(m, d);
    *v0 = mvue_value<false>(m, kept0(k, x), kept0(k, d));
    *v1 = mvue_value<false>(m, kept1(k, x), kept1(k, d));
  }
  return pick_of(k);
}

// ---- One group under any of the rules ----------------------------------------------------
enum class GroupRule : uint8_t { kMagnitude, kMask, kMvue, kSoftThreshold };

// The kept positions and values of a group under `rule`: kMask reads mask_code, kMvue uses the
// group's uniforms u0, u1 (mvue_uniforms), kSoftThreshold scales by beta. A group holding
// NaN/Inf (only reached under NonFinite::kPropagate) keeps the mask's positions, else
// magnitude's, and stores NaN in both slots.
S24_HD Pick apply_group(const float x[4], GroupRule rule, uint8_t mask_code, float u0, float u1, float beta,
                        float* v0, float* v1) {
  const bool finite = is_finite4(x);
  Pick p{0, 1};
  if (rule == GroupRule::kMask) {
    p = {mask_code & 3, mask_code >> 2};
    *v0 = pick4(x, p.i0);
    *v1 = pick4(x, p.i1);
  } else if (!finite) {
    p = magnitude(x);
  } else if (rule == GroupRule::kMagnitude) {
    p = magnitude(x);
    *v0 = pick4(x, p.i0);
    *v1 = pick4(x, p.i1);
  } else if (rule == GroupRule::kMvue) {
    p = mvue(x, u0, u1, kMvueEps, v0, v1);
  } else {
    p = soft_threshold(x, beta, v0, v1);
  }
  // A NaN, from the input or from arithmetic on huge finite values (MVUE's sums overflowing to
  // Inf, then Inf / Inf), is stored as the canonical one.
  if (!finite || *v0 != *v0) *v0 = canonical_nan();
  if (!finite || *v1 != *v1) *v1 = canonical_nan();
  return p;
}

// ---- Transposable 4x4 selection ------------------------------------------------------------
// A pattern keeps two entries in every row and every column of a 4x4 block. Row r keeps the pair
// with index pr in the order (0,1) (0,2) (0,3) (1,2) (1,3) (2,3). A pattern is the tuple
// (p0, p1, p2, p3) of its rows' pair indices, packed as p0 | p1 << 3 | p2 << 6 | p3 << 9; the 90
// valid tuples, in lexicographic order, are the tie-break order: the first pattern with the
// maximal score wins. Score = (s0[p0] + s1[p1]) + (s2[p2] + s3[p3]), sr[p] = |w[r][a]| + |w[r][b]|,
// in float, in exactly this order.
S24_HD constexpr int pair_a(int p) { return p < 3 ? 0 : (p < 5 ? 1 : 2); }
S24_HD constexpr int pair_b(int p) { return p == 0 ? 1 : ((p == 1 || p == 3) ? 2 : 3); }
S24_HD constexpr int pair_index(int a, int b) { return a == 0 ? b - 1 : (a == 1 ? b + 1 : 5); }
S24_HD void pair_of(int p, int* a, int* b) {
  *a = pair_a(p);
  *b = pair_b(p);
}

// Calls f(p0, p1, p2, p3) for the 90 patterns in tie-break order. Row 3's pair is the one that
// completes every column to two ones (when rows 0-2 leave exactly two columns one short). Fully
// unrolled: in device code every index is a compile-time constant and no table is read.
template <typename F>
S24_HD void for_each_transposable_pattern(F&& f) {
S24_UNROLL
  for (int p0 = 0; p0 < 6; ++p0)
S24_UNROLL
    for (int p1 = 0; p1 < 6; ++p1)
S24_UNROLL
      for (int p2 = 0; p2 < 6; ++p2) {
        int d[4] = {2, 2, 2, 2};  // ones still needed per column
        --d[pair_a(p0)], --d[pair_b(p0)], --d[pair_a(p1)], --d[pair_b(p1)], --d[pair_a(p2)], --d[pair_b(p2)];
        bool ok = true;
        for (int c = 0; c < 4; ++c) ok = ok && (d[c] == 0 || d[c] == 1);
        if (!ok) continue;  // a column over-full, or needing two more ones from one row
        const int a = d[0] ? 0 : (d[1] ? 1 : 2), b = d[3] ? 3 : (d[2] ? 2 : 1);
        f(p0, p1, p2, pair_index(a, b));
      }
}

// The best pattern (packed) of a 4x4 block of |w| given row-major (absw[4 * r + c]).
S24_HD uint16_t best_transposable(const float absw[16]) {
  float s[4][6];
S24_UNROLL
  for (int r = 0; r < 4; ++r)
S24_UNROLL
    for (int p = 0; p < 6; ++p) s[r][p] = absw[4 * r + pair_a(p)] + absw[4 * r + pair_b(p)];
  uint16_t best = 0;
  float best_score = -1.f;
  for_each_transposable_pattern([&](int p0, int p1, int p2, int p3) {
    const float score = (s[0][p0] + s[1][p1]) + (s[2][p2] + s[3][p3]);
    if (score > best_score) {
      best_score = score;
      best = uint16_t(p0 | p1 << 3 | p2 << 6 | p3 << 9);
    }
  });
  return best;
}

// Row r's kept pair of a packed pattern.
S24_HD void pattern_row(uint16_t packed, int r, int* a, int* b) { pair_of((packed >> (3 * r)) & 7, a, b); }

}  // namespace sparse24::rules
