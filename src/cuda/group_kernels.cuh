// src/cuda/group_kernels.cuh: the CUDA group transforms (magnitude, explicit mask, MVUE24, soft
// threshold): one pass, dense in, compressed values and canonical metadata out. The rule of each
// group is rules24.h's, the code the CPU backend runs, so the two backends agree bit for bit.
// The rule is a template parameter: each rule's kernels are compiled on their own (one .cu file
// per rule), so no kernel carries the instructions of the other rules.
//
// Work unit: one metadata byte = two groups = 8 consecutive elements of a row; it reads 8 inputs
// and writes 4 values and 1 byte. Two kernels feed it:
//   * rows_kernel: row-major input whose rows are 16-byte aligned runs of 8: each thread loads 32
//     bytes of input (one or two metadata bytes) straight from global memory with vector loads
//     (no shared memory); bytes with finite inputs take a fast path (below), the rest process_byte;
//   * tile_kernel: anything else (notably the column-major dY^T of the weight gradient): a
//     32 x 64 tile goes through shared memory so that reads run along the contiguous dimension
//     and writes along rows.
#pragma once

#include "core/rules24.h"
#include "cuda/check.h"
#include "cuda/tile.cuh"
#include "cuda/transforms_cuda.h"

namespace sparse24::cuda::group {

constexpr int kThreads = 256;
constexpr int kTileR = 32, kTileC = 64;  // tile_kernel: 8 metadata bytes per tile row

struct GroupParams {
  void* values;                 // rows x cols/2, row-major, of the storage type
  uint8_t* meta;                // rows x row_bytes
  int64_t rows, groups, row_bytes;
  const uint8_t* mask_meta;     // kMask: the mask's canonical metadata
  uint64_t seed;                // kMvue
  float beta, scale;
  Overflow overflow;
  unsigned long long* bad;      // NonFinite::kError: first non-finite index; null under kPropagate
  uint8_t* hw_meta;             // the sm90 metadata, written beside the canonical one; or null
  Sm90Meta hw;                  // its geometry
};

// A kept input as the storage type: the raw bits when nothing changes them (same type, no scale),
// else converted as the CPU does (from_f32 of the exact float value).
template <typename In, typename Out>
__device__ __forceinline__ Out store_value(In v, float scale, Overflow ov) {
  if constexpr (std::is_same_v<In, Out>) {
    if (scale == 1.f) return v;  // finite values: from_f32(to_f32(v)) == v exactly
  }
  return from_f32<Out>(to_f32(v), scale, ov);
}

// A non-NaN value as the storage type, exactly as from_f32 (which also handles NaN) stores it.
// (With a scale the quotient v / scale may still be NaN: that case stays with from_f32.)
template <typename Out>
__device__ __forceinline__ Out from_f32_non_nan(float v, float scale, Overflow ov) {
  if constexpr (std::is_same_v<Out, f16_t>) {
    if (scale != 1.f) return from_f32<Out>(v, scale, ov);
    return {__half_as_ushort(__float2half_rn(ov == Overflow::kSaturate ? fminf(fmaxf(v, -65504.f), 65504.f) : v))};
  } else if constexpr (std::is_same_v<Out, bf16_t>) {
    if (scale != 1.f) return from_f32<Out>(v, scale, ov);
    constexpr float kMax = 3.38953139e38f;
    return {__bfloat16_as_ushort(__float2bfloat16_rn(ov == Overflow::kSaturate ? fminf(fmaxf(v, -kMax), kMax) : v))};
  } else {
    return from_f32<Out>(v, scale, ov);
  }
}

// The integer magnitude keys (rules::magnitude_key) of a group's 4 raw inputs; whether all are
// finite. When `report` and p.bad is set, a non-finite input reports its row-major index (the
// group's first element is at `first`).
template <typename In>
__device__ __forceinline__ bool group_keys(const In g[4], uint32_t key[4], int64_t first, bool report,
                                           const GroupParams& p) {
  bool finite = true;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    key[i] = rules::magnitude_key(g[i]);
    finite = finite && key[i] < rules::non_finite_key(In{});
  }
  if (!finite && p.bad && report) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (key[i] >= rules::non_finite_key(In{})) report_first(p.bad, first + i);
  }
  return finite;
}

