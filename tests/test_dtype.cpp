// tests/test_dtype.cpp: float <-> fp16 / bf16 / fp8 e4m3fn / fp8 e5m2 / int8 conversions
// (include/sparse24/dtype.h), checked bit for bit against an independent reference written here
// in double precision: decoding by the textbook formula, encoding by a nearest-value search over
// every code of the type (ties to the even code), with the overflow rules of docs/DTYPES.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "sparse24/dtype.h"
#include "sparse24/error.h"

namespace sparse24 {
namespace {

// ---------------------------------------------------------------------------------------------
// Helpers.

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%X", unsigned(v));
  return buf;
}
// Compares codes and prints both in hex on failure.
#define EXPECT_CODE(actual, expected) EXPECT_EQ(hex(uint32_t(actual)), hex(uint32_t(expected)))

float f(uint32_t bits) { return f32_from_bits(bits); }
float p2(int e) { return std::ldexp(1.f, e); }  // 2^e, exact for e in [-149, 127]
constexpr float kInfF = std::numeric_limits<float>::infinity();

// A floating format: 1 sign bit, EXP exponent bits, MAN mantissa bits, bias. `ieee`: the all-ones
// exponent holds Inf (mantissa 0) and NaNs; otherwise (e4m3fn) only the all-ones code is NaN.
struct Format {
  const char* name;
  int exp, man, bias;
  bool ieee;
  uint32_t (*encode)(float, Overflow);
  float (*decode)(uint32_t);

  uint32_t sign_bit() const { return 1u << (exp + man); }
  uint32_t man_mask() const { return (1u << man) - 1u; }
  uint32_t exp_max() const { return (1u << exp) - 1u; }
  uint32_t num_codes() const { return 2u * sign_bit(); }
};

const Format kF16{"fp16", 5, 10, 15, true,
                  [](float x, Overflow ov) { return uint32_t(f32_to_f16(x, ov)); },
                  [](uint32_t c) { return f16_to_f32(uint16_t(c)); }};
const Format kBF16{"bf16", 8, 7, 127, true,
                   [](float x, Overflow ov) { return uint32_t(f32_to_bf16(x, ov)); },
                   [](uint32_t c) { return bf16_to_f32(uint16_t(c)); }};
const Format kE4M3{"e4m3", 4, 3, 7, false,
                   [](float x, Overflow ov) { return uint32_t(f32_to_e4m3(x, ov)); },
                   [](uint32_t c) { return e4m3_to_f32(uint8_t(c)); }};
const Format kE5M2{"e5m2", 5, 2, 15, true,
                   [](float x, Overflow ov) { return uint32_t(f32_to_e5m2(x, ov)); },
                   [](uint32_t c) { return e5m2_to_f32(uint8_t(c)); }};
const Format* const kFormats[] = {&kF16, &kBF16, &kE4M3, &kE5M2};
const Overflow kModes[] = {Overflow::kPyTorch, Overflow::kSaturate};
const char* mode_name(Overflow ov) { return ov == Overflow::kPyTorch ? "kPyTorch" : "kSaturate"; }

enum class Kind { kFinite, kInf, kNaN };

Kind ref_kind(const Format& fm, uint32_t code) {
  const uint32_t e = (code >> fm.man) & fm.exp_max(), m = code & fm.man_mask();
  if (e != fm.exp_max()) return Kind::kFinite;
  if (fm.ieee) return m == 0 ? Kind::kInf : Kind::kNaN;
  return m == fm.man_mask() ? Kind::kNaN : Kind::kFinite;
}

// Value of a magnitude code (sign bit clear) read with the textbook formula as though there were
// no special codes: 2^(e-bias) * (1 + m/2^MAN), subnormals m * 2^(1-bias-MAN).
double ref_magnitude(const Format& fm, uint32_t mag) {
  const int e = int(mag >> fm.man);
  const double m = double(mag & fm.man_mask());
  if (e == 0) return std::ldexp(m, 1 - fm.bias - fm.man);
  return std::ldexp(1.0 + std::ldexp(m, -fm.man), e - fm.bias);
}

// Reference decode in double (NaN: any NaN; Inf and zero carry the sign).
double ref_decode(const Format& fm, uint32_t code) {
  const double sign = (code & fm.sign_bit()) ? -1.0 : 1.0;
  switch (ref_kind(fm, code)) {
    case Kind::kNaN: return std::numeric_limits<double>::quiet_NaN();
    case Kind::kInf: return sign * std::numeric_limits<double>::infinity();
    case Kind::kFinite: break;
  }
  return sign * ref_magnitude(fm, code & (fm.sign_bit() - 1u));
}

// The float bits a NaN code must decode to: the NaN's mantissa in the float's top mantissa bits.
uint32_t ref_nan_float_bits(const Format& fm, uint32_t code) {
  const uint32_t sign = (code & fm.sign_bit()) ? 0x80000000u : 0u;
  return sign | 0x7F800000u | ((code & fm.man_mask()) << (23 - fm.man));
}

// Reference encoder: the non-negative finite values of the type, sorted, plus one virtual entry
// past the largest finite value (the value the next code would have with an unbounded exponent:
// 2^(emax+1) for the IEEE-like types, 480 for e4m3fn), so that rounding "up out of range" is
// decided by the same nearest / ties-to-even search as any other value.
struct RefEncoder {
  const Format* fm;
  std::vector<double> value;
  std::vector<uint32_t> code;
  uint32_t max_finite = 0;  // magnitude code of the largest finite value
  uint32_t virtual_code = 0;

