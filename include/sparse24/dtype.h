// sparse24/dtype.h: element types and their conversions.
//
// Conversions are bit-exact integer code shared by the CPU and the CUDA kernels (every function
// here is host+device), so both backends round identically. The rules (docs/DTYPES.md):
//   * float -> fp16 / bf16 / fp8: round to nearest, ties to even.
//   * Overflow, default mode (Overflow::kPyTorch), as PyTorch's casts:
//       fp16, bf16, e5m2: to +-Inf;  e4m3fn (no Inf): to NaN (|x| > 464; 448 <= |x| <= 464 -> 448).
//   * Overflow::kSaturate (FP8 training): clamp to the largest finite value (Inf too); NaN stays NaN.
//   * NaN stays NaN. The NaN's top mantissa bits are kept (quiet bit set when none survive), so
//     every NaN code of every type round-trips. PyTorch writes one canonical NaN per type; ours is
//     the same code for the canonical float NaN except e5m2 (0x7E here, 0x7F in PyTorch).
//   * int8 takes an explicit scale: q = clamp(round_half_even(x / scale), -128, 127). NaN has no
//     int8 code: callers reject it (ErrorKind::kNonFinite) before converting.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#endif

#if defined(__CUDACC__)
#define S24_HD __host__ __device__ __forceinline__
#else
#define S24_HD inline
#endif
// Full unrolling in device code (where indices must become constants); nothing on the host.
#if defined(__CUDA_ARCH__)
#define S24_UNROLL _Pragma("unroll")
#else
#define S24_UNROLL
#endif

