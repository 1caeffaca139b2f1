// sparse24/philox.h: Philox4x32-10, the counter-based generator of MVUE24 (host + device).
//
// philox4x32_10(counter, key) is a pure function: the same (seed, group) gives the same four
// 32-bit words on the CPU and on any GPU. This is the Philox of Salmon et al. (SC'11), the
// same algorithm as curand's and PyTorch's, written out here so both backends share one code.
#pragma once

#include <cstdint>

#include "sparse24/dtype.h"  // S24_HD

namespace sparse24 {

struct Philox4 { uint32_t v[4]; };

// The round keys: the key (k0, k1), bumped by the Weyl constants after every round. They are the
// same for every counter, so a kernel can take them precomputed (its parameters, read in place).
struct PhiloxKey { uint32_t k0[10], k1[10]; };
S24_HD PhiloxKey philox_key(uint32_t k0, uint32_t k1) {
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  PhiloxKey k;
  for (int round = 0; round < 10; ++round) {
    k.k0[round] = k0 + uint32_t(round) * kW0;
    k.k1[round] = k1 + uint32_t(round) * kW1;
  }
  return k;
}

S24_HD Philox4 philox4x32_10(Philox4 ctr, const PhiloxKey& key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  for (int round = 0; round < 10; ++round) {
#if defined(__CUDA_ARCH__)
    // The same 32 x 32 -> 64-bit products, as one IMAD.WIDE.U32 each (from C++ the compiler
    // adds an IADD of zero per product to take the high half).
    uint32_t hi0, lo0, hi1, lo1;
    asm("{\n\t.reg .u64 t;\n\tmul.wide.u32 t, %2, %3;\n\tmov.b64 {%0, %1}, t;\n\t}"
        : "=r"(lo0), "=r"(hi0) : "r"(ctr.v[0]), "r"(kM0));
    asm("{\n\t.reg .u64 t;\n\tmul.wide.u32 t, %2, %3;\n\tmov.b64 {%0, %1}, t;\n\t}"
        : "=r"(lo1), "=r"(hi1) : "r"(ctr.v[2]), "r"(kM1));
#else
    const uint64_t p0 = uint64_t(kM0) * ctr.v[0], p1 = uint64_t(kM1) * ctr.v[2];
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
#endif
    ctr = {{hi1 ^ ctr.v[1] ^ key.k0[round], lo1, hi0 ^ ctr.v[3] ^ key.k1[round], lo0}};
  }
  return ctr;
}
S24_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) { return philox4x32_10(ctr, philox_key(k0, k1)); }

// The uniform in [0, 1) made of the top 24 bits of a word (exact in float).
S24_HD float philox_uniform(uint32_t word) { return float(word >> 8) * (1.0f / 16777216.0f); }

// MVUE24's random numbers. The two groups of one metadata byte (groups 2b and 2b + 1 of a row)
// share one Philox call: counter (n low, n high, 0, 0) with n = row * ceil(groups/2) + b, key
// (seed low, seed high); group 2b takes words 0 and 1, group 2b + 1 words 2 and 3.
S24_HD PhiloxKey mvue_key(uint64_t seed) { return philox_key(uint32_t(seed), uint32_t(seed >> 32)); }
S24_HD Philox4 mvue_words(const PhiloxKey& key, uint64_t n) {
  return philox4x32_10({{uint32_t(n), uint32_t(n >> 32), 0u, 0u}}, key);
}
S24_HD Philox4 mvue_words(uint64_t seed, uint64_t n) { return mvue_words(mvue_key(seed), n); }
// The two uniforms of group `group` of row `row` (groups_per_row = cols / 4).
S24_HD void mvue_uniforms(uint64_t seed, uint64_t row, uint64_t group, uint64_t groups_per_row, float* u0, float* u1) {
  const Philox4 r = mvue_words(seed, row * ((groups_per_row + 1) / 2) + group / 2);
  *u0 = philox_uniform((group & 1) ? r.v[2] : r.v[0]);
  *u1 = philox_uniform((group & 1) ? r.v[3] : r.v[1]);
}

// SplitMix64's finaliser: derives well-separated seeds from related ones (a step number, a layer
// index), e.g. the MVUE seed of each micro-step and layer.
S24_HD uint64_t mix_seed(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace sparse24