// A metadata byte's 4 stored values and its code.
template <typename Out>
struct ByteOut {
  Vec<Out, 4> v;
  uint8_t meta;
};

// MVUE's general path for one metadata byte (`raw`: its 8 inputs): per group rules::apply_group
// on the exact inputs (NaN/Inf, sums beyond rules::mvue_normal_range), a non-finite input
// reported under NonFinite::kError.
template <typename In, typename Out>
__device__ __forceinline__ ByteOut<Out> mvue_general_byte(const Vec<In, 8> raw, int64_t row, int64_t byte, bool both,
                                                      const GroupParams& p) {
  const Philox4 words = mvue_words(p.seed, uint64_t(row * p.row_bytes + byte));
  ByteOut<Out> r;
  r.meta = 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const In* g = raw.v + 4 * h;
    uint32_t key[4];
    (void)group_keys(g, key, row * 4 * p.groups + 8 * byte + 4 * h, h == 0 || both, p);
    const float x[4] = {to_f32(g[0]), to_f32(g[1]), to_f32(g[2]), to_f32(g[3])};
    float v0 = 0.f, v1 = 0.f;
    const rules::Pick k = rules::apply_group(x, rules::GroupRule::kMvue, 0, philox_uniform(words.v[2 * h]),
                                             philox_uniform(words.v[2 * h + 1]), p.beta, &v0, &v1);
    r.v.v[2 * h] = from_f32<Out>(v0, p.scale, p.overflow);
    r.v.v[2 * h + 1] = from_f32<Out>(v1, p.scale, p.overflow);
    if (h == 0 || both) r.meta = uint8_t(r.meta | (group_code(k.i0, k.i1) << (4 * h)));
  }
  return r;
}

// How MVUE's fast path stores a group's two kept values (finite, neither NaN nor Inf):
// kPair/kPairSaturate for 16-bit outputs with scale 1, known at compile time: one paired
// conversion with that overflow (pack_pair's bits are from_f32_non_nan's for finite values);
// kAny decides per group from p (scale, overflow).
enum class MvueStore { kAny, kPair, kPairSaturate };
template <typename Out, MvueStore S>
__device__ __forceinline__ void mvue_store(float v0, float v1, const GroupParams& p, Out* dst) {
  constexpr bool k16 = std::is_same_v<Out, f16_t> || std::is_same_v<Out, bf16_t>;
  static_assert(S == MvueStore::kAny || k16, "paired stores are for 16-bit outputs");
  if constexpr (S != MvueStore::kAny) {
    *reinterpret_cast<uint32_t*>(dst) =
        pack_pair<Out>(v0, v1, S == MvueStore::kPairSaturate ? Overflow::kSaturate : Overflow::kPyTorch);
  } else if (k16 && p.scale == 1.f) {
    *reinterpret_cast<uint32_t*>(dst) = pack_pair<Out>(v0, v1, p.overflow);
  } else {
    dst[0] = from_f32_non_nan<Out>(v0, p.scale, p.overflow);
    dst[1] = from_f32_non_nan<Out>(v1, p.scale, p.overflow);
  }
}

