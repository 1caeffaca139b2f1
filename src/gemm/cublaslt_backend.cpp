// The cuBLASLt backend of the dense products (DenseProblem, src/gemm/backends.h):
//   D (m x n) = alpha * A B + beta * D + bias[i] on row i of D,
// one cublasLtMatmul (compute and scale type fp32) on the default stream, C being D in place.
//
// cuBLASLt is column-major: a row-major matrix is the column-major storage of its transpose.
//   * D column-major: cuBLASLt's D is D; its A is A (op T when A is row-major), its B is B (op T
//     when B is row-major). The bias runs along D's rows, as CUBLASLT_EPILOGUE_BIAS adds it (one
//     element per row of the output).
//   * D row-major, no bias: cuBLASLt computes D^T = B^T A^T, whose column-major storage is D.
//   * D row-major with a bias: D^T would carry the bias along its columns, which no epilogue
//     does; D is described as row-major instead (CUBLASLT_ORDER_ROW), operands as in the first
//     case. A GPU whose cuBLASLt has no kernel for that gets a kShape error asking for D
//     column-major.
// Operands are read K-major when they can be (A row-major, B column-major): the "TN" form, the
// only one Hopper's fp8 kernels run, so an fp8 product needs it.
//
// dtypes: fp32 x fp32 -> fp32 (CUBLAS_COMPUTE_32F: fp32 products, not TF32), fp16 x fp16 -> fp16
// or fp32, bf16 x bf16 -> bf16 or fp32, fp8 (e4m3/e5m2) x fp8 -> bf16, fp16 or fp32 (fp32
// accumulation with cuBLASLt's periodic promotion: fast accumulation off unless the problem asks
// for it (DenseProblem::fp8_fast_accumulation, for benchmarks); 16-byte aligned
// pointers and leading dimensions). cuBLASLt reads the bias as D's dtype (bf16 for an fp8 product
// into fp32); a bias of another dtype is widened into scratch memory when that is exact (fp16 or
// bf16 to fp32, by a one-column cuBLASLt product with 1), and refused when it would round.
// k == 0: D = beta * D + bias, through a product of zero operands with k = 16.
//
// Per GPU: one cuBLASLt handle, a 32 MiB workspace, a scratch buffer and the heuristic's best
// algorithm for every problem form seen (dims, leading dimensions, dtypes, transposes, pointer
// alignments, bias, beta != 0). One mutex serialises the calls (they only queue work).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "cuda/check.h"
#include "cuda/runtime.h"
#include "gemm/backends.h"
#include "sparse24/error.h"

namespace sparse24::gemm {

namespace {

// "CUBLAS_STATUS_NOT_SUPPORTED (the requested functionality is not supported)".
std::string status_text(cublasStatus_t status) {
  return detail::concat(cublasLtGetStatusName(status), " (", cublasLtGetStatusString(status), ")");
}
// A cuBLAS status other than success as kDevice: "<call>: <status_text>".
#define S24_CUBLAS_CHECK(expr)                                                     \
  do {                                                                             \
    const cublasStatus_t s24_status = (expr);                                      \
    S24_CHECK(s24_status == CUBLAS_STATUS_SUCCESS, kDevice, #expr, ": ",           \
              status_text(s24_status));                                            \
  } while (0)

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLAS's recommendation for Hopper
constexpr int64_t kZeroK = 16;                        // k of the zero operands when k == 0

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF8E4M3: return CUDA_R_8F_E4M3;
    case DType::kF8E5M2: return CUDA_R_8F_E5M2;
    default: return CUDA_R_32F;
  }
}

// The largest power of two up to 256 dividing the address (256 for null).
uint32_t alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

// A matrix as cuBLASLt stores it: rows x cols, column-major with leading dimension ld (row-major
// with CUBLASLT_ORDER_ROW when row_order).
struct LtMatrix {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0, cols = 0, ld = 0;
  bool row_order = false;
};

