// The CPU backend of the products: a gather + axpy kernel for 2:4 (spmm_f32); dense products
// through the GPT-2 layers' blocked kernel (nn_cpu.h); fp32 accumulation, one shared epilogue.
#include "cpu/gemm_cpu.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "cpu/nn_cpu.h"
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

// The epilogue of both products: out (rows x cols, any strides and float dtype) = beta * out +
// (alpha * C + bias), in that order (as the GPU epilogues do), rounded once. C: fp32 row-major;
// bias: empty (adding +0 would turn a -0 result into +0), or one value per row (bias_per_row) or
// per column. beta == 0 never reads out.
void epilogue(const std::vector<float>& c, float alpha, const std::vector<float>& bias,
              bool bias_per_row, float beta, const TensorView& out) {
  const int64_t rows = out.rows(), cols = out.cols();
  dispatch_input_dtype(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        float v = c[size_t(i * cols + j)];
        if (alpha != 1.f) v = alpha * v;
        if (!bias.empty()) v = v + bias[size_t(bias_per_row ? i : j)];
        T* o = out.at<T>(i, j);
        if (beta != 0.f) v = beta * to_f32(*o) + v;
        *o = from_f32<T>(v, 1.f, Overflow::kPyTorch);
      }
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
  epilogue(c, alpha, bias ? vector_f32(*bias, m) : std::vector<float>(), true, beta, d);
}

void dense_mm(const TensorView& a, const TensorView& b, const TensorView* bias, float alpha,
              float beta, const TensorView& out) {
  // C = A B with the GPT-2 layers' kernel: C = A (B^T)^T, every element summed from +0 in
  // increasing k.
  Tensor a_holder, bt_holder;
  const float* af = f32_row_major(a, a_holder);         // m x k
  const float* btf = f32_row_major(b.t(), bt_holder);  // n x k
  const int64_t m = a.rows(), k = a.cols(), n = b.cols();
  std::vector<float> c(size_t(m * n));
  nn::matmul_forward(c.data(), af, btf, nullptr, m, k, n);
  epilogue(c, alpha, bias ? vector_f32(*bias, n) : std::vector<float>(), false, beta, out);
}

}  // namespace sparse24::cpu