// MVUE's fast path for one metadata byte, `x`: its 8 inputs as floats (exact for all but NaN).
// The values and code of rules::apply_group, bit for bit, when both groups' sums S lie in
// rules::mvue_normal_range (no NaN or Inf input, no sums near overflow: always for finite fp16):
// its normal-range steps, values stored by mvue_store (|v| <= S: neither NaN nor Inf). Else `out`
// and `meta` mean nothing and the byte needs mvue_general_byte. `sums` keeps the largest bits of
// every S seen (NaN above all: S is positive or NaN), so that callers test many bytes at once
// (mvue_sums_normal). Group 1's code is in `meta` even for a row's lone last group (callers mask
// it). `key`: mvue_key(p.seed); `n`: the byte's Philox counter, row * p.row_bytes + byte.
template <typename Out, MvueStore S>
__device__ __forceinline__ void mvue_fast_byte(const float x[8], const GroupParams& p, const PhiloxKey& key,
                                               uint64_t n, Vec<Out, 4>& out, uint8_t& meta, uint32_t& sums) {
  const rules::MvueSums m[2] = {rules::mvue_sums(x, kMvueEps), rules::mvue_sums(x + 4, kMvueEps)};
  const Philox4 words = mvue_words(key, n);
  uint32_t code = 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float d[4];
    rules::mvue_denominators<true>(m[h], d);
    const rules::MvueKept k =
        rules::mvue_draw(m[h], philox_uniform(words.v[2 * h]), philox_uniform(words.v[2 * h + 1]));
    const float* g = x + 4 * h;
    mvue_store<Out, S>(rules::mvue_value<true>(m[h], rules::kept0(k, g), rules::kept0(k, d)),
                       rules::mvue_value<true>(m[h], rules::kept1(k, g), rules::kept1(k, d)), p, out.v + 2 * h);
    // Its code group_code(i0, i1) = i0 + 4 i1 at nibble h, the terms picked as the values are.
    const uint32_t i0_code[4] = {0u, 1u << (4 * h), 2u << (4 * h), 3u << (4 * h)};
    const uint32_t i1_code[4] = {0u, 4u << (4 * h), 8u << (4 * h), 12u << (4 * h)};
    code += rules::kept0(k, i0_code) + rules::kept1(k, i1_code);
  }
  meta = uint8_t(code);
  sums = __vimax3_u32(sums, f32_to_bits(m[0].s), f32_to_bits(m[1].s));
}
// Whether every sum that went into `sums` (mvue_fast_byte; start at 0) lies in
// rules::mvue_normal_range.
__device__ __forceinline__ bool mvue_sums_normal(uint32_t sums) {
  return rules::mvue_normal_range(f32_from_bits(sums), kMvueEps);
}

// Stores one byte's 4 values (2 when the row's last byte holds one group).
template <typename Out>
__device__ __forceinline__ void store_values(const Vec<Out, 4>& out, int64_t row, int64_t byte, bool both,
                                             const GroupParams& p) {
  Out* dst = static_cast<Out*>(p.values) + row * 2 * p.groups + 4 * byte;
  if (both && p.groups % 2 == 0) {
    *reinterpret_cast<Vec<Out, 4>*>(dst) = out;  // 4 values, aligned: every row starts at a multiple of 4
  } else {
    dst[0] = out.v[0];
    dst[1] = out.v[1];
    if (both) {
      dst[2] = out.v[2];
      dst[3] = out.v[3];
    }
  }
}

// Stores one byte's values and its metadata (canonical, and sm90 when asked).
template <typename Out>
__device__ __forceinline__ void store_byte(const Vec<Out, 4>& out, uint8_t meta, int64_t row, int64_t byte, bool both,
                                           const GroupParams& p) {
  store_values<Out>(out, row, byte, both, p);
  p.meta[row * p.row_bytes + byte] = meta;
  if (p.hw_meta) p.hw_meta[p.hw.offset(row, byte)] = meta;
}