  explicit RefEncoder(const Format& format) : fm(&format) {
    std::vector<std::pair<double, uint32_t>> entries;
    for (uint32_t c = 0; c < format.sign_bit(); ++c) {
      if (ref_kind(format, c) != Kind::kFinite) continue;
      entries.emplace_back(ref_magnitude(format, c), c);
      if (ref_magnitude(format, c) > ref_magnitude(format, max_finite)) max_finite = c;
    }
    virtual_code = max_finite + 1;
    entries.emplace_back(ref_magnitude(format, virtual_code), virtual_code);
    std::sort(entries.begin(), entries.end());
    for (const auto& e : entries) {
      value.push_back(e.first);
      code.push_back(e.second);
    }
  }

  uint32_t overflow_code(Overflow ov) const {
    if (ov == Overflow::kSaturate) return max_finite;
    return fm->ieee ? fm->exp_max() << fm->man : fm->sign_bit() - 1u;  // Inf, or e4m3fn's NaN
  }

  uint32_t operator()(float x, Overflow ov) const {
    const uint32_t sign = std::signbit(x) ? fm->sign_bit() : 0u;
    if (std::isnan(x)) {
      if (!fm->ieee) return sign | (fm->sign_bit() - 1u);
      uint32_t payload = (f32_to_bits(x) & 0x7FFFFFu) >> (23 - fm->man);
      if (payload == 0) payload = 1u << (fm->man - 1);
      return sign | (fm->exp_max() << fm->man) | payload;
    }
    const double ax = std::fabs(double(x));
    if (ax >= value.back()) return sign | overflow_code(ov);  // includes Inf
    const size_t hi = size_t(std::upper_bound(value.begin(), value.end(), ax) - value.begin());
    const size_t lo = hi - 1;  // value[lo] <= ax < value[hi]
    size_t pick = lo;
    if (ax != value[lo]) {
      const double mid = 0.5 * (value[lo] + value[hi]);  // exact in double
      if (ax > mid || (ax == mid && (code[hi] & 1u) == 0)) pick = hi;
    }
    if (code[pick] == virtual_code) return sign | overflow_code(ov);
    return sign | code[pick];
  }
};

// Runs the encoder under test and the reference on every input, in both modes; reports the
// first few mismatches and their count.
void compare_with_reference(const Format& fm, const std::vector<float>& inputs) {
  const RefEncoder ref(fm);
  for (Overflow ov : kModes) {
    int mismatches = 0;
    for (float x : inputs) {
      const uint32_t want = ref(x, ov), got = fm.encode(x, ov);
      if (want == got) continue;
      if (++mismatches <= 8)
        ADD_FAILURE() << fm.name << " " << mode_name(ov) << ": x = " << x << " (bits "
                      << hex(f32_to_bits(x)) << ") -> " << hex(got) << ", expected " << hex(want);
    }
    EXPECT_EQ(mismatches, 0) << fm.name << " " << mode_name(ov) << " of " << inputs.size();
  }
}

// Midpoints between all adjacent non-negative values (including the one between the largest
// finite value and the virtual next one), the floats just below and above each, the values
// themselves, and all of it negated.
std::vector<float> midpoint_inputs(const Format& fm) {
  const RefEncoder ref(fm);
  std::vector<float> out;
  for (size_t i = 0; i + 1 < ref.value.size(); ++i) {
    const double mid = 0.5 * (ref.value[i] + ref.value[i + 1]);
    const float m = float(mid);
    EXPECT_EQ(double(m), mid) << fm.name << ": midpoint not exact in float";
    for (float x : {m, std::nextafter(m, 0.f), std::nextafter(m, kInfF), float(ref.value[i])})
      out.insert(out.end(), {x, -x});
  }
  const float top = float(ref.value.back());
  for (float x : {top, std::nextafter(top, 0.f), std::nextafter(top, kInfF), 2 * top, kInfF})
    out.insert(out.end(), {x, -x});
  return out;
}

// Random floats: magnitudes log-uniform from 2^-30 to 2^(max_exp), both signs, random mantissa;
// plus uniformly random bit patterns (float subnormals, huge values, Infs, NaNs).
std::vector<float> random_inputs(uint64_t seed, int max_exp, int n) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint32_t> exp_dist(uint32_t(127 - 30), uint32_t(127 + max_exp));
  std::uniform_int_distribution<uint32_t> man_dist(0, 0x7FFFFFu), bits_dist;
  std::vector<float> out;
  out.reserve(size_t(2 * n));
  for (int i = 0; i < n; ++i) {
    const uint32_t sign = (rng() & 1u) << 31;
    out.push_back(f(sign | (exp_dist(rng) << 23) | man_dist(rng)));
    out.push_back(f(bits_dist(rng)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding.

TEST(DTypeDecode, EveryCodeMatchesFormula) {
  for (const Format* fm : kFormats) {
    int mismatches = 0;
    for (uint32_t c = 0; c < fm->num_codes(); ++c) {
      const float got = fm->decode(c);
      uint32_t want_bits;
      if (ref_kind(*fm, c) == Kind::kNaN) {
        want_bits = ref_nan_float_bits(*fm, c);
      } else {
        const double want = ref_decode(*fm, c);
        ASSERT_EQ(double(float(want)), want) << fm->name << " " << hex(c) << " not exact in float";
        want_bits = f32_to_bits(float(want));
      }
      if (f32_to_bits(got) != want_bits && ++mismatches <= 8)
        ADD_FAILURE() << fm->name << " " << hex(c) << " -> " << hex(f32_to_bits(got)) << ", expected "
                      << hex(want_bits);
    }
    EXPECT_EQ(mismatches, 0) << fm->name;
  }
}

TEST(DTypeDecode, KnownValues) {
  EXPECT_EQ(e4m3_to_f32(0x7E), 448.f);
  EXPECT_EQ(e4m3_to_f32(0xFE), -448.f);
  EXPECT_EQ(e4m3_to_f32(0x01), p2(-9));
  EXPECT_EQ(e4m3_to_f32(0x07), 7 * p2(-9));
  EXPECT_EQ(e4m3_to_f32(0x08), p2(-6));
  EXPECT_EQ(e4m3_to_f32(0x38), 1.f);
  EXPECT_EQ(e4m3_to_f32(0x78), 256.f);
  EXPECT_EQ(e4m3_to_f32(0x79), 288.f);
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7F)));
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xFF)));
  EXPECT_CODE(f32_to_bits(e4m3_to_f32(0x80)), 0x80000000u);  // -0

  EXPECT_EQ(e5m2_to_f32(0x7B), 57344.f);
  EXPECT_EQ(e5m2_to_f32(0x01), p2(-16));
  EXPECT_EQ(e5m2_to_f32(0x04), p2(-14));
  EXPECT_EQ(e5m2_to_f32(0x3C), 1.f);
  EXPECT_EQ(e5m2_to_f32(0x7C), kInfF);
  EXPECT_EQ(e5m2_to_f32(0xFC), -kInfF);
  EXPECT_CODE(f32_to_bits(e5m2_to_f32(0x7E)), 0x7FC00000u);  // e5m2's quiet NaN -> float's
  EXPECT_CODE(f32_to_bits(e5m2_to_f32(0x80)), 0x80000000u);

  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.f);
  EXPECT_EQ(f16_to_f32(0x0001), p2(-24));
  EXPECT_EQ(f16_to_f32(0x03FF), 1023 * p2(-24));
  EXPECT_EQ(f16_to_f32(0x0400), p2(-14));
  EXPECT_EQ(f16_to_f32(0x3C00), 1.f);
  EXPECT_EQ(f16_to_f32(0xC000), -2.f);
  EXPECT_EQ(f16_to_f32(0x7C00), kInfF);
  EXPECT_CODE(f32_to_bits(f16_to_f32(0x7E00)), 0x7FC00000u);

  EXPECT_EQ(bf16_to_f32(0x7F7F), 3.38953139e38f);
  EXPECT_EQ(bf16_to_f32(0x0001), p2(-133));
  EXPECT_EQ(bf16_to_f32(0x0080), p2(-126));
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.f);
  EXPECT_EQ(bf16_to_f32(0xFF80), -kInfF);
}