// One cublasLtMatmul: D = alpha * op(A) op(B) + beta * D (+ bias along D's rows).
struct LtGemm {
  LtMatrix a, b, d;
  bool trans_a = false, trans_b = false;
  const void* bias = nullptr;
  DType bias_dtype = DType::kF32;
  float alpha = 1.f, beta = 0.f;
  bool fast_accumulation = false;  // CUBLASLT_MATMUL_DESC_FAST_ACCUM (fp8)
};

// "D bf16 [64 x 48, ld 64, 256-byte aligned] = A^T e4m3 [32 x 64, ld 32, 256-byte aligned] B
// e5m2 [...] + bias bf16 (16-byte aligned) + beta D", for error messages.
std::string describe(const LtGemm& g) {
  auto matrix = [](const LtMatrix& x) {
    return detail::concat(dtype_name(x.dtype), " [", x.rows, " x ", x.cols, ", ld ", x.ld,
                          x.row_order ? ", row order" : "", ", ", alignment(x.data),
                          "-byte aligned]");
  };
  return detail::concat("D ", matrix(g.d), " = A", g.trans_a ? "^T " : " ", matrix(g.a), " B",
                        g.trans_b ? "^T " : " ", matrix(g.b),
                        g.bias ? detail::concat(" + bias ", dtype_name(g.bias_dtype), " (",
                                                alignment(g.bias), "-byte aligned)")
                               : std::string(),
                        g.beta != 0.f ? " + beta D" : "", g.fast_accumulation ? ", fast accumulation" : "");
}

// ---- Descriptors --------------------------------------------------------------------------

using OpPtr = std::unique_ptr<cublasLtMatmulDescOpaque_t, decltype(&cublasLtMatmulDescDestroy)>;
using LayoutPtr =
    std::unique_ptr<cublasLtMatrixLayoutOpaque_t, decltype(&cublasLtMatrixLayoutDestroy)>;
using PreferencePtr =
    std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, decltype(&cublasLtMatmulPreferenceDestroy)>;

LayoutPtr make_layout(const LtMatrix& x) {
  cublasLtMatrixLayout_t l = nullptr;
  S24_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, cuda_type(x.dtype), uint64_t(x.rows),
                                              uint64_t(x.cols), x.ld));
  LayoutPtr layout(l, &cublasLtMatrixLayoutDestroy);
  if (x.row_order) {
    const int32_t order = CUBLASLT_ORDER_ROW;
    S24_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_ORDER, &order, sizeof(order)));
  }
  return layout;
}

// The operation and the layouts of A, B and D (which is C too).
struct Descriptors {
  OpPtr op{nullptr, &cublasLtMatmulDescDestroy};
  LayoutPtr a{nullptr, &cublasLtMatrixLayoutDestroy}, b{nullptr, &cublasLtMatrixLayoutDestroy},
      d{nullptr, &cublasLtMatrixLayoutDestroy};

  explicit Descriptors(const LtGemm& g) {
    cublasLtMatmulDesc_t desc = nullptr;
    S24_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    op.reset(desc);
    const int32_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int32_t tb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    S24_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    S24_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (g.fast_accumulation) {
      const int8_t fast = 1;
      S24_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast)));
    }
    if (g.bias) {
      const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      const int32_t bias_type = cuda_type(g.bias_dtype);
      S24_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                      &epilogue, sizeof(epilogue)));
      S24_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &g.bias, sizeof(g.bias)));
      S24_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                      &bias_type, sizeof(bias_type)));
    }
    a = make_layout(g.a);
    b = make_layout(g.b);
    d = make_layout(g.d);
  }
};

// ---- Per-GPU state --------------------------------------------------------------------------