// The two groups of metadata byte `byte` of row `row`, from their 8 raw inputs. Magnitude and
// explicit-mask groups with finite values are chosen on integer keys (rules::magnitude_key) and
// copy or convert only the two kept values; everything else goes through rules::apply_group on
// floats. Both give the CPU's results bit for bit.
template <rules::GroupRule R, typename In, typename Out>
__device__ __forceinline__ void process_byte(const In raw[8], int64_t row, int64_t byte, const GroupParams& p) {
  const int64_t g0 = 2 * byte;
  const bool both = g0 + 1 < p.groups;
  if constexpr (R == rules::GroupRule::kMvue) {
    float x[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) x[i] = to_f32_non_nan(raw[i]);
    Vec<Out, 4> out;
    uint8_t meta;
    uint32_t sums = 0;
    mvue_fast_byte<Out, MvueStore::kAny>(x, p, mvue_key(p.seed), uint64_t(row * p.row_bytes + byte), out, meta, sums);
    if (mvue_sums_normal(sums)) {
      store_byte<Out>(out, both ? meta : meta & 0xF, row, byte, both, p);
    } else {
      Vec<In, 8> r;
#pragma unroll
      for (int i = 0; i < 8; ++i) r.v[i] = raw[i];
      const ByteOut<Out> b = mvue_general_byte<In, Out>(r, row, byte, both, p);
      store_byte<Out>(b.v, b.meta, row, byte, both, p);
    }
    return;
  }
  constexpr bool mask_rule = R == rules::GroupRule::kMask;
  const uint8_t mask_byte = mask_rule ? p.mask_meta[row * p.row_bytes + byte] : 0;
  Philox4 words{{0u, 0u, 0u, 0u}};  // MVUE: one Philox call for both groups
  if constexpr (R == rules::GroupRule::kMvue) words = mvue_words(p.seed, uint64_t(row * p.row_bytes + byte));
  Vec<Out, 4> out;
  uint8_t meta = 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const In* g = raw + 4 * h;
    uint32_t key[4];
    const bool finite = group_keys(g, key, row * 4 * p.groups + 4 * (g0 + h), h == 0 || both, p);
    const uint8_t mask_code = uint8_t((mask_byte >> (4 * h)) & 0xF);
    rules::Pick k;
    if (finite && (mask_rule || R == rules::GroupRule::kMagnitude)) {
      k = mask_rule ? rules::Pick{mask_code & 3, mask_code >> 2} : rules::top2(key);
      out.v[2 * h] = store_value<In, Out>(rules::pick4(g, k.i0), p.scale, p.overflow);
      out.v[2 * h + 1] = store_value<In, Out>(rules::pick4(g, k.i1), p.scale, p.overflow);
    } else {
      const float x[4] = {to_f32(g[0]), to_f32(g[1]), to_f32(g[2]), to_f32(g[3])};
      float v0 = 0.f, v1 = 0.f;
      k = rules::apply_group(x, R, mask_code, philox_uniform(words.v[2 * h]),
                             philox_uniform(words.v[2 * h + 1]), p.beta, &v0, &v1);
      out.v[2 * h] = from_f32<Out>(v0, p.scale, p.overflow);
      out.v[2 * h + 1] = from_f32<Out>(v1, p.scale, p.overflow);
    }
    if (h == 0 || both) meta = uint8_t(meta | (group_code(k.i0, k.i1) << (4 * h)));
  }
  store_byte<Out>(out, meta, row, byte, both, p);
}

// ---- rows_kernel's fast path (magnitude, soft threshold, explicit mask) ----------------------
// A byte whose 8 inputs are all finite (and, for the soft threshold, with a finite beta) needs
// none of process_byte's NaN/Inf handling: its positions come from integer arithmetic on the
// magnitude keys, its values from selects (16-bit inputs: byte permutes), and its conversions see
// no NaN. Every other byte goes to process_byte. Both give the CPU's results bit for bit.

// A metadata byte's 8 raw inputs as 32-bit words (16 bytes of 16-bit inputs, 32 of fp32).
template <typename In>
using RawByte = Vec<uint32_t, 2 * int(sizeof(In))>;

// rules::top2 on lanes: each 32-bit word holds one key per lane (fp32: one lane, kTop = 2^31;
// 16-bit inputs: group 0's key in the low half and group 1's in the high half, kTop = 2^15 per
// half), every key below its lane's top bit. (k_i | top) - k_j has the top bit set iff
// k_i >= k_j, and never borrows across lanes. Position i is kept iff it beats at least two of the
// other three (j beats i when k_j > k_i, or k_j == k_i and j < i): the top bit of kept[i].
template <uint32_t kTop>
S24_HD void top2_lanes(const uint32_t k[4], uint32_t kept[4]) {
  const uint32_t c01 = (k[0] | kTop) - k[1], c02 = (k[0] | kTop) - k[2], c03 = (k[0] | kTop) - k[3];
  const uint32_t c12 = (k[1] | kTop) - k[2], c13 = (k[1] | kTop) - k[3], c23 = (k[2] | kTop) - k[3];
  auto two_of = [](uint32_t a, uint32_t b, uint32_t c) { return (a & b) | (c & (a | b)); };
  kept[0] = two_of(c01, c02, c03) & kTop;
  kept[1] = two_of(~c01, c12, c13) & kTop;
  kept[2] = two_of(~c02, ~c12, c23) & kTop;
  kept[3] = two_of(~c03, ~c13, ~c23) & kTop;
}

