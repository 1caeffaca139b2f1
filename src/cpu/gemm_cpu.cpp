// The CPU backend of the 2:4 products: one gather + axpy kernel, fp32 accumulation.
#include "cpu/gemm_cpu.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "sparse24/error.h"

namespace sparse24::cpu {

namespace {

// The kept entries of S as two m x k/2 arrays: val[r][t] = stored value * scale and col[r][t] =
// its column 4g + i, for the t-th kept slot of row r (slot 2g at i0, slot 2g+1 at i1 of group g).
void gather(const Sparse24Matrix& s, float* val, int32_t* col) {
  const int64_t half = s.cols / 2, groups = s.cols / 4;
  dispatch_dtype(s.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* v = s.values.data<T>();
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        const uint8_t code = s.mask.code(r, g);
        S24_CHECK(is_valid_group_code(code), kInvalidMask, "2:4 metadata of a ", s.rows, " x ",
                  s.cols, " matrix: row ", r, ", group ", g, " has code 0x", std::hex, int(code),
                  std::dec, ", not one of the six valid codes");
        const int64_t t = r * half + 2 * g;
        val[t] = to_f32(v[t]) * s.scale;
        val[t + 1] = to_f32(v[t + 1]) * s.scale;
        col[t] = int32_t(4 * g + (code & 3));
        col[t + 1] = int32_t(4 * g + (code >> 2));
      }
  });
}

// Writes the fp32 values src[i] as the output dtype: round to nearest even, overflow to +-Inf.
void store(const float* src, int64_t count, const TensorView& out) {
  dispatch_input_dtype(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.data);
    for (int64_t i = 0; i < count; ++i) o[i] = from_f32<T>(src[i], 1.f, Overflow::kPyTorch);
  });
}

}  // namespace

void spmm_f32(const Sparse24Matrix& s, const float* d, int64_t n, float* c) {
  S24_CHECK(s.cols <= std::numeric_limits<int32_t>::max(), kShape, "2:4 matrix with ", s.cols,
            " columns: the CPU kernel indexes columns with int32");
  const int64_t m = s.rows, k = s.cols, half = k / 2;
  std::vector<float> val(size_t(m * half));
  std::vector<int32_t> col(size_t(m * half));
  gather(s, val.data(), col.data());
  // D as column panels of width kPanel: panel p (columns j0 = p * kPanel .. j0 + w) is a
  // contiguous k x w block starting at k * j0, so the panel a block of rows works on sits in
  // consecutive memory (a slice of a wide row-major D would be strided, and alias in the cache).
  constexpr int64_t kPanel = 128, kRowBlock = 16;
  std::vector<float> panels;
  if (n > kPanel) {
    panels.resize(size_t(k * n));
    for (int64_t j0 = 0; j0 < n; j0 += kPanel) {
      const int64_t w = std::min(kPanel, n - j0);
      for (int64_t i = 0; i < k; ++i)
        std::copy(d + i * n + j0, d + i * n + j0 + w, panels.data() + k * j0 + i * w);
    }
  }
  const float* dp = panels.empty() ? d : panels.data();
  // Row r of C is the sum over the kept slots t of val[r][t] * D[col[r][t]]: k/2 axpys over
  // contiguous rows of a panel, two at a time (the two slots of one group), in increasing slot
  // order, so every element sees the same additions in the same order whatever the blocking or
  // the number of threads. A block of kRowBlock rows of S reuses each panel (from L2).
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t r0 = 0; r0 < m; r0 += kRowBlock) {
    const int64_t r1 = std::min(r0 + kRowBlock, m);
    std::fill(c + r0 * n, c + r1 * n, 0.f);
    for (int64_t j0 = 0; j0 < n; j0 += kPanel) {
      const int64_t w = std::min(kPanel, n - j0);
      const float* panel = dp + k * j0;  // rows of length w
      for (int64_t r = r0; r < r1; ++r) {
        float* __restrict crow = c + r * n + j0;
        for (int64_t t = r * half; t < (r + 1) * half; t += 2) {
          const float v0 = val[size_t(t)], v1 = val[size_t(t + 1)];
          const float* __restrict d0 = panel + int64_t(col[size_t(t)]) * w;
          const float* __restrict d1 = panel + int64_t(col[size_t(t + 1)]) * w;
          for (int64_t j = 0; j < w; ++j) crow[j] = (crow[j] + v0 * d0[j]) + v1 * d1[j];
        }
      }
    }
  }
}

void mm_sb(const Sparse24Matrix& s, const TensorView& b, const TensorView& out) {
  Tensor holder;
  const float* d = f32_row_major(b, holder);  // B: k x n
  const int64_t m = s.rows, n = b.cols();
  if (out.dtype == DType::kF32) {  // C is the output
    spmm_f32(s, d, n, static_cast<float*>(out.data));
    return;
  }
  std::vector<float> c(size_t(m * n));
  spmm_f32(s, d, n, c.data());
  store(c.data(), m * n, out);
}

void mm_as_t(const TensorView& a, const Sparse24Matrix& s, const TensorView* bias,
             const TensorView& out) {
  // A S^T = (S A^T)^T: C = S D with D = A^T (k x n), then out[j][i] = C[i][j] (+ bias[i]).
  Tensor holder;
  const float* d = f32_row_major(a.t(), holder);
  const int64_t m = s.rows, n = a.rows();
  std::vector<float> c(size_t(m * n));
  spmm_f32(s, d, n, c.data());

  std::vector<float> bias_f32;  // empty: no bias (adding +0 would turn a -0 result into +0)
  if (bias) {
    const int64_t stride = bias->strides[bias->rank - 1];
    bias_f32.resize(size_t(m));
    dispatch_input_dtype(bias->dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* b = static_cast<const T*>(bias->data);
      for (int64_t i = 0; i < m; ++i) bias_f32[size_t(i)] = to_f32(b[i * stride]);
    });
  }
  const float* bf = bias_f32.empty() ? nullptr : bias_f32.data();
  dispatch_input_dtype(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.data);
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t j = 0; j < n; ++j)  // output row j = column j of C, written in row-major order
      for (int64_t i = 0; i < m; ++i) {
        const float v = c[size_t(i * n + j)];
        o[j * m + i] = from_f32<T>(bf ? bf[i] + v : v, 1.f, Overflow::kPyTorch);
      }
  });
}

}  // namespace sparse24::cpu