TEST(DTypeDecode, DTypeMaxIsLargestFiniteCode) {
  EXPECT_EQ(dtype_max(DType::kF16), f16_to_f32(0x7BFF));
  EXPECT_EQ(dtype_max(DType::kBF16), bf16_to_f32(0x7F7F));
  EXPECT_EQ(dtype_max(DType::kF8E4M3), e4m3_to_f32(0x7E));
  EXPECT_EQ(dtype_max(DType::kF8E5M2), e5m2_to_f32(0x7B));
  EXPECT_EQ(dtype_max(DType::kF32), std::numeric_limits<float>::max());
  EXPECT_EQ(dtype_max(DType::kI8), 127.f);
  EXPECT_EQ(dtype_max(DType::kU8), 255.f);
  for (const Format* fm : kFormats) {
    const RefEncoder ref(*fm);
    EXPECT_EQ(double(fm->decode(ref.max_finite)), ref.value[ref.value.size() - 2]) << fm->name;
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips: every code (zeros, subnormals, NaNs, Infs) decodes to a float that encodes back.

TEST(DTypeRoundTrip, EveryCodeOfEveryType) {
  for (const Format* fm : kFormats) {
    const RefEncoder ref(*fm);
    for (Overflow ov : kModes) {
      int mismatches = 0;
      for (uint32_t c = 0; c < fm->num_codes(); ++c) {
        uint32_t want = c;
        if (ov == Overflow::kSaturate && ref_kind(*fm, c) == Kind::kInf)
          want = (c & fm->sign_bit()) | ref.max_finite;  // Inf saturates
        const uint32_t got = fm->encode(fm->decode(c), ov);
        if (got != want && ++mismatches <= 8)
          ADD_FAILURE() << fm->name << " " << mode_name(ov) << ": " << hex(c) << " -> "
                        << hex(f32_to_bits(fm->decode(c))) << " -> " << hex(got);
      }
      EXPECT_EQ(mismatches, 0) << fm->name << " " << mode_name(ov);
    }
  }
}

TEST(DTypeRoundTrip, StorageStructs) {
  for (uint32_t c = 0; c < 256; ++c) {
    const float x8 = e4m3_to_f32(uint8_t(c)), x5 = e5m2_to_f32(uint8_t(c));
    EXPECT_CODE(f32_to_bits(to_f32(e4m3_t{uint8_t(c)})), f32_to_bits(x8));
    EXPECT_CODE(f32_to_bits(to_f32(e5m2_t{uint8_t(c)})), f32_to_bits(x5));
    EXPECT_CODE(from_f32<e4m3_t>(x8, 1.f, Overflow::kPyTorch).bits, c);
    EXPECT_CODE(from_f32<e5m2_t>(x5, 1.f, Overflow::kPyTorch).bits, c);
  }
  EXPECT_CODE(from_f32<f16_t>(1.5f, 1.f, Overflow::kPyTorch).bits, 0x3E00u);
  EXPECT_CODE(from_f32<bf16_t>(1.5f, 1.f, Overflow::kPyTorch).bits, 0x3FC0u);
  EXPECT_EQ(to_f32(f16_t{0x3E00}), 1.5f);
  EXPECT_EQ(to_f32(bf16_t{0x3FC0}), 1.5f);
  // The scale divides before rounding: 896 / 2 = 448, 1000 / 2 = 500 overflows.
  EXPECT_CODE(from_f32<e4m3_t>(896.f, 2.f, Overflow::kPyTorch).bits, 0x7Eu);
  EXPECT_CODE(from_f32<e4m3_t>(1000.f, 2.f, Overflow::kPyTorch).bits, 0x7Fu);
  EXPECT_CODE(from_f32<e4m3_t>(1000.f, 2.f, Overflow::kSaturate).bits, 0x7Eu);
  EXPECT_CODE(from_f32<e5m2_t>(3.f, 0.5f, Overflow::kPyTorch).bits, 0x46u);  // 6 = 1.5 * 2^2
  EXPECT_CODE(from_f32<f16_t>(1.f, 4.f, Overflow::kPyTorch).bits, 0x3400u);  // 0.25
  EXPECT_EQ(from_f32<float>(3.f, 2.f, Overflow::kPyTorch), 1.5f);
  EXPECT_EQ(from_f32<float>(3.f, 1.f, Overflow::kPyTorch), 3.f);
}

// ---------------------------------------------------------------------------------------------
// Rounding against the reference encoder.

TEST(DTypeRounding, MidpointsAndNeighborsE4M3) { compare_with_reference(kE4M3, midpoint_inputs(kE4M3)); }
TEST(DTypeRounding, MidpointsAndNeighborsE5M2) { compare_with_reference(kE5M2, midpoint_inputs(kE5M2)); }
TEST(DTypeRounding, MidpointsAndNeighborsF16) { compare_with_reference(kF16, midpoint_inputs(kF16)); }
TEST(DTypeRounding, MidpointsAndNeighborsBF16) { compare_with_reference(kBF16, midpoint_inputs(kBF16)); }

TEST(DTypeRounding, RandomE4M3) { compare_with_reference(kE4M3, random_inputs(1, 12, 100000)); }
TEST(DTypeRounding, RandomE5M2) { compare_with_reference(kE5M2, random_inputs(2, 20, 100000)); }
TEST(DTypeRounding, RandomF16) { compare_with_reference(kF16, random_inputs(3, 20, 100000)); }
TEST(DTypeRounding, RandomBF16) { compare_with_reference(kBF16, random_inputs(4, 127, 100000)); }

TEST(DTypeRounding, ReferenceSanity) {
  // The reference itself, on cases worked by hand.
  const RefEncoder e4(kE4M3), e5(kE5M2);
  EXPECT_CODE(e4.max_finite, 0x7Eu);
  EXPECT_CODE(e5.max_finite, 0x7Bu);
  EXPECT_EQ(e4.value.back(), 480.0);
  EXPECT_EQ(e5.value.back(), 65536.0);
  EXPECT_CODE(e4(300.f, Overflow::kPyTorch), 0x79u);  // 288 < 300 < 304 (midpoint 288 / 320)
  EXPECT_CODE(e4(304.f, Overflow::kPyTorch), 0x7Au);  // tie: 0x79 odd, 0x7A even
  EXPECT_CODE(e4(464.f, Overflow::kPyTorch), 0x7Eu);
  EXPECT_CODE(e4(470.f, Overflow::kPyTorch), 0x7Fu);
  EXPECT_CODE(e5(61440.f, Overflow::kPyTorch), 0x7Cu);
}

TEST(DTypeRounding, TiesToEven) {
  // 1 + half an ulp of each type: ties to 1 (even); 1 + 3 half-ulps: ties up to 1 + 2 ulps.
  EXPECT_CODE(f32_to_f16(1.f + p2(-11)), 0x3C00u);
  EXPECT_CODE(f32_to_f16(1.f + 3 * p2(-11)), 0x3C02u);
  EXPECT_CODE(f32_to_bf16(1.f + p2(-8)), 0x3F80u);
  EXPECT_CODE(f32_to_bf16(1.f + 3 * p2(-8)), 0x3F82u);
  EXPECT_CODE(f32_to_e4m3(1.f + p2(-4)), 0x38u);
  EXPECT_CODE(f32_to_e4m3(1.f + 3 * p2(-4)), 0x3Au);
  EXPECT_CODE(f32_to_e5m2(1.f + p2(-3)), 0x3Cu);
  EXPECT_CODE(f32_to_e5m2(1.f + 3 * p2(-3)), 0x3Eu);
  // Rounding that carries into the exponent: just below 2 -> 2.
  EXPECT_CODE(f32_to_e4m3(std::nextafter(2.f, 0.f)), 0x40u);
  EXPECT_CODE(f32_to_e5m2(1.875f), 0x40u);  // between 1.75 and 2: tie, 1.75 = 0x3F is odd
  EXPECT_CODE(f32_to_f16(std::nextafter(2.f, 0.f)), 0x4000u);
  // Largest subnormal rounding up into the smallest normal.
  EXPECT_CODE(f32_to_e4m3(7.5f * p2(-9)), 0x08u);
  EXPECT_CODE(f32_to_f16(1023.5f * p2(-24)), 0x0400u);
  EXPECT_CODE(f32_to_bf16(127.5f * p2(-133)), 0x0080u);
  // Worked example of docs/DTYPES.md.
  EXPECT_CODE(f32_to_e4m3(300.f), 0x79u);
  EXPECT_EQ(e4m3_to_f32(0x79), 288.f);
  EXPECT_CODE(f32_to_e4m3(-300.f), 0xF9u);
  EXPECT_CODE(f32_to_e5m2(300.f), 0x5Du);  // 256, 320: 300 > 288 -> 320 = 1.25 * 2^8
  EXPECT_EQ(e5m2_to_f32(0x5D), 320.f);
  EXPECT_CODE(f32_to_f16(0.1f), 0x2E66u);
  EXPECT_CODE(f32_to_bf16(0.1f), 0x3DCDu);
}

// ---------------------------------------------------------------------------------------------
// Overflow.

struct Edge {
  float x;
  uint32_t pytorch, saturate;
};

void check_edges(const Format& fm, std::initializer_list<Edge> edges) {
  for (const Edge& e : edges) {
    for (float sgn : {1.f, -1.f}) {
      const uint32_t s = sgn < 0 ? fm.sign_bit() : 0u;
      EXPECT_CODE(fm.encode(sgn * e.x, Overflow::kPyTorch), s | e.pytorch) << fm.name << " " << sgn * e.x;
      EXPECT_CODE(fm.encode(sgn * e.x, Overflow::kSaturate), s | e.saturate) << fm.name << " " << sgn * e.x;
    }
  }
}

TEST(DTypeOverflow, E4M3) {
  // 448 = 0x7E is the largest finite value; the next code 0x7F (480 if it were finite) is NaN.
  check_edges(kE4M3, {{416.f, 0x7D, 0x7D},
                      {432.f, 0x7E, 0x7E},  // tie 416 / 448: 0x7D odd -> 0x7E
                      {447.99f, 0x7E, 0x7E},
                      {448.f, 0x7E, 0x7E},
                      {463.99f, 0x7E, 0x7E},
                      {464.f, 0x7E, 0x7E},  // tie 448 / 480: 0x7E even
                      {std::nextafter(464.f, kInfF), 0x7F, 0x7E},
                      {464.01f, 0x7F, 0x7E},
                      {479.99f, 0x7F, 0x7E},
                      {480.f, 0x7F, 0x7E},
                      {1e30f, 0x7F, 0x7E},
                      {std::numeric_limits<float>::max(), 0x7F, 0x7E},
                      {kInfF, 0x7F, 0x7E}});
}

TEST(DTypeOverflow, E5M2) {
  // 57344 = 0x7B (mantissa 3, odd); the next code 0x7C would be 65536 and is Inf. The midpoint
  // 61440 ties to the even code, 0x7C: Inf.
  check_edges(kE5M2, {{49152.f, 0x7A, 0x7A},
                      {57344.f, 0x7B, 0x7B},
                      {61439.99f, 0x7B, 0x7B},
                      {std::nextafter(61440.f, 0.f), 0x7B, 0x7B},
                      {61440.f, 0x7C, 0x7B},
                      {65536.f, 0x7C, 0x7B},
                      {1e30f, 0x7C, 0x7B},
                      {kInfF, 0x7C, 0x7B}});
}

TEST(DTypeOverflow, F16) {
  check_edges(kF16, {{65504.f, 0x7BFF, 0x7BFF},
                     {65519.99f, 0x7BFF, 0x7BFF},
                     {std::nextafter(65520.f, 0.f), 0x7BFF, 0x7BFF},
                     {65520.f, 0x7C00, 0x7BFF},  // tie 65504 / 65536: 0x7BFF odd -> Inf
                     {65536.f, 0x7C00, 0x7BFF},
                     {1e30f, 0x7C00, 0x7BFF},
                     {kInfF, 0x7C00, 0x7BFF}});
}

TEST(DTypeOverflow, BF16) {
  const float max = f(0x7F7F0000u);  // (2 - 2^-7) * 2^127
  EXPECT_EQ(max, 3.38953139e38f);
  check_edges(kBF16, {{max, 0x7F7F, 0x7F7F},
                      {f(0x7F7F7FFFu), 0x7F7F, 0x7F7F},
                      {f(0x7F7F8000u), 0x7F80, 0x7F7F},  // tie max / 2^128: 0x7F7F odd -> Inf
                      {std::numeric_limits<float>::max(), 0x7F80, 0x7F7F},
                      {kInfF, 0x7F80, 0x7F7F},
                      {f(0x7F7E8000u), 0x7F7E, 0x7F7E},  // tie 0x7F7E / 0x7F7F: even
                      {f(0x7F7E8001u), 0x7F7F, 0x7F7F}});
}

// ---------------------------------------------------------------------------------------------
// Underflow: subnormals, half the smallest subnormal (ties to 0, which is even), signed zero.

TEST(DTypeUnderflow, SubnormalsAndZero) {
  struct Case {
    const Format* fm;
    int min_sub_exp;  // smallest subnormal = 2^min_sub_exp
  };
  for (const Case& c : {Case{&kE4M3, -9}, Case{&kE5M2, -16}, Case{&kF16, -24}, Case{&kBF16, -133}}) {
    const Format& fm = *c.fm;
    const float sub = p2(c.min_sub_exp), half = p2(c.min_sub_exp - 1);
    for (Overflow ov : kModes) {
      for (float sgn : {1.f, -1.f}) {
        const uint32_t s = sgn < 0 ? fm.sign_bit() : 0u;
        EXPECT_CODE(fm.encode(sgn * sub, ov), s | 1u) << fm.name;
        EXPECT_CODE(fm.encode(sgn * half, ov), s | 0u) << fm.name;  // tie: 0 is even
        EXPECT_CODE(fm.encode(sgn * std::nextafter(half, kInfF), ov), s | 1u) << fm.name;
        EXPECT_CODE(fm.encode(sgn * std::nextafter(half, 0.f), ov), s | 0u) << fm.name;
        EXPECT_CODE(fm.encode(sgn * 1.5f * sub, ov), s | 2u) << fm.name;  // tie 1 / 2 -> 2
        EXPECT_CODE(fm.encode(sgn * 2.5f * sub, ov), s | 2u) << fm.name;  // tie 2 / 3 -> 2
        EXPECT_CODE(fm.encode(sgn * 0.f, ov), s) << fm.name;              // +-0 kept
        EXPECT_CODE(fm.encode(sgn * p2(-149), ov), s) << fm.name;         // smallest float
        EXPECT_CODE(fm.encode(sgn * 1e-38f, ov), s | (&fm == &kBF16 ? 0x6Du : 0u)) << fm.name;
      }
    }
  }
  // bf16 shares float's exponent range: float subnormals round to bf16 subnormals (as PyTorch).
  EXPECT_CODE(f32_to_bf16(f(0x00010000u)), 0x0001u);
  EXPECT_CODE(f32_to_bf16(f(0x00018000u)), 0x0002u);  // tie 1 / 2
  EXPECT_CODE(f32_to_bf16(f(0x00028000u)), 0x0002u);  // tie 2 / 3
  EXPECT_CODE(f32_to_bf16(f(0x007FFFFFu)), 0x0080u);  // largest float subnormal -> 2^-126
  EXPECT_CODE(f32_to_bf16(f(0x807F0000u)), 0x807Fu);
  EXPECT_CODE(f32_to_f16(1e-8f), 0x0000u);
  EXPECT_CODE(f32_to_f16(-1e-8f), 0x8000u);
  EXPECT_CODE(f32_to_f16(6e-8f), 0x0001u);
}

// ---------------------------------------------------------------------------------------------
// NaN.

TEST(DTypeNaN, CanonicalNegativeAndPayloads) {
  struct Case {
    uint32_t in;
    uint32_t f16, bf16, e4m3, e5m2;
  };
  const Case cases[] = {
      {0x7FC00000u, 0x7E00, 0x7FC0, 0x7F, 0x7E},  // canonical quiet NaN
      {0xFFC00000u, 0xFE00, 0xFFC0, 0xFF, 0xFE},  // negative
      {0x7F800001u, 0x7E00, 0x7FC0, 0x7F, 0x7E},  // only a low payload bit: quiet bit set
      {0xFF800001u, 0xFE00, 0xFFC0, 0xFF, 0xFE},
      {0x7FC00001u, 0x7E00, 0x7FC0, 0x7F, 0x7E},
      {0x7FA00000u, 0x7D00, 0x7FA0, 0x7F, 0x7D},  // signalling NaN with a top payload bit
      {0x7FE00000u, 0x7F00, 0x7FE0, 0x7F, 0x7F},
      {0x7FFFFFFFu, 0x7FFF, 0x7FFF, 0x7F, 0x7F},
      {0x7F802000u, 0x7C01, 0x7FC0, 0x7F, 0x7E},  // fp16's lowest payload bit, lost by bf16
  };
  for (const Case& c : cases) {
    for (Overflow ov : kModes) {
      EXPECT_CODE(f32_to_f16(f(c.in), ov), c.f16) << hex(c.in);
      EXPECT_CODE(f32_to_bf16(f(c.in), ov), c.bf16) << hex(c.in);
      EXPECT_CODE(f32_to_e4m3(f(c.in), ov), c.e4m3) << hex(c.in);
      EXPECT_CODE(f32_to_e5m2(f(c.in), ov), c.e5m2) << hex(c.in);
    }
  }
  const float qnan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_CODE(f32_to_e5m2(qnan), 0x7Eu);  // PyTorch writes 0x7F here (documented deviation)
  EXPECT_CODE(f32_to_e4m3(qnan), 0x7Fu);
  EXPECT_CODE(f32_to_f16(qnan), 0x7E00u);
  EXPECT_CODE(f32_to_bf16(qnan), 0x7FC0u);
}

TEST(DTypeNaN, EveryNaNCodeRoundTrips) {
  for (const Format* fm : kFormats) {
    int nans = 0;
    for (uint32_t c = 0; c < fm->num_codes(); ++c) {
      if (ref_kind(*fm, c) != Kind::kNaN) continue;
      ++nans;
      EXPECT_TRUE(std::isnan(fm->decode(c))) << fm->name << " " << hex(c);
      for (Overflow ov : kModes) EXPECT_CODE(fm->encode(fm->decode(c), ov), c) << fm->name;
    }
    const int want = fm->ieee ? 2 * int(fm->man_mask()) : 2;
    EXPECT_EQ(nans, want) << fm->name;
  }
}

// ---------------------------------------------------------------------------------------------
// int8: clamp(round_half_even(x / scale), -128, 127).

TEST(DTypeInt8, TiesToEven) {
  const std::pair<float, int> cases[] = {{0.5f, 0},   {1.5f, 2},   {2.5f, 2},   {3.5f, 4},
                                         {-0.5f, 0},  {-1.5f, -2}, {-2.5f, -2}, {-3.5f, -4},
                                         {0.49f, 0},  {0.51f, 1},  {-0.51f, -1}, {126.5f, 126},
                                         {-127.5f, -128}, {0.f, 0}, {-0.f, 0}, {1.f, 1}};
  for (const auto& [x, q] : cases) EXPECT_EQ(int(f32_to_i8(x, 1.f)), q) << x;
}

TEST(DTypeInt8, ScaleAndClamp) {
  EXPECT_EQ(int(f32_to_i8(3.f, 2.f)), 2);    // 1.5 -> 2
  EXPECT_EQ(int(f32_to_i8(5.f, 2.f)), 2);    // 2.5 -> 2
  EXPECT_EQ(int(f32_to_i8(1.f, 0.25f)), 4);
  EXPECT_EQ(int(f32_to_i8(-1.f, 0.0078125f)), -128);
  EXPECT_EQ(int(f32_to_i8(1.f, 0.0078125f)), 127);  // 128 clamps
  EXPECT_EQ(int(f32_to_i8(1.f, 3.f)), 0);
  EXPECT_EQ(int(f32_to_i8(300.f, 2.f)), 127);
  EXPECT_EQ(int(f32_to_i8(127.4f, 1.f)), 127);
  EXPECT_EQ(int(f32_to_i8(127.5f, 1.f)), 127);
  EXPECT_EQ(int(f32_to_i8(-128.5f, 1.f)), -128);
  EXPECT_EQ(int(f32_to_i8(-129.f, 1.f)), -128);
  EXPECT_EQ(int(f32_to_i8(1e30f, 1.f)), 127);
  EXPECT_EQ(int(f32_to_i8(-1e30f, 1.f)), -128);
  EXPECT_EQ(int(f32_to_i8(kInfF, 1.f)), 127);
  EXPECT_EQ(int(f32_to_i8(-kInfF, 1.f)), -128);
  EXPECT_EQ(int(f32_to_i8(1e30f, 1e-30f)), 127);  // x / scale overflows float: still clamps
  EXPECT_EQ(int(from_f32<int8_t>(5.f, 2.f, Overflow::kPyTorch)), 2);
  EXPECT_EQ(i8_to_f32(-3, 0.5f), -1.5f);
  EXPECT_EQ(i8_to_f32(-128, 0.25f), -32.f);
  EXPECT_EQ(to_f32(int8_t(-7)), -7.f);  // storage read is unscaled
  EXPECT_EQ(to_f32(uint8_t(200)), 200.f);
}

TEST(DTypeInt8, MatchesReferenceOnRandomValues) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> xs(-300.f, 300.f);
  const float scales[] = {1.f, 0.5f, 2.f, 0.1f, 3.f, 1.f / 127};
  int mismatches = 0;
  for (int i = 0; i < 20000; ++i) {
    const float x = i % 2 ? xs(rng) : std::round(xs(rng)) * 0.5f;  // half the cases on .5 ties
    const float scale = scales[i % 6];
    const double q = double(x / scale);  // the quotient is taken in float, as documented
    double r = std::floor(q);
    const double frac = q - r;
    if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
    const int want = int(std::clamp(r, -128.0, 127.0));
    if (int(f32_to_i8(x, scale)) != want && ++mismatches <= 8)
      ADD_FAILURE() << x << " / " << scale << " -> " << int(f32_to_i8(x, scale)) << ", expected " << want;
  }
  EXPECT_EQ(mismatches, 0);
}

// ---------------------------------------------------------------------------------------------
// The worked examples of docs/DTYPES.md, verbatim.

TEST(DTypeDocExamples, WorkedExamples) {
  const Overflow P = Overflow::kPyTorch, S = Overflow::kSaturate;
  EXPECT_CODE(f32_to_e4m3(300.f), 0x79u);
  EXPECT_EQ(e4m3_to_f32(0x79), 288.f);
  EXPECT_CODE(f32_to_e5m2(300.f), 0x5Du);
  EXPECT_EQ(e5m2_to_f32(0x5D), 320.f);
  EXPECT_CODE(f32_to_e4m3(464.f, P), 0x7Eu);
  EXPECT_CODE(f32_to_e4m3(464.f, S), 0x7Eu);
  EXPECT_CODE(f32_to_e4m3(464.01f, P), 0x7Fu);
  EXPECT_CODE(f32_to_e4m3(464.01f, S), 0x7Eu);
  EXPECT_CODE(f32_to_e4m3(kInfF, P), 0x7Fu);
  EXPECT_CODE(f32_to_e4m3(kInfF, S), 0x7Eu);
  EXPECT_CODE(f32_to_e5m2(61440.f, P), 0x7Cu);
  EXPECT_CODE(f32_to_e5m2(61440.f, S), 0x7Bu);
  EXPECT_CODE(f32_to_f16(65519.99f, P), 0x7BFFu);
  EXPECT_CODE(f32_to_f16(65520.f, P), 0x7C00u);
  EXPECT_CODE(f32_to_f16(65520.f, S), 0x7BFFu);
  EXPECT_CODE(f32_to_f16(1e-8f), 0x0000u);
  EXPECT_CODE(f32_to_f16(3e-8f), 0x0001u);
  EXPECT_CODE(f32_to_bf16(1e-40f), 0x0001u);
  EXPECT_CODE(f32_to_bf16(0.1f), 0x3DCDu);
  EXPECT_EQ(bf16_to_f32(0x3DCD), 0.10009765625f);
  EXPECT_CODE(f32_to_f16(0.1f), 0x2E66u);
  EXPECT_EQ(f16_to_f32(0x2E66), 0.0999755859375f);
  EXPECT_CODE(f32_to_e4m3(0.1f), 0x1Du);
  EXPECT_EQ(e4m3_to_f32(0x1D), 0.1015625f);
  EXPECT_CODE(f32_to_e5m2(0.1f), 0x2Eu);
  EXPECT_EQ(e5m2_to_f32(0x2E), 0.09375f);
  EXPECT_CODE(f32_to_e5m2(f(0x7FC00000u)), 0x7Eu);
  EXPECT_CODE(f32_to_e5m2(f(0xFFC00000u)), 0xFEu);
  EXPECT_EQ(int(f32_to_i8(2.5f, 1.f)), 2);
  EXPECT_EQ(int(f32_to_i8(3.f, 2.f)), 2);
  EXPECT_EQ(int(f32_to_i8(-1.f, 1.f / 128)), -128);
  EXPECT_EQ(int(f32_to_i8(1.f, 1.f / 128)), 127);
}

// ---------------------------------------------------------------------------------------------
// Names, parsing, dispatch.

const DType kAllTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kI8,
                           DType::kF8E4M3, DType::kF8E5M2, DType::kU8};