// The kept positions i0 < i1 per lane, from top2_lanes: i0 = 0 if kept[0], else 1 if kept[1],
// else 2; i1 - 1 = 2 if kept[3], else 1 if kept[2], else 0 (lane values at bit 0, and 16).
template <uint32_t kTop>
S24_HD void kept_positions(const uint32_t kept[4], uint32_t* i0, uint32_t* i1_minus_1) {
  constexpr int kShift = kTop == 0x80000000u ? 31 : 15;
  *i0 = ((~kept[0] & kTop) >> kShift) + ((~kept[0] & ~kept[1] & kTop) >> kShift);
  *i1_minus_1 = ((kept[3] | kept[2]) >> kShift) + (kept[3] >> kShift);
}

// The byte-permute selector that takes positions i0 and i1 of a group's two 32-bit words of
// 16-bit values: bytes 2 i0, 2 i0 + 1, 2 i1, 2 i1 + 1. Lane-wise (no carries: at most 0x7654).
S24_HD uint32_t pair_selector(uint32_t i0, uint32_t i1) { return 0x1010u + 0x22u * i0 + 0x2200u * i1; }

// The second smallest of four keys (per lane): the larger magnitude a group drops, soft
// threshold's t.
template <typename Min, typename Max>
__device__ __forceinline__ uint32_t second_smallest(const uint32_t k[4], Min mn, Max mx) {
  return mn(mx(mn(k[0], k[1]), mn(k[2], k[3])), mn(mx(k[0], k[1]), mx(k[2], k[3])));
}

// Two non-NaN floats as the storage type with scale 1, as from_f32_non_nan stores each; 16-bit
// types convert as a pair (one cvt). `finite`: both are finite, so that .satfinite (overflow
// after rounding becomes the largest finite value) equals from_f32's clamp before rounding.
template <typename Out>
__device__ __forceinline__ void store_pair(float v0, float v1, Overflow ov, bool finite, Out* dst) {
  constexpr bool f16 = std::is_same_v<Out, f16_t>, bf16 = std::is_same_v<Out, bf16_t>;
  if constexpr (f16 || bf16) {
    constexpr float kMax = f16 ? 65504.f : 3.38953139e38f;
    if (ov == Overflow::kSaturate && !finite) {  // from_f32's clamp, then a plain conversion
      v0 = fminf(fmaxf(v0, -kMax), kMax);
      v1 = fminf(fmaxf(v1, -kMax), kMax);
    }
    // dst: a 4-byte aligned pair of a Vec<Out, 4>
    *reinterpret_cast<uint32_t*>(dst) = pack_pair<Out>(v0, v1, finite ? ov : Overflow::kPyTorch);
  } else {
    dst[0] = from_f32_non_nan<Out>(v0, 1.f, ov);
    dst[1] = from_f32_non_nan<Out>(v1, 1.f, ov);
  }
}

