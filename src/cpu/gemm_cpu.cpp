// The CPU backend of the products: a gather + axpy kernel for 2:4 (spmm_f32), a blocked axpy
// kernel for dense (gemm_f32); fp32 accumulation.
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

// Writes the fp32 row-major matrix src (out.rows() x out.cols()) into the matrix out of any
// strides, as out's dtype: round to nearest even, overflow to +-Inf.
void store(const float* src, const TensorView& out) {
  const int64_t rows = out.rows(), cols = out.cols();
  dispatch_input_dtype(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        *out.at<T>(i, j) = from_f32<T>(src[i * cols + j], 1.f, Overflow::kPyTorch);
  });
}

// The `count` elements of a vector (rank 1, or 1 x count; any stride; fp32, fp16 or bf16) as
// fp32.
std::vector<float> vector_f32(const TensorView& v, int64_t count) {
  std::vector<float> out(static_cast<size_t>(count));
  const int64_t stride = v.strides[v.rank - 1];
  dispatch_input_dtype(v.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = static_cast<const T*>(v.data);
    for (int64_t i = 0; i < count; ++i) out[size_t(i)] = to_f32(p[i * stride]);
  });
  return out;
}

// A row-major k x n fp32 matrix D as column panels of width kPanel: panel p (columns
// j0 = p * kPanel .. j0 + w) is a contiguous k x w block starting at k * j0, so the panel a block
// of rows works on sits in consecutive memory (a slice of a wide row-major D would be strided, and
// alias in the cache). Returns d itself when it is one panel (n <= kPanel), else the panels, which
// `holder` keeps.
constexpr int64_t kPanel = 128;
const float* column_panels(const float* d, int64_t k, int64_t n, std::vector<float>& holder) {
  if (n <= kPanel) return d;
  holder.resize(size_t(k * n));
  for (int64_t j0 = 0; j0 < n; j0 += kPanel) {
    const int64_t w = std::min(kPanel, n - j0);
    for (int64_t i = 0; i < k; ++i)
      std::copy(d + i * n + j0, d + i * n + j0 + w, holder.data() + k * j0 + i * w);
  }
  return holder.data();
}

// C[m x n] = A[m x k] B[k x n], all fp32 row-major, C written (not accumulated). Every element
// is the fp32 sum of its k products in increasing k order, starting from +0: ((0 + a0 b0) +
// a1 b1) + ..., whatever the blocking or the number of threads.
void gemm_f32(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c) {
  constexpr int64_t kRowBlock = 16, kDepth = 256;
  std::vector<float> holder;
  const float* bp = column_panels(b, k, n, holder);
  // A block of kRowBlock rows of C, one panel wide (8 KiB: L1), takes kDepth rows of the panel
  // at a time (128 KiB: L2): two axpys at a time, in increasing k.
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t r0 = 0; r0 < m; r0 += kRowBlock) {
    const int64_t r1 = std::min(r0 + kRowBlock, m);
    std::fill(c + r0 * n, c + r1 * n, 0.f);
    for (int64_t j0 = 0; j0 < n; j0 += kPanel) {
      const int64_t w = std::min(kPanel, n - j0);
      const float* panel = bp + k * j0;  // rows of length w
      for (int64_t t0 = 0; t0 < k; t0 += kDepth) {
        const int64_t t1 = std::min(t0 + kDepth, k);
        for (int64_t r = r0; r < r1; ++r) {
          float* __restrict crow = c + r * n + j0;
          const float* arow = a + r * k;
          int64_t t = t0;
          for (; t + 1 < t1; t += 2) {
            const float v0 = arow[t], v1 = arow[t + 1];
            const float* __restrict b0 = panel + t * w;
            const float* __restrict b1 = b0 + w;
            for (int64_t j = 0; j < w; ++j) crow[j] = (crow[j] + v0 * b0[j]) + v1 * b1[j];
          }
          if (t < t1) {
            const float v0 = arow[t];
            const float* __restrict b0 = panel + t * w;
            for (int64_t j = 0; j < w; ++j) crow[j] = crow[j] + v0 * b0[j];
          }
        }
      }
    }
  }
}

}  // namespace

void spmm_f32(const Sparse24Matrix& s, const float* d, int64_t n, float* c) {
  S24_CHECK(s.cols <= std::numeric_limits<int32_t>::max(), kShape, "2:4 matrix with ", s.cols,
            " columns: the CPU kernel indexes columns with int32");
  const int64_t m = s.rows, k = s.cols, half = k / 2;
  std::vector<float> val(size_t(m * half));
  std::vector<int32_t> col(size_t(m * half));
  gather(s, val.data(), col.data());
  constexpr int64_t kRowBlock = 16;
  std::vector<float> panels;
  const float* dp = column_panels(d, k, n, panels);
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

void sparse_mm(const Sparse24Matrix& s, const TensorView& b, const TensorView* bias, float alpha,
               float beta, const TensorView& d) {
  Tensor holder;
  const float* bf = f32_row_major(b, holder);  // B: k x n
  const int64_t m = s.rows, n = b.cols();
  std::vector<float> c(size_t(m * n));
  spmm_f32(s, bf, n, c.data());

  // Empty: no bias (adding +0 would turn a -0 result into +0).
  const std::vector<float> bias_f32 = bias ? vector_f32(*bias, m) : std::vector<float>();
  // D = beta * D + (alpha * C + bias), in that order (as the GPU epilogues do), rounded once.
  dispatch_input_dtype(d.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        float v = c[size_t(i * n + j)];
        if (alpha != 1.f) v = alpha * v;
        if (!bias_f32.empty()) v = v + bias_f32[size_t(i)];
        T* o = d.at<T>(i, j);
        if (beta != 0.f) v = beta * to_f32(*o) + v;
        *o = from_f32<T>(v, 1.f, Overflow::kPyTorch);
      }
  });
}

void dense_mm(const TensorView& a, const TensorView& b, const TensorView* bias, float alpha,
              float beta, const TensorView& out) {
  Tensor a_holder, b_holder;
  const float* af = f32_row_major(a, a_holder);  // m x k
  const float* bf = f32_row_major(b, b_holder);  // k x n
  const int64_t m = a.rows(), k = a.cols(), n = b.cols();
  std::vector<float> c(size_t(m * n));
  gemm_f32(af, bf, m, k, n, c.data());
  // empty: no bias (adding +0 would turn a -0 result into +0)
  const std::vector<float> bias_f32 = bias ? vector_f32(*bias, n) : std::vector<float>();
  // out = beta * out + (alpha * C + bias), in that order (sparse_mm's), rounded once by store.
  dispatch_input_dtype(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        float& v = c[size_t(i * n + j)];
        if (alpha != 1.f) v = alpha * v;
        if (!bias_f32.empty()) v = v + bias_f32[size_t(j)];
        if (beta != 0.f) v = beta * to_f32(*out.at<const T>(i, j)) + v;
      }
  });
  store(c.data(), out);
}

}  // namespace sparse24::cpu