// What the heuristic's choice depends on: every field of the LtGemm but the addresses (their
// alignments instead) and alpha (beta: only whether it is 0).
using Key = std::array<int64_t, 24>;
Key key_of(const LtGemm& g) {
  Key key{};
  size_t i = 0;
  for (const LtMatrix* x : {&g.a, &g.b, &g.d})
    for (int64_t v : {int64_t(x->dtype), x->rows, x->cols, x->ld, int64_t(x->row_order),
                      int64_t(alignment(x->data))})
      key[i++] = v;
  key[i++] = g.trans_a;
  key[i++] = g.trans_b;
  key[i++] = g.bias ? int64_t(g.bias_dtype) : -1;
  key[i++] = alignment(g.bias);
  key[i++] = g.beta != 0.f;
  key[i++] = g.fast_accumulation;
  return key;
}

struct DeviceState {
  cublasLtHandle_t handle = nullptr;
  cuda::Scratch workspace;            // kWorkspaceBytes
  cuda::Scratch scratch;              // the widened bias, the zero operands
  std::shared_ptr<void> ones;         // fp16 1.0 at byte 0, bf16 1.0 at byte 2
  std::map<Key, cublasLtMatmulHeuristicResult_t> algos;
};

std::mutex g_mutex;  // guards everything below and every call's use of a DeviceState

// The state of the current GPU, created on first use.
DeviceState& device_state() {
  static cuda::PerGpu<DeviceState> states;
  return states.get([](DeviceState& st) {
    st.workspace.get(kWorkspaceBytes);
    st.ones = cuda::alloc(4);
    const uint16_t ones[2] = {0x3C00, 0x3F80};  // fp16 1.0, bf16 1.0
    cuda::copy(st.ones.get(), true, ones, false, sizeof(ones));
    S24_CUBLAS_CHECK(cublasLtCreate(&st.handle));
  });
}

// The heuristic's best algorithm for g, cached. No algorithm: kShape for a row-ordered D (the
// one form cuBLASLt may lack), else kDevice, naming the problem.
const cublasLtMatmulHeuristicResult_t& algo(DeviceState& st, const LtGemm& g,
                                            const Descriptors& ds) {
  const Key key = key_of(g);
  const auto found = st.algos.find(key);
  if (found != st.algos.end()) return found->second;
  cublasLtMatmulPreference_t pref_raw = nullptr;
  S24_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_raw));
  const PreferencePtr pref(pref_raw, &cublasLtMatmulPreferenceDestroy);
  const uint64_t workspace = kWorkspaceBytes;
  S24_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref_raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, const void*> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, g.a.data},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, g.b.data},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, g.d.data},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, g.d.data}};
  for (const auto& [attr, ptr] : aligns) {
    const uint32_t align = alignment(ptr);
    S24_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref_raw, attr, &align, sizeof(align)));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int count = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(st.handle, ds.op.get(), ds.a.get(), ds.b.get(), ds.d.get(),
                                     ds.d.get(), pref_raw, 1, &result, &count);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || (status == CUBLAS_STATUS_SUCCESS && count == 0)) {
    const std::string what = "cuBLASLt has no kernel for " + describe(g);
    if (g.d.row_order)
      throw Error(ErrorKind::kShape, what + ": a bias on a row-major D needs D described "
                                            "row-major, which this cuBLASLt does not run; pass "
                                            "D column-major");
    throw Error(ErrorKind::kDevice, what);
  }
  S24_CHECK(status == CUBLAS_STATUS_SUCCESS, kDevice, "cublasLtMatmulAlgoGetHeuristic for ",
            describe(g), ": ", status_text(status));
  return st.algos.emplace(key, result).first->second;
}

void launch(DeviceState& st, const LtGemm& g) {
  const Descriptors ds(g);
  const cublasLtMatmulHeuristicResult_t& best = algo(st, g, ds);
  const cublasStatus_t status =
      cublasLtMatmul(st.handle, ds.op.get(), &g.alpha, g.a.data, ds.a.get(), g.b.data,
                     ds.b.get(), &g.beta, g.d.data, ds.d.get(), g.d.data, ds.d.get(), &best.algo,
                     st.workspace.get(kWorkspaceBytes), best.workspaceSize, 0);
  S24_CHECK(status == CUBLAS_STATUS_SUCCESS, kDevice, "cublasLtMatmul for ", describe(g), ": ",
            status_text(status));
}