// A group's two kept finite inputs x0, x1 (positions i0 < i1) as the storage type: the values of
// rules::apply_group, converted as process_byte converts them. t_key: the soft threshold's t as a
// magnitude key.
template <rules::GroupRule R, typename In, typename Out>
__device__ __forceinline__ void kept_values(In x0, In x1, uint32_t t_key, const GroupParams& p, Out* dst) {
  if constexpr (R == rules::GroupRule::kSoftThreshold) {
    // rules::soft_threshold; with finite inputs and beta the values are never NaN.
    const float t = to_f32_non_nan(word_element<In>(&t_key, 0));
    const float a0 = to_f32_non_nan(x0), a1 = to_f32_non_nan(x1);
    const float m0 = (rules::abs_f(a0) - t) * p.beta, m1 = (rules::abs_f(a1) - t) * p.beta;
    const float v0 = a0 < 0.f ? -m0 : m0, v1 = a1 < 0.f ? -m1 : m1;
    if (p.scale == 1.f) {
      store_pair<Out>(v0, v1, p.overflow, false, dst);
    } else {
      dst[0] = from_f32<Out>(v0, p.scale, p.overflow);
      dst[1] = from_f32<Out>(v1, p.scale, p.overflow);
    }
  } else if (p.scale != 1.f) {
    dst[0] = from_f32<Out>(to_f32_non_nan(x0), p.scale, p.overflow);
    dst[1] = from_f32<Out>(to_f32_non_nan(x1), p.scale, p.overflow);
  } else if constexpr (std::is_same_v<In, Out>) {
    dst[0] = x0;  // the raw bits, as store_value
    dst[1] = x1;
  } else {
    store_pair<Out>(to_f32_non_nan(x0), to_f32_non_nan(x1), p.overflow, true, dst);
  }
}

// The fast path of one metadata byte (w: its 8 raw inputs): its 4 values and the byte; false
// (nothing written) when the byte needs process_byte.
template <rules::GroupRule R, typename In, typename Out>
__device__ __forceinline__ bool fast_byte(const RawByte<In>& w, uint8_t mask_byte, const GroupParams& p,
                                          Vec<Out, 4>& out, uint8_t& meta) {
  constexpr bool kMask = R == rules::GroupRule::kMask;
  if (R == rules::GroupRule::kSoftThreshold && !rules::is_finite_f(p.beta)) return false;
  if constexpr (sizeof(In) == 4) {
    uint32_t k[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) k[i] = w.v[i] & 0x7FFFFFFFu;  // magnitude_key of a finite input
    const uint32_t top = __vimax3_u32(__vimax3_u32(k[0], k[1], k[2]), __vimax3_u32(k[3], k[4], k[5]), max(k[6], k[7]));
    if (top >= rules::non_finite_key(In{})) return false;
    uint32_t codes = 0;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const In* g = reinterpret_cast<const In*>(w.v) + 4 * h;
      uint32_t i0, i1;
      if constexpr (kMask) {
        i0 = (mask_byte >> (4 * h)) & 3;
        i1 = (mask_byte >> (4 * h + 2)) & 3;
      } else {
        uint32_t kept[4];
        top2_lanes<0x80000000u>(k + 4 * h, kept);
        kept_positions<0x80000000u>(kept, &i0, &i1);
        ++i1;
        codes |= (i0 | i1 << 2) << (4 * h);
      }
      const uint32_t t = R == rules::GroupRule::kSoftThreshold
                             ? second_smallest(k + 4 * h, [](uint32_t a, uint32_t b) { return min(a, b); },
                                               [](uint32_t a, uint32_t b) { return max(a, b); })
                             : 0u;
      if constexpr (kMask) {  // any code, read as rules::apply_group reads it
        kept_values<R, In, Out>(rules::pick4(g, int(i0)), rules::pick4(g, int(i1)), t, p, out.v + 2 * h);
      } else {  // i0 <= 2, i1 >= 1
        kept_values<R, In, Out>(i0 == 0 ? g[0] : (i0 == 1 ? g[1] : g[2]), i1 == 3 ? g[3] : (i1 == 2 ? g[2] : g[1]), t,
                                p, out.v + 2 * h);
      }
    }
    meta = kMask ? mask_byte : uint8_t(codes);
  } else {
    // Lane h of k[i] (low half: h = 0) holds the key of position i of group h.
    uint32_t k[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) k[i] = __byte_perm(w.v[i / 2], w.v[2 + i / 2], i % 2 ? 0x7632 : 0x5410) & 0x7FFF7FFFu;
    const uint32_t top = __vmaxu2(__vimax3_u16x2(k[0], k[1], k[2]), k[3]);
    if (max(top & 0xFFFFu, top >> 16) >= rules::non_finite_key(In{})) return false;
    uint32_t sel;  // lane h: the selector of group h's kept pair
    if constexpr (kMask) {
      sel = pair_selector(mask_byte & 3, (mask_byte >> 2) & 3) | pair_selector((mask_byte >> 4) & 3, mask_byte >> 6) << 16;
      meta = mask_byte;
    } else {
      uint32_t kept[4], i0, i1m1;
      top2_lanes<0x80008000u>(k, kept);
      kept_positions<0x80008000u>(kept, &i0, &i1m1);
      sel = 0x32103210u + 0x22u * i0 + 0x2200u * i1m1;  // pair_selector(i0, i1m1 + 1) per lane
      const uint32_t codes = i0 + 4u * i1m1 + 0x00040004u;
      meta = uint8_t((codes & 0xFu) | ((codes >> 12) & 0xF0u));
    }
    const uint32_t pair[2] = {__byte_perm(w.v[0], w.v[1], sel & 0xFFFFu), __byte_perm(w.v[2], w.v[3], sel >> 16)};
    if constexpr (std::is_same_v<In, Out> && R != rules::GroupRule::kSoftThreshold) {
      if (p.scale == 1.f) {  // the raw bits, as store_value
        *reinterpret_cast<uint2*>(&out) = make_uint2(pair[0], pair[1]);
        return true;
      }
    }
    const uint32_t t = R == rules::GroupRule::kSoftThreshold
                           ? second_smallest(k, [](uint32_t a, uint32_t b) { return __vminu2(a, b); },
                                             [](uint32_t a, uint32_t b) { return __vmaxu2(a, b); })
                           : 0u;
#pragma unroll
    for (int h = 0; h < 2; ++h)
      kept_values<R, In, Out>(In{uint16_t(pair[h])}, In{uint16_t(pair[h] >> 16)}, (t >> (16 * h)) & 0xFFFFu, p,
                              out.v + 2 * h);
  }
  return true;
}

