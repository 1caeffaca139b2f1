// src/core/adamw_rule.h: one AdamW element update, shared by the CPU loop (src/layers/adamw.cpp)
// and the CUDA kernel (src/cuda/optim_kernels.cu), so both round identically (the CPU builds
// with -ffp-contract=off, the CUDA files with -fmad=false; sqrt and division are IEEE on both).
#pragma once

#include <cmath>
#include <cstdint>

#include "sparse24/dtype.h"
#include "sparse24/format.h"

namespace sparse24::rules {

// The per-step constants of AdamW::step (optim.h).
struct AdamWStep {
  float keep = 1.f;       // 1 - lr * weight_decay for decayed parameters, else 1
  float b1 = 0.9f, b2 = 0.95f, c1 = 0.1f, c2 = 0.05f;  // betas and 1 - betas
  float bc2_sqrt = 1.f;   // sqrt(1 - beta2^t)
  float eps = 1e-8f;
  float step_size = 0.f;  // lr / (1 - beta1^t)
  float alpha = 0.f;      // masked decay factor
};

// FST's masked decay: g + alpha * w where the mask prunes (bit `kept` clear), as masked_decay().
S24_HD float masked_decay_grad(float g, float w, float alpha, bool kept) {
  return kept ? g : g + alpha * w;
}

// Whether element (r, c) of a row-major canonical mask (row_bytes bytes a row) is kept.
S24_HD bool mask_keeps(const uint8_t* codes, int64_t row_bytes, int64_t r, int64_t c) {
  const int64_t g = c / 4;
  const uint8_t code = uint8_t((codes[r * row_bytes + g / 2] >> (4 * (g & 1))) & 0xF);
  return (group_code_bits(code) >> (c % 4)) & 1;
}

// One element: decoupled weight decay (keep), then the Adam moments and update.
S24_HD void adamw_element(float& w, float& m, float& v, float g, const AdamWStep& s) {
  const float wi = w * s.keep;
  const float mi = s.b1 * m + s.c1 * g;
  const float vi = s.b2 * v + (s.c2 * g) * g;
  m = mi;
  v = vi;
  const float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
  w = wi - s.step_size * (mi / denom);
}

}  // namespace sparse24::rules