// ---- From a DenseProblem to cublasLtMatmul calls ------------------------------------------

// How a view reads as a matrix: row-major (element (i, j) at i * row_ld + j) and/or
// column-major (at i + j * col_ld); 0 when it does not. A dimension of 1 allows both.
struct Majors {
  int64_t row_ld = 0, col_ld = 0;
};
Majors majors_of(const TensorView& v) {
  const int64_t r = v.rows(), c = v.cols();
  Majors m;
  if ((c <= 1 || v.strides[1] == 1) && (r <= 1 || v.strides[0] >= std::max<int64_t>(c, 1)))
    m.row_ld = r <= 1 ? std::max<int64_t>(c, 1) : v.strides[0];
  if ((r <= 1 || v.strides[0] == 1) && (c <= 1 || v.strides[1] >= std::max<int64_t>(r, 1)))
    m.col_ld = c <= 1 ? std::max<int64_t>(r, 1) : v.strides[1];
  return m;
}

// The dtype cuBLASLt reads the bias as: D's, but bf16 for an fp8 product into fp32.
DType lt_bias_dtype(const DenseProblem& p) {
  return is_fp8(p.a.dtype) && p.d.dtype == DType::kF32 ? DType::kBF16 : p.d.dtype;
}

// The checks that need no GPU: shapes, dtypes, the bias. Returns whether the bias must be
// widened (fp16/bf16 to fp32) before cuBLASLt reads it.
bool check(const DenseProblem& p) {
  S24_CHECK(p.a.is_matrix() && p.b.is_matrix() && p.d.is_matrix() && p.a.rows() == p.d.rows() &&
                p.b.rows() == p.a.cols() && p.b.cols() == p.d.cols(),
            kShape, "cuBLASLt: shapes do not fit D (m x n) = A (m x k) B (k x n): A ",
            p.a.describe(), ", B ", p.b.describe(), ", D ", p.d.describe());
  const DType a = p.a.dtype, b = p.b.dtype, d = p.d.dtype;
  const bool ok = is_fp8(a) || is_fp8(b)
                      ? is_fp8(a) && is_fp8(b) && is_input_dtype(d)
                      : a == b && is_input_dtype(a) && (d == a || d == DType::kF32);
  S24_CHECK(ok, kDType, "cuBLASLt: no product of A ", dtype_name(a), " and B ", dtype_name(b),
            " into D ", dtype_name(d), "; it runs fp32 x fp32 -> fp32, fp16 x fp16 -> fp16 or "
            "fp32, bf16 x bf16 -> bf16 or fp32, fp8 x fp8 (e4m3, e5m2) -> bf16, fp16 or fp32");
  if (!p.bias) return false;
  const TensorView& bias = *p.bias;
  S24_CHECK(bias.numel() == p.d.rows() && bias.is_contiguous(), kShape, "cuBLASLt: the bias ",
            bias.describe(), " must be ", p.d.rows(), " contiguous elements (one per row of D ",
            p.d.describe(), ")");
  const DType want = lt_bias_dtype(p);
  if (bias.dtype == want) return false;
  S24_CHECK(want == DType::kF32 && (bias.dtype == DType::kF16 || bias.dtype == DType::kBF16),
            kDType, "cuBLASLt: a bias ", bias.describe(), " for a product of ", dtype_name(a),
            " into ", dtype_name(d), ": cuBLASLt reads the bias as ", dtype_name(want),
            ", and converting ", dtype_name(bias.dtype), " to it would round; pass a ",
            dtype_name(want), " bias");
  return true;
}