// Resident blocks per SM that rows_kernel asks of the register allocator: the fast path fits 32
// registers (fp32) and 40 (16-bit: two bytes per thread); only the out-of-line call of process_byte
// would need more, and may spill instead. MVUE: the compiler's choice.
template <rules::GroupRule R, typename In>
constexpr int rows_min_blocks() {
  return R == rules::GroupRule::kMvue ? 1 : (sizeof(In) == 4 ? 8 : 6);
}

// process_byte out of line, for the rare bytes the fast path leaves.
template <rules::GroupRule R, typename In, typename Out>
__device__ __noinline__ void slow_byte(const RawByte<In> w, int64_t row, int64_t byte, const GroupParams& p) {
  In x[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) x[i] = word_element<In>(w.v, i);
  process_byte<R, In, Out>(x, row, byte, p);
}

// Row-major input whose rows are 16-byte aligned runs of 8 (so the byte count of a row is even
// in groups and every byte holds two). Block (32, 8): a warp takes N * 32 consecutive metadata
// bytes of one row, N = 32 bytes of input per thread (fp32: 1, 16-bit: 2), all loads issued
// before any byte is processed. MVUE keeps one byte per thread and process_byte.
template <rules::GroupRule R, typename In, typename Out>
__global__ void __launch_bounds__(kThreads, rows_min_blocks<R, In>()) rows_kernel(const __grid_constant__ DeviceMatrix in,
                                                                                 const __grid_constant__ GroupParams p) {
  constexpr bool mvue = R == rules::GroupRule::kMvue;
  constexpr int N = mvue ? 1 : 32 / (8 * int(sizeof(In)));
  const uint32_t row = blockIdx.y * 8 + threadIdx.y, byte0 = blockIdx.x * (32 * N) + threadIdx.x;
  const uint32_t row_bytes = uint32_t(p.row_bytes);  // < 2^31, as every byte index: launch checks
  if (row >= p.rows || byte0 >= row_bytes) return;
  const auto* src = reinterpret_cast<const RawByte<In>*>(static_cast<const In*>(in.data) + int64_t(row) * in.sr);
  RawByte<In> w[N];
  uint8_t mask_byte[N] = {};
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const uint32_t byte = byte0 + 32 * j;
    if (byte < row_bytes) {
      w[j] = src[byte];
      if (R == rules::GroupRule::kMask) mask_byte[j] = p.mask_meta[uint64_t(row) * row_bytes + byte];
    }
  }
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const uint32_t byte = byte0 + 32 * j;
    if (byte >= row_bytes) break;
    if constexpr (mvue) {
      In x[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) x[i] = word_element<In>(w[j].v, i);
      process_byte<R, In, Out>(x, row, byte, p);
    } else {
      Vec<Out, 4> out;
      uint8_t meta;
      if (fast_byte<R, In, Out>(w[j], mask_byte[j], p, out, meta)) {
        p.meta[uint64_t(row) * row_bytes + byte] = meta;
        if (p.hw_meta) p.hw_meta[p.hw.offset(row, byte)] = meta;
        reinterpret_cast<Vec<Out, 4>*>(p.values)[uint64_t(row) * row_bytes + byte] = out;
      } else {
        slow_byte<R, In, Out>(w[j], row, byte, p);
      }
    }
  }
}