TEST(DTypeNames, RoundTripAndAliases) {
  for (DType t : kAllTypes) EXPECT_EQ(parse_dtype(dtype_name(t)), t) << dtype_name(t);
  EXPECT_STREQ(dtype_name(DType::kF32), "fp32");
  EXPECT_STREQ(dtype_name(DType::kF16), "fp16");
  EXPECT_STREQ(dtype_name(DType::kBF16), "bf16");
  EXPECT_STREQ(dtype_name(DType::kI8), "int8");
  EXPECT_STREQ(dtype_name(DType::kF8E4M3), "e4m3");
  EXPECT_STREQ(dtype_name(DType::kF8E5M2), "e5m2");
  EXPECT_STREQ(dtype_name(DType::kU8), "uint8");
  EXPECT_EQ(parse_dtype("float32"), DType::kF32);
  EXPECT_EQ(parse_dtype("float16"), DType::kF16);
  EXPECT_EQ(parse_dtype("bfloat16"), DType::kBF16);
  EXPECT_EQ(parse_dtype("fp8_e4m3"), DType::kF8E4M3);
  EXPECT_EQ(parse_dtype("fp8_e5m2"), DType::kF8E5M2);
}

TEST(DTypeNames, UnknownNameThrowsKDType) {
  for (const char* bad : {"foo", "", "FP16", "fp16 ", "e4m3fnuz", "float64"}) {
    try {
      parse_dtype(bad);
      ADD_FAILURE() << "parse_dtype(\"" << bad << "\") did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kDType) << bad;
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(parse_dtype("foo"), Error);
}

TEST(DTypeDispatch, StorageTypes) {
  for (DType t : kAllTypes) {
    const int size = dispatch_dtype(t, [](auto tag) { return int(sizeof(typename decltype(tag)::type)); });
    EXPECT_EQ(size, dtype_size(t)) << dtype_name(t);
  }
  auto is = [](DType t, auto want) {
    return dispatch_dtype(t, [](auto tag) {
      return std::is_same_v<typename decltype(tag)::type, typename decltype(want)::type>;
    });
  };
  EXPECT_TRUE(is(DType::kF32, TypeTag<float>{}));
  EXPECT_TRUE(is(DType::kF16, TypeTag<f16_t>{}));
  EXPECT_TRUE(is(DType::kBF16, TypeTag<bf16_t>{}));
  EXPECT_TRUE(is(DType::kI8, TypeTag<int8_t>{}));
  EXPECT_TRUE(is(DType::kF8E4M3, TypeTag<e4m3_t>{}));
  EXPECT_TRUE(is(DType::kF8E5M2, TypeTag<e5m2_t>{}));
  EXPECT_TRUE(is(DType::kU8, TypeTag<uint8_t>{}));
  EXPECT_EQ(dtype_size(DType::kF32), 4);
  EXPECT_EQ(dtype_size(DType::kF16), 2);
  EXPECT_EQ(dtype_size(DType::kBF16), 2);
  EXPECT_EQ(dtype_size(DType::kI8), 1);
  EXPECT_EQ(dtype_size(DType::kF8E4M3), 1);
  EXPECT_EQ(dtype_size(DType::kF8E5M2), 1);
  EXPECT_EQ(dtype_size(DType::kU8), 1);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    EXPECT_TRUE(is_input_dtype(t));
    const bool same = dispatch_input_dtype(t, [&](auto tag) {
      return dispatch_dtype(t, [](auto tag2) {
        return std::is_same_v<typename decltype(tag2)::type, typename decltype(tag)::type>;
      });
    });
    EXPECT_TRUE(same) << dtype_name(t);
  }
  for (DType t : {DType::kI8, DType::kF8E4M3, DType::kF8E5M2, DType::kU8}) EXPECT_FALSE(is_input_dtype(t));
  for (DType t : kAllTypes) EXPECT_EQ(is_value_dtype(t), t != DType::kU8);
}

}  // namespace
}  // namespace sparse24