// The one cublasLtMatmul computing p, its bias (already of the dtype cuBLASLt reads) at `bias`.
LtGemm plan(const DenseProblem& p, const void* bias, DType bias_dtype) {
  const int64_t m = p.d.rows(), n = p.d.cols(), k = p.a.cols();
  const Majors am = majors_of(p.a), bm = majors_of(p.b), dm = majors_of(p.d);
  using Named = std::tuple<const char*, const TensorView*, Majors>;
  for (const auto& [name, v, mj] :
       {Named{"A", &p.a, am}, Named{"B", &p.b, bm}, Named{"D", &p.d, dm}})
    S24_CHECK(mj.row_ld || mj.col_ld, kShape, "cuBLASLt: ", name, " ", v->describe(),
              " must be row- or column-major (a unit stride)");
  const bool a_row = am.row_ld != 0, b_col = bm.col_ld != 0;  // K-major when possible
  const bool fp8 = is_fp8(p.a.dtype);
  S24_CHECK(!fp8 || (a_row && b_col), kShape, "cuBLASLt: an fp8 product needs both operands "
            "K-major (A row-major, B column-major: the \"TN\" form of Hopper's fp8 kernels); got "
            "A ", p.a.describe(), ", B ", p.b.describe());
  // The memory of A and B as column-major matrices: A^T (k x m) or A, B (k x n) or B^T.
  const LtMatrix a_mem = a_row ? LtMatrix{p.a.data, p.a.dtype, k, m, am.row_ld}
                               : LtMatrix{p.a.data, p.a.dtype, m, k, am.col_ld};
  const LtMatrix b_mem = b_col ? LtMatrix{p.b.data, p.b.dtype, k, n, bm.col_ld}
                               : LtMatrix{p.b.data, p.b.dtype, n, k, bm.row_ld};
  LtGemm g;
  if (dm.col_ld || bias) {  // D (column-major, or row order) = A B
    g.d = dm.col_ld ? LtMatrix{p.d.data, p.d.dtype, m, n, dm.col_ld}
                    : LtMatrix{p.d.data, p.d.dtype, m, n, dm.row_ld, true};
    g.a = a_mem;
    g.trans_a = a_row;
    g.b = b_mem;
    g.trans_b = !b_col;
  } else {  // D^T = B^T A^T, column-major D^T being row-major D
    g.d = LtMatrix{p.d.data, p.d.dtype, n, m, dm.row_ld};
    g.a = b_mem;
    g.trans_a = b_col;
    g.b = a_mem;
    g.trans_b = !a_row;
  }
  for (const LtMatrix* x : {&g.a, &g.b, &g.d})
    S24_CHECK(x->rows <= INT_MAX && x->cols <= INT_MAX && x->ld <= INT_MAX, kShape,
              "cuBLASLt: ", describe(g), ": dimensions beyond 2^31 - 1");
  if (fp8)
    for (const LtMatrix* x : {&g.a, &g.b, &g.d})
      S24_CHECK(alignment(x->data) >= 16 && x->ld * dtype_size(x->dtype) % 16 == 0, kShape,
                "cuBLASLt: an fp8 product needs 16-byte aligned pointers and leading dimensions "
                "(multiples of 16 bytes); got ", describe(g));
  g.bias = bias;
  g.bias_dtype = bias_dtype;
  g.alpha = p.alpha;
  g.beta = p.beta;
  g.fast_accumulation = fp8 && p.fp8_fast_accumulation;
  return g;
}

// The cuBLASLt calls of a problem: zero operands to clear (k == 0), the bias to widen, the
// product.
struct Calls {
  void* zeros = nullptr;
  size_t zero_bytes = 0;
  std::optional<LtGemm> widen;
  LtGemm main;
};