template <rules::GroupRule R, typename In, typename Out>
__global__ void __launch_bounds__(kThreads) tile_kernel(DeviceMatrix in, GroupParams p, bool vec, bool along_rows) {
  __shared__ In tile[kTileR][kTileC + 1];
  const int64_t r0 = int64_t(blockIdx.y) * kTileR, c0 = int64_t(blockIdx.x) * kTileC;
  load_tile<In, In, kTileR, kTileC, kThreads>(in, r0, c0, vec, along_rows, tile);
  __syncthreads();
  const int r = threadIdx.x / 8, b = threadIdx.x % 8;  // tile row, metadata byte
  const int64_t row = r0 + r, byte = c0 / 8 + b;
  if (row >= p.rows || byte >= p.row_bytes) return;
  In x[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) x[i] = tile[r][8 * b + i];
  process_byte<R, In, Out>(x, row, byte, p);
}

template <rules::GroupRule R, typename In, typename Out>
void launch(const TensorView& in, const GroupParams& p) {
  bool along_rows = false;
  const bool vec = vector_friendly(in, &along_rows);
  if (vec && along_rows && p.row_bytes < (int64_t(1) << 31)) {
    constexpr int kBytesPerBlock = R == rules::GroupRule::kMvue ? 32 : 32 * (32 / (8 * int(sizeof(In))));
    const dim3 grid(unsigned((p.row_bytes + kBytesPerBlock - 1) / kBytesPerBlock), unsigned((p.rows + 7) / 8));
    S24_CHECK(grid.y <= 65535u, kShape, "CUDA transforms: ", in.describe(), " has too many rows for one launch");
    rows_kernel<R, In, Out><<<grid, dim3(32, 8)>>>(device_matrix(in), p);
  } else {
    const dim3 grid(unsigned((in.cols() + kTileC - 1) / kTileC), unsigned((in.rows() + kTileR - 1) / kTileR));
    S24_CHECK(grid.y <= 65535u, kShape, "CUDA transforms: ", in.describe(), " has too many rows for one launch");
    tile_kernel<R, In, Out><<<grid, kThreads>>>(device_matrix(in), p, vec, along_rows);
  }
  S24_CUDA_CHECK_LAUNCH("group kernel");
}

// Launches rule R on `in` for the storage type of the output (every input x output type pair).
template <rules::GroupRule R>
void launch_rule(const TensorView& in, DType out_dtype, const GroupParams& p) {
  dispatch_input_dtype(in.dtype, [&](auto itag) {
    dispatch_dtype(out_dtype, [&](auto otag) {
      using In = typename decltype(itag)::type;
      using Out = typename decltype(otag)::type;
      if constexpr (kIsValueType<Out>) launch<R, In, Out>(in, p);
    });
  });
}

// One instantiation per rule, each in its own translation unit (group_<rule>.cu).
void launch_magnitude(const TensorView& in, DType out_dtype, const GroupParams& p);
void launch_mask(const TensorView& in, DType out_dtype, const GroupParams& p);
void launch_mvue(const TensorView& in, DType out_dtype, const GroupParams& p);
void launch_soft_threshold(const TensorView& in, DType out_dtype, const GroupParams& p);

}  // namespace sparse24::cuda::group