namespace sparse24 {

enum class DType : uint8_t {
  kF32,     // IEEE binary32
  kF16,     // IEEE binary16
  kBF16,    // bfloat16 (8-bit exponent, 7-bit mantissa)
  kI8,      // signed 8-bit integer, with a per-tensor scale
  kF8E4M3,  // OCP fp8 e4m3fn: bias 7, no Inf, NaN = S.1111.111, max 448
  kF8E5M2,  // OCP fp8 e5m2: bias 15, IEEE-like, max 57344
  kU8,      // unsigned byte: masks and metadata
  kI32,     // signed 32-bit integer: token ids
};

enum class Overflow : uint8_t {
  kPyTorch,   // what PyTorch's .to(dtype) does (see above)
  kSaturate,  // clamp to the largest finite value of the type
};

// Size of one element in bytes.
constexpr int dtype_size(DType t) {
  return (t == DType::kF32 || t == DType::kI32) ? 4 : (t == DType::kF16 || t == DType::kBF16) ? 2 : 1;
}
// "fp32", "fp16", "bf16", "int8", "e4m3", "e5m2", "uint8", "int32".
const char* dtype_name(DType t);
// Parses the names above (and the aliases float32/float16/bfloat16/fp8_e4m3/fp8_e5m2); throws kDType.
DType parse_dtype(const char* name);
// Types a value can be stored in after compression (the float types and int8).
constexpr bool is_value_dtype(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kI8 || t == DType::kF8E4M3 ||
         t == DType::kF8E5M2;
}
// Types the transforms read (fp32, fp16, bf16).
constexpr bool is_input_dtype(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }
// The 8-bit float types (e4m3, e5m2).
constexpr bool is_fp8(DType t) { return t == DType::kF8E4M3 || t == DType::kF8E5M2; }
// Largest finite magnitude of a floating type (int8: 127).
float dtype_max(DType t);

// ---------------------------------------------------------------------------------------------
// Bit-level helpers (host + device).
S24_HD uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
S24_HD float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

namespace detail {
// Rounds the finite magnitude `a` (float bits, sign cleared) to a float format with MAN mantissa
// bits and exponent bias BIAS, ties to even. Returns the magnitude code (exponent field and
// mantissa), which may exceed the largest finite code when the value overflows; the caller
// decides what overflow becomes. Subnormals of the target are produced exactly.
template <int MAN, int BIAS>
S24_HD uint32_t round_magnitude(uint32_t a) {
  const uint32_t e = a >> 23;
  if (e >= uint32_t(128 - BIAS)) {  // a normal number of the target: >= 2^(1-BIAS)
    constexpr int kShift = 23 - MAN;
    const uint32_t odd = (a >> kShift) & 1u;
    a += (uint32_t(BIAS - 127) << 23) + ((1u << (kShift - 1)) - 1u) + odd;  // rebias, round
    return a >> kShift;
  }
  // Target subnormal: value = M * 2^(e-150); unit = 2^(1-BIAS-MAN); q = M * 2^(e-151+BIAS+MAN).
  // A float subnormal (e == 0) is M * 2^-149 with no implicit bit, i.e. e taken as 1: far below
  // half the smallest fp8/fp16 subnormal (-> 0 below), but a bf16 subnormal (same exponent range).
  const uint32_t m = e ? (a & 0x7FFFFFu) | 0x800000u : a;
  const int shift = 151 - BIAS - MAN - int(e ? e : 1u);  // >= 1 here
  if (shift > 25) return 0;                     // below half the smallest subnormal
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return q;  // q == 1 << MAN is the smallest normal, encoded correctly by construction
}

// NaN code of a format with MAN mantissa bits: keep the float NaN's top MAN mantissa bits.
template <int MAN>
S24_HD uint32_t nan_payload(uint32_t a) {
  uint32_t p = (a >> (23 - MAN)) & ((1u << MAN) - 1u);
  return p ? p : (1u << (MAN - 1));  // payload lost: the quiet bit
}

// Decodes a code of an IEEE-like format (EXP exponent bits, MAN mantissa bits, bias BIAS).
// IEEE_SPECIALS: all-ones exponent is Inf/NaN (fp16, bf16, e5m2); otherwise only the all-ones
// code is NaN (e4m3fn).
template <int EXP, int MAN, int BIAS, bool IEEE_SPECIALS>
S24_HD float decode_float(uint32_t code) {
  const uint32_t sign = (code >> (EXP + MAN)) & 1u;
  const uint32_t exp = (code >> MAN) & ((1u << EXP) - 1u);
  const uint32_t man = code & ((1u << MAN) - 1u);
  uint32_t bits;
  if (exp == (1u << EXP) - 1u && (IEEE_SPECIALS || man == (1u << MAN) - 1u)) {
    bits = 0x7F800000u | (man << (23 - MAN));  // Inf (man 0, IEEE only) or NaN
  } else if (exp == 0) {
    // Subnormal: man * 2^(1-BIAS-MAN), exact in float.
    const float v = float(man) * f32_from_bits(uint32_t(127 + 1 - BIAS - MAN) << 23);
    bits = f32_to_bits(v);
  } else {
    bits = ((exp - BIAS + 127) << 23) | (man << (23 - MAN));
  }
  return f32_from_bits(bits | (sign << 31));
}
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// float -> code.
S24_HD uint16_t f32_to_f16(float f, Overflow ov = Overflow::kPyTorch) {
  const uint32_t u = f32_to_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint16_t(sign | 0x7C00u | detail::nan_payload<10>(a));
#if defined(__CUDA_ARCH__)  // the hardware rounds every non-NaN value identically
  return __half_as_ushort(__float2half_rn(ov == Overflow::kSaturate ? fminf(fmaxf(f, -65504.f), 65504.f) : f));
#endif
  const uint32_t c = a == 0x7F800000u ? 0x7C00u : detail::round_magnitude<10, 15>(a);
  if (c > 0x7BFFu) return uint16_t(sign | (ov == Overflow::kSaturate ? 0x7BFFu : 0x7C00u));
  return uint16_t(sign | c);
}
S24_HD uint16_t f32_to_bf16(float f, Overflow ov = Overflow::kPyTorch) {
  const uint32_t u = f32_to_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint16_t(sign | 0x7F80u | detail::nan_payload<7>(a));
#if defined(__CUDA_ARCH__)
  constexpr float kMax = 3.38953139e38f;
  return __bfloat16_as_ushort(__float2bfloat16_rn(ov == Overflow::kSaturate ? fminf(fmaxf(f, -kMax), kMax) : f));
#endif
  const uint32_t c = a == 0x7F800000u ? 0x7F80u : detail::round_magnitude<7, 127>(a);
  if (c > 0x7F7Fu) return uint16_t(sign | (ov == Overflow::kSaturate ? 0x7F7Fu : 0x7F80u));
  return uint16_t(sign | c);
}
S24_HD uint8_t f32_to_e4m3(float f, Overflow ov = Overflow::kPyTorch) {
  const uint32_t u = f32_to_bits(f), sign = (u >> 24) & 0x80u, a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint8_t(sign | 0x7Fu);  // the only NaN code
#if defined(__CUDA_ARCH__)
  return uint8_t(__nv_cvt_float_to_fp8(f, ov == Overflow::kSaturate ? __NV_SATFINITE : __NV_NOSAT, __NV_E4M3));
#endif
  const uint32_t c = a == 0x7F800000u ? 0x7Fu : detail::round_magnitude<3, 7>(a);
  if (c > 0x7Eu) return uint8_t(sign | (ov == Overflow::kSaturate ? 0x7Eu : 0x7Fu));  // NaN
  return uint8_t(sign | c);
}
S24_HD uint8_t f32_to_e5m2(float f, Overflow ov = Overflow::kPyTorch) {
  const uint32_t u = f32_to_bits(f), sign = (u >> 24) & 0x80u, a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint8_t(sign | 0x7Cu | detail::nan_payload<2>(a));
#if defined(__CUDA_ARCH__)
  return uint8_t(__nv_cvt_float_to_fp8(f, ov == Overflow::kSaturate ? __NV_SATFINITE : __NV_NOSAT, __NV_E5M2));
#endif
  const uint32_t c = a == 0x7F800000u ? 0x7Cu : detail::round_magnitude<2, 15>(a);
  if (c > 0x7Bu) return uint8_t(sign | (ov == Overflow::kSaturate ? 0x7Bu : 0x7Cu));
  return uint8_t(sign | c);
}
// Round half to even (the default rounding mode).
S24_HD float rint_f(float q) {
#if defined(__CUDA_ARCH__)
  return rintf(q);
#else
  return __builtin_rintf(q);
#endif
}
// int8 with scale: clamp(round_half_even(f / scale), -128, 127). f must not be NaN.
S24_HD int8_t f32_to_i8(float f, float scale) {
  float q = f / scale;
  q = q < -128.f ? -128.f : (q > 127.f ? 127.f : q);
  return int8_t(rint_f(q));
}

// code -> float (exact). Device code uses the hardware conversion for every code but NaNs, whose
// payload the software path keeps.
S24_HD float f16_to_f32(uint16_t c) {
#if defined(__CUDA_ARCH__)
  if ((c & 0x7FFFu) <= 0x7C00u) return __half2float(__ushort_as_half(c));
#endif
  return detail::decode_float<5, 10, 15, true>(c);
}
S24_HD float bf16_to_f32(uint16_t c) { return f32_from_bits(uint32_t(c) << 16); }
S24_HD float e4m3_to_f32(uint8_t c) {
#if defined(__CUDA_ARCH__)
  if ((c & 0x7Fu) != 0x7Fu) return __half2float(__half(__nv_cvt_fp8_to_halfraw(c, __NV_E4M3)));
#endif
  return detail::decode_float<4, 3, 7, false>(c);
}
S24_HD float e5m2_to_f32(uint8_t c) {
#if defined(__CUDA_ARCH__)
  if ((c & 0x7Fu) <= 0x7Cu) return __half2float(__half(__nv_cvt_fp8_to_halfraw(c, __NV_E5M2)));
#endif
  return detail::decode_float<5, 2, 15, true>(c);
}
S24_HD float i8_to_f32(int8_t c, float scale) { return float(c) * scale; }

// ---------------------------------------------------------------------------------------------
// Storage types: one struct per dtype so that templates can be written over element types.
struct f16_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };
struct e4m3_t { uint8_t bits; };
struct e5m2_t { uint8_t bits; };

// Reads one element as float (int8 is read unscaled: the caller applies its scale).
S24_HD float to_f32(float v) { return v; }
S24_HD float to_f32(f16_t v) { return f16_to_f32(v.bits); }
S24_HD float to_f32(bf16_t v) { return bf16_to_f32(v.bits); }
S24_HD float to_f32(e4m3_t v) { return e4m3_to_f32(v.bits); }
S24_HD float to_f32(e5m2_t v) { return e5m2_to_f32(v.bits); }
S24_HD float to_f32(int8_t v) { return float(v); }
S24_HD float to_f32(uint8_t v) { return float(v); }
S24_HD float to_f32(int32_t v) { return float(v); }

// value / scale, the per-tensor scale of int8 and fp8 storage (1: none, no division). A NaN
// passes unchanged: x86 keeps a NaN's sign and payload through a division, the GPU does not,
// and the stored NaN code must not depend on the device.
S24_HD float unscale(float v, float scale) { return scale == 1.f || v != v ? v : v / scale; }

// Writes a float as element type T, storing unscale(value, scale).
template <typename T> S24_HD T from_f32(float v, float scale, Overflow ov);
template <> S24_HD float from_f32<float>(float v, float scale, Overflow) { return unscale(v, scale); }
template <> S24_HD f16_t from_f32<f16_t>(float v, float scale, Overflow ov) { return {f32_to_f16(unscale(v, scale), ov)}; }
template <> S24_HD bf16_t from_f32<bf16_t>(float v, float scale, Overflow ov) { return {f32_to_bf16(unscale(v, scale), ov)}; }
template <> S24_HD e4m3_t from_f32<e4m3_t>(float v, float scale, Overflow ov) { return {f32_to_e4m3(unscale(v, scale), ov)}; }
template <> S24_HD e5m2_t from_f32<e5m2_t>(float v, float scale, Overflow ov) { return {f32_to_e5m2(unscale(v, scale), ov)}; }
template <> S24_HD int8_t from_f32<int8_t>(float v, float scale, Overflow) { return f32_to_i8(v, scale); }
// Masks and token ids: round half to even, clamped to the type's range (NaN gives 0).
template <> S24_HD uint8_t from_f32<uint8_t>(float v, float scale, Overflow) {
  const float q = v / scale;
  return q > 0.f ? uint8_t(rint_f(q < 255.f ? q : 255.f)) : uint8_t(0);
}
template <> S24_HD int32_t from_f32<int32_t>(float v, float scale, Overflow) {
  const float q = v / scale;
  if (!(q == q)) return 0;
  return q >= 2147483520.f ? 2147483647 : (q <= -2147483648.f ? int32_t(-2147483647 - 1) : int32_t(rint_f(q)));
}

// The FP8 cast of FP8 GEMM operands (quantize_into in tensor.h): value / scale rounded to nearest
// even; finite values saturate to the largest finite code, +-Inf stays non-finite (e5m2: Inf;
// e4m3, which has no Inf: NaN) and NaN stays NaN, so an overflow upstream still reaches a loss
// scaler. T is e4m3_t or e5m2_t.
template <typename T>
S24_HD T quantize_f32(float v, float scale) {
  const bool inf = v > 3.40282347e38f || v < -3.40282347e38f;  // +-Inf (false for NaN)
  return from_f32<T>(v, scale, inf ? Overflow::kPyTorch : Overflow::kSaturate);
}

// The types 2:4 values can be stored as (not the uint8 and int32 bookkeeping types).
template <typename T>
constexpr bool kIsValueType = !std::is_same_v<T, uint8_t> && !std::is_same_v<T, int32_t>;

// Calls fn(TypeTag<T>{}) with T the storage type of `t`:
//   dispatch_dtype(t, [&](auto tag) { using T = typename decltype(tag)::type; ... });
template <typename T> struct TypeTag { using type = T; };
template <typename Fn>
S24_HD decltype(auto) dispatch_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::kF16: return fn(TypeTag<f16_t>{});
    case DType::kBF16: return fn(TypeTag<bf16_t>{});
    case DType::kI8: return fn(TypeTag<int8_t>{});
    case DType::kF8E4M3: return fn(TypeTag<e4m3_t>{});
    case DType::kF8E5M2: return fn(TypeTag<e5m2_t>{});
    case DType::kU8: return fn(TypeTag<uint8_t>{});
    case DType::kI32: return fn(TypeTag<int32_t>{});
    case DType::kF32: default: return fn(TypeTag<float>{});
  }
}
// Calls fn(TypeTag<T>{}) for the three input types (fp32, fp16, bf16); the caller has checked `t`.
template <typename Fn>
S24_HD decltype(auto) dispatch_input_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::kF16: return fn(TypeTag<f16_t>{});
    case DType::kBF16: return fn(TypeTag<bf16_t>{});
    case DType::kF32: default: return fn(TypeTag<float>{});
  }
}
// Calls fn(TypeTag<T>{}) for the two fp8 types (e4m3, e5m2); the caller has checked `t`.
template <typename Fn>
S24_HD decltype(auto) dispatch_fp8_dtype(DType t, Fn&& fn) {
  if (t == DType::kF8E4M3) return fn(TypeTag<e4m3_t>{});
  return fn(TypeTag<e5m2_t>{});
}

}  // namespace sparse24