// m, n > 0. Scratch: [the widened bias][A zeros (m x kZeroK row-major)][B zeros (kZeroK x n
// column-major)], each region 256-byte aligned.
Calls prepare(DeviceState& st, const DenseProblem& p) {
  const bool widen = check(p);
  const int64_t m = p.d.rows(), n = p.d.cols();
  auto round_up = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
  const size_t bias_bytes = widen ? round_up(size_t(m) * 4) : 0;
  const size_t a_zero_bytes = round_up(size_t(m * kZeroK * dtype_size(p.a.dtype)));
  const size_t zero_bytes =
      p.a.cols() == 0 ? a_zero_bytes + size_t(n * kZeroK * dtype_size(p.b.dtype)) : 0;
  char* scratch = (bias_bytes + zero_bytes) != 0
                      ? static_cast<char*>(st.scratch.get(bias_bytes + zero_bytes))
                      : nullptr;
  Calls calls;
  DenseProblem q = p;
  if (zero_bytes) {
    calls.zeros = scratch + bias_bytes;
    calls.zero_bytes = zero_bytes;
    q.a = TensorView::matrix(calls.zeros, p.a.dtype, m, kZeroK, Layout::kRowMajor, Device::kCUDA);
    q.b = TensorView::matrix(static_cast<char*>(calls.zeros) + a_zero_bytes, p.b.dtype, kZeroK, n,
                             Layout::kColMajor, Device::kCUDA);
  }
  if (widen) {  // bias (fp16/bf16) * 1 into fp32: an m x 1 x 1 product, exact
    const TensorView& bias = *p.bias;
    LtGemm w;
    w.a = {bias.data, bias.dtype, m, 1, m};
    w.b = {static_cast<char*>(st.ones.get()) + (bias.dtype == DType::kF16 ? 0 : 2), bias.dtype, 1,
           1, 1};
    w.d = {scratch, DType::kF32, m, 1, m};
    calls.widen = w;
    calls.main = plan(q, scratch, DType::kF32);
  } else {
    calls.main = plan(q, p.bias ? p.bias->data : nullptr, lt_bias_dtype(p));
  }
  return calls;
}

}  // namespace

void cublaslt_mm(const DenseProblem& p) {
  if (p.d.rows() == 0 || p.d.cols() == 0) {
    check(p);
    return;
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  DeviceState& st = device_state();
  const Calls calls = prepare(st, p);
  if (calls.zero_bytes) S24_CUDA_CHECK(cudaMemsetAsync(calls.zeros, 0, calls.zero_bytes, 0));
  if (calls.widen) launch(st, *calls.widen);
  launch(st, calls.main);
}

// "cuBLASLt algo 66, tile 18, stages 30, split-k 1, swizzle 0, workspace 0 B, waves 0.96": the
// heuristic's choice for p's product (cached; the first call for a form runs the heuristic).
std::string cublaslt_describe(const DenseProblem& p) {
  if (p.d.rows() == 0 || p.d.cols() == 0) return "cuBLASLt: empty product, nothing runs";
  std::lock_guard<std::mutex> lock(g_mutex);
  DeviceState& st = device_state();
  const LtGemm g = prepare(st, p).main;
  const Descriptors ds(g);
  const cublasLtMatmulHeuristicResult_t& best = algo(st, g, ds);
  int32_t id = 0, split_k = 0;
  uint32_t tile = 0, stages = 0, swizzle = 0;
  size_t written = 0;
  S24_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(&best.algo, CUBLASLT_ALGO_CONFIG_ID, &id,
                                                        sizeof(id), &written));
  S24_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(&best.algo, CUBLASLT_ALGO_CONFIG_TILE_ID,
                                                        &tile, sizeof(tile), &written));
  S24_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(
      &best.algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof(stages), &written));
  S24_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(
      &best.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split_k, sizeof(split_k), &written));
  S24_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(
      &best.algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swizzle, sizeof(swizzle), &written));
  return detail::concat("cuBLASLt algo ", id, ", tile ", tile, ", stages ", stages, ", split-k ",
                        split_k, ", swizzle ", swizzle, ", workspace ", best.workspaceSize,
                        " B, waves ", best.wavesCount);
}

}  // namespace sparse24::gemm
