// src/core/rules24.h: the per-group rule of every 2:4 transform, as host+device functions.
//
// These few functions *define* the transforms (docs/ALGORITHMS.md): the CPU backend calls them in
// plain loops, and the CUDA kernels call the very same code, so both backends choose the same
// positions and compute the same values bit for bit (the library builds with no FMA contraction).
// A group is 4 consecutive floats x[0..3]; a choice is two positions i0 < i1.
#pragma once

#include <cstdint>

#include "sparse24/dtype.h"  // S24_HD
#include "sparse24/philox.h"

namespace sparse24::rules {

struct Pick {
  int i0, i1;  // kept positions, i0 < i1
};

S24_HD float abs_f(float x) { return f32_from_bits(f32_to_bits(x) & 0x7FFFFFFFu); }
S24_HD bool is_finite_f(float x) { return (f32_to_bits(x) & 0x7F800000u) != 0x7F800000u; }

// The two largest keys; on equal keys the lower index ranks higher.
S24_HD Pick top2(const float key[4]) {
  int kept[2] = {0, 0}, n = 0;
  for (int i = 0; i < 4; ++i) {
    int above = 0;  // how many entries rank above i
    for (int j = 0; j < 4; ++j) above += (key[j] > key[i]) || (key[j] == key[i] && j < i);
    if (above < 2) kept[n++] = i;  // ranks are distinct: exactly two entries pass
  }
  return {kept[0], kept[1]};
}

// Magnitude: keep the two largest |x|, ties to the lower index. Non-finite values rank largest
// (used by NonFinite::kPropagate); NaN and Inf rank equal.
S24_HD Pick magnitude(const float x[4]) {
  float key[4];
  for (int i = 0; i < 4; ++i) key[i] = is_finite_f(x[i]) ? abs_f(x[i]) : f32_from_bits(0x7F800000u);
  return top2(key);
}

// Soft threshold (S-STE): t = the second smallest |x|; the two largest |x| (magnitude's choice)
// become sign(x) * (|x| - t) * beta, the others 0.
S24_HD Pick soft_threshold(const float x[4], float beta, float* v0, float* v1) {
  const Pick p = magnitude(x);
  float t = 0.f;  // the larger |x| among the two dropped positions
  for (int i = 0; i < 4; ++i)
    if (i != p.i0 && i != p.i1 && abs_f(x[i]) > t) t = abs_f(x[i]);
  const float m0 = (abs_f(x[p.i0]) - t) * beta, m1 = (abs_f(x[p.i1]) - t) * beta;
  *v0 = x[p.i0] < 0.f ? -m0 : m0;
  *v1 = x[p.i1] < 0.f ? -m1 : m1;
  return p;
}

// MVUE24 (unbiased 2:4 pruning) of one group with its two uniforms u0, u1 in [0, 1).
//   a_i = |x_i| + eps. First position: i with probability a_i / S (S = sum a, summed in index
//   order), the smallest i whose running sum exceeds u0 * S. Second: among the other three, in
//   index order, probability a_j / T (T = their sum), the same way with u1.
//   Kept values x_i / p_i with the inclusion probability
//     p_i = a_i / S + sum_{j != i} (a_j / S) * (a_i / T_j),   T_j = sum_{k != j} a_k,
//   so E[out] = x exactly. An all-zero group stays zero.
S24_HD Pick mvue(const float x[4], float u0, float u1, float eps, float* v0, float* v1) {
  float a[4], total[4];  // total[j] = sum of a over k != j, in index order
  for (int i = 0; i < 4; ++i) a[i] = abs_f(x[i]) + eps;
  const float s = ((a[0] + a[1]) + a[2]) + a[3];
  for (int j = 0; j < 4; ++j) {
    float t = 0.f;
    for (int k = 0; k < 4; ++k)
      if (k != j) t += a[k];
    total[j] = t;
  }
  // First draw.
  const float r0 = u0 * s;
  int first = 3;
  float run = 0.f;
  for (int i = 0; i < 3; ++i) {
    run += a[i];
    if (r0 < run) { first = i; break; }
  }
  // Second draw among the others.
  const float r1 = u1 * total[first];
  int second = -1, last = -1;
  run = 0.f;
  for (int j = 0; j < 4; ++j) {
    if (j == first) continue;
    last = j;
    run += a[j];
    if (second < 0 && r1 < run) second = j;
  }
  if (second < 0) second = last;
  const Pick p = first < second ? Pick{first, second} : Pick{second, first};
  float prob[2];
  for (int n = 0; n < 2; ++n) {
    const int i = n == 0 ? p.i0 : p.i1;
    float q = a[i] / s;
    for (int j = 0; j < 4; ++j)
      if (j != i) q += (a[j] / s) * (a[i] / total[j]);
    prob[n] = q;
  }
  *v0 = x[p.i0] / prob[0];
  *v1 = x[p.i1] / prob[1];
  return p;
}

// ---- Transposable 4x4 selection ------------------------------------------------------------
// A pattern keeps two entries in every row and every column of a 4x4 block. Row r keeps the pair
// kPairs[pr] = (a, b), a < b, in this order: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3). A pattern is
// the 4-tuple (p0, p1, p2, p3) of its rows' pair indices; the 90 valid tuples, in lexicographic
// order, are the tie-break order: the first pattern with the maximal score wins.
// Score of a pattern = (s0[p0] + s1[p1]) + (s2[p2] + s3[p3]), with sr[p] = |w[r][a]| + |w[r][b]|
// in float, in exactly this order.
S24_HD void pair_of(int p, int* a, int* b) {
  const int kA[6] = {0, 0, 0, 1, 1, 2}, kB[6] = {1, 2, 3, 2, 3, 3};
  *a = kA[p];
  *b = kB[p];
}

// The pattern table: pair indices packed as p0 | p1 << 3 | p2 << 6 | p3 << 9, in tie-break order.
struct TransposableTable {
  uint16_t packed[90];
};
S24_HD TransposableTable make_transposable_table() {
  TransposableTable t{};
  int n = 0;
  for (int p0 = 0; p0 < 6; ++p0)
    for (int p1 = 0; p1 < 6; ++p1)
      for (int p2 = 0; p2 < 6; ++p2)
        for (int p3 = 0; p3 < 6; ++p3) {
          int count[4] = {0, 0, 0, 0};
          const int ps[4] = {p0, p1, p2, p3};
          for (int r = 0; r < 4; ++r) {
            int a, b;
            pair_of(ps[r], &a, &b);
            ++count[a];
            ++count[b];
          }
          if (count[0] == 2 && count[1] == 2 && count[2] == 2 && count[3] == 2)
            t.packed[n++] = uint16_t(p0 | p1 << 3 | p2 << 6 | p3 << 9);
        }
  return t;
}

// Best pattern of a 4x4 block of |w| (row-major, absw[4 * r + c]); returns its index 0..89.
S24_HD int best_transposable(const TransposableTable& table, const float absw[16]) {
  float pair_sum[4][6];
  for (int r = 0; r < 4; ++r)
    for (int p = 0; p < 6; ++p) {
      int a, b;
      pair_of(p, &a, &b);
      pair_sum[r][p] = absw[4 * r + a] + absw[4 * r + b];
    }
  int best = 0;
  float best_score = -1.f;
  for (int k = 0; k < 90; ++k) {
    const uint16_t q = table.packed[k];
    const float score = (pair_sum[0][q & 7] + pair_sum[1][(q >> 3) & 7]) +
                        (pair_sum[2][(q >> 6) & 7] + pair_sum[3][(q >> 9) & 7]);
    if (score > best_score) {
      best_score = score;
      best = k;
    }
  }
  return best;
}

// Row r's kept pair (a, b) of pattern k.
S24_HD void pattern_row(const TransposableTable& table, int k, int r, int* a, int* b) {
  pair_of((table.packed[k] >> (3 * r)) & 7, a, b);
}

}  // namespace sparse24::rules
