// The cuSPARSELt backend (NVIDIA cuSPARSELt 0.8): D = alpha * scale(S) * S B + beta * D + bias.
//
// cuSPARSELt keeps a 2:4 matrix in its own opaque compressed format, made by
// cusparseLtSpMMACompress from a dense, already pruned matrix. So every product expands S (our
// values and canonical metadata) into a dense pruned copy of the stored values (S's scale goes
// into alpha), compresses that, then runs cusparseLtMatmul: one extra pass over a dense m x k
// matrix per call, as gemm.h says. CusparseltGemm (cusparselt_backend.h) compresses once.
//
// What runs (the data-type table of cuSPARSELt 0.8.0, in its wheel's METADATA; fp32 compute):
//   S, B fp16 -> D fp16;   S, B bf16 -> D bf16;   S, B e4m3 (or both e5m2) -> D fp16, bf16, fp32.
// S and B share one dtype (cuSPARSELt multiplies equal input types), the bias has D's dtype (the
// bias is in the type of C, and C is D here). fp32 values are not 2:4 for cuSPARSELt (its fp32
// kernels are 1:2), int8 would need an int8 B. B and D must start at 16-byte aligned addresses.
// Dimensions and layouts are cuSPARSELt's to judge: a refusal is reported as kShape naming the
// operand or the product (CUSPARSELT_LOG_LEVEL=1 makes cuSPARSELt print its reason).
//
// Plans are cached per (m, n, k, dtypes, majors of B and D, bias or not). A plan's first call
// runs cusparseLtMatmulSearch once and keeps the winner if its output agrees with the default
// algorithm's (Plan::search); every later call of that shape runs it. Plans with a bias run the
// default algorithm: searched ones gave wrong sums with a bias (bench/NOTES.md, GEMM v12).
// cuSPARSELt fixes the bias address when it initialises a matmul, so a plan keeps one cuSPARSELt
// matmul (a Binding) per bias address it has seen, each built from scratch (Binding says why
// nothing else is safe). Per GPU, one handle, one growing workspace and one set of compression
// buffers serve every plan, under one mutex (held while a call queues its work); a call uses the
// state of the GPU current when it is made. CusparseltGemm plans the same way but keeps its own
// plan, compressed S and workspace.
// Everything is queued on the default stream; two steps synchronise: the expansion of 8-bit S,
// done on the host since the library's decompress writes only 16- and 32-bit floats, and a
// plan's search.
#include "gemm/cusparselt_backend.h"

#include <cuda_runtime.h>
#include <cusparseLt.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda/runtime.h"
#include "cuda/transforms_cuda.h"
#include "sparse24/error.h"

#define S24_CUSPARSELT_CHECK(expr)                                                        \
  do {                                                                                    \
    const cusparseStatus_t s24_status = (expr);                                           \
    S24_CHECK(s24_status == CUSPARSE_STATUS_SUCCESS, kDevice, #expr, ": ",                \
              cusparseLtGetErrorName(s24_status), " (", cusparseLtGetErrorString(s24_status), \
              ")");                                                                       \
  } while (0)

namespace sparse24::gemm {
namespace {

constexpr size_t kCompressedSlack = size_t(64) << 10;  // see Binding::compress
constexpr const char* kOp = "cuSPARSELt backend";
constexpr uint32_t kAlignment = 16;  // bytes; cuSPARSELt accepts multiples of 16 only

// cuSPARSELt's answer to a descriptor or plan: "invalid value" and "not supported" mean that it
// has no kernel for what was asked (`what`), anything else is a device error.
void check_supported(cusparseStatus_t status, const char* call, const std::string& what) {
  if (status == CUSPARSE_STATUS_SUCCESS) return;
  S24_CHECK(status != CUSPARSE_STATUS_INVALID_VALUE && status != CUSPARSE_STATUS_NOT_SUPPORTED,
            kShape, kOp, ": cuSPARSELt does not support ", what, " (", call, ": ",
            cusparseLtGetErrorName(status), "; CUSPARSELT_LOG_LEVEL=1 prints its reason)");
  S24_FAIL(kDevice, kOp, ": ", call, " for ", what, ": ", cusparseLtGetErrorName(status), " (",
           cusparseLtGetErrorString(status), ")");
}

cudaDataType cuda_type(DType t) {
  switch (t) {
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF8E4M3: return CUDA_R_8F_E4M3;
    case DType::kF8E5M2: return CUDA_R_8F_E5M2;
    default: return CUDA_R_32F;  // the only other dtype reaching here: an fp32 output
  }
}

// What a plan is made for. B has S's dtype and the bias D's (check_problem enforces both).
struct PlanKey {
  int64_t m = 0, n = 0, k = 0;
  DType s_dtype = DType::kF16, d_dtype = DType::kF16;
  bool b_col_major = false, d_col_major = false, has_bias = false;

  auto tied() const {
    return std::tie(m, n, k, s_dtype, d_dtype, b_col_major, d_col_major, has_bias);
  }
  bool operator<(const PlanKey& o) const { return tied() < o.tied(); }
  bool operator==(const PlanKey& o) const { return tied() == o.tied(); }
  // "m x n x k = 128 x 64 x 256: S e4m3, B e4m3 col-major, D bf16 row-major, bias".
  std::string describe() const {
    const auto major = [](bool col) { return col ? " col-major" : " row-major"; };
    return detail::concat("m x n x k = ", m, " x ", n, " x ", k, ": S ", dtype_name(s_dtype),
                          ", B ", dtype_name(s_dtype), major(b_col_major), ", D ",
                          dtype_name(d_dtype), major(d_col_major), has_bias ? ", bias" : "");
  }
};

// The checks cuSPARSELt's dtype table and alignment rule call for; returns the problem's plan key.
PlanKey check_problem(const SparseProblem& p) {
  const Sparse24Matrix& s = *p.s;
  const bool fp8 = is_fp8(s.dtype);
  S24_CHECK(fp8 || s.dtype == DType::kF16 || s.dtype == DType::kBF16, kDType, kOp,
            ": no 2:4 kernels for ", dtype_name(s.dtype), " values (fp16, bf16, e4m3 and e5m2 "
            "have them; cuSPARSELt's fp32 kernels are 1:2 sparse)");
  S24_CHECK(p.b.dtype == s.dtype, kDType, kOp, ": B ", p.b.describe(), " must have the dtype of "
            "the 2:4 operand (", dtype_name(s.dtype), "): cuSPARSELt multiplies equal types");
  S24_CHECK(fp8 ? is_input_dtype(p.d.dtype) : p.d.dtype == s.dtype, kDType, kOp, ": output ",
            p.d.describe(), " must be ", fp8 ? "fp16, bf16 or fp32" : dtype_name(s.dtype),
            " for ", dtype_name(s.dtype), " inputs (cuSPARSELt 0.8 has no other output type)");
  S24_CHECK(!p.bias || p.bias->dtype == p.d.dtype, kDType, kOp, ": bias ", p.bias->describe(),
            " must have the output's dtype ", dtype_name(p.d.dtype),
            " (cuSPARSELt adds the bias in the output type)");
  S24_CHECK(p.b.is_row_major() || p.b.is_col_major(), kShape, kOp, ": B ", p.b.describe(),
            " must be row- or column-major");
  S24_CHECK(p.d.is_row_major() || p.d.is_col_major(), kShape, kOp, ": output ", p.d.describe(),
            " must be row- or column-major");
  const auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  S24_CHECK(aligned(p.b.data), kShape, kOp, ": B ", p.b.describe(), " starts at ", p.b.data,
            ", not a multiple of 16 bytes (cuSPARSELt needs 16-byte aligned operands)");
  S24_CHECK(aligned(p.d.data), kShape, kOp, ": output ", p.d.describe(), " starts at ",
            p.d.data, ", not a multiple of 16 bytes (cuSPARSELt needs 16-byte aligned operands)");
  PlanKey key;
  key.m = s.rows;
  key.n = p.d.cols();
  key.k = s.cols;
  key.s_dtype = s.dtype;
  key.d_dtype = p.d.dtype;
  key.b_col_major = !p.b.is_row_major();  // a view that is both (a dimension of 1) is row-major
  key.d_col_major = !p.d.is_row_major();
  key.has_bias = p.bias != nullptr;
  S24_CHECK(key.m > 0 && key.n > 0 && key.k > 0, kShape, kOp, ": empty product (", key.describe(),
            ")");
  return key;
}

// A cuSPARSELt object, released by Destroy once initialised (live).
template <typename T, cusparseStatus_t (*Destroy)(const T*)>
struct Owned {
  T obj{};
  bool live = false;
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() { destroy(); }
  void destroy() {
    if (live) Destroy(&obj);
    live = false;
  }
};
using MatDescriptor = Owned<cusparseLtMatDescriptor_t, cusparseLtMatDescriptorDestroy>;
using AlgSelection = Owned<cusparseLtMatmulAlgSelection_t, cusparseLtMatmulAlgSelectionDestroy>;
using MatmulPlan = Owned<cusparseLtMatmulPlan_t, cusparseLtMatmulPlanDestroy>;

const char* split_k_mode_name(int mode) {
  switch (mode) {
    case CUSPARSELT_SPLIT_K_MODE_ONE_KERNEL: return "one kernel";
    case CUSPARSELT_SPLIT_K_MODE_TWO_KERNELS: return "two kernels";
    case CUSPARSELT_HEURISTIC: return "heuristic";
    case CUSPARSELT_DATAPARALLEL: return "data-parallel";
    case CUSPARSELT_SPLITK: return "split-k";
    case CUSPARSELT_STREAMK: return "stream-k";
    default: return "no mode";
  }
}

// A matrix of `count` elements of an output dtype, read back to the host as floats.
std::vector<float> read_back(const void* data, size_t count, DType dtype) {
  std::vector<float> out(count);
  dispatch_input_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::vector<T> host(count);
    cuda::copy(host.data(), false, data, true, count * sizeof(T));
    for (size_t i = 0; i < count; ++i) out[i] = to_f32(host[i]);
  });
  return out;
}

// How far a searched algorithm's output may stray from the default's, relative to the largest
// finite |value| of the default's: four units in the last place of the output type, and at least
// 1e-3 (fp32 sums in another order) or 1e-2 for fp8 inputs (Hopper's fp8 tensor cores keep fewer
// accumulator bits). The wrong algorithms this guards against miss by far more.
double relative_tolerance(const PlanKey& key) {
  const double eps = key.d_dtype == DType::kBF16  ? 0x1p-7
                     : key.d_dtype == DType::kF16 ? 0x1p-10
                                                  : 0x1p-23;
  return std::max(4 * eps, is_fp8(key.s_dtype) ? 1e-2 : 1e-3);
}

// The largest |test - ref| over the elements, infinite where one is finite and the other is not
// or their non-finite values differ (NaN matches NaN); and the tolerance for it.
struct Agreement {
  double max_error = 0, tolerance = 0;
  bool ok() const { return max_error <= tolerance; }
};
Agreement compare_outputs(const std::vector<float>& ref, const std::vector<float>& test,
                          double relative) {
  Agreement a;
  double max_ref = 0;
  for (const float r : ref) {
    if (std::isfinite(r)) max_ref = std::max(max_ref, double(std::fabs(r)));
  }
  a.tolerance = relative * max_ref;
  for (size_t i = 0; i < ref.size(); ++i) {
    const float r = ref[i], t = test[i];
    double error = 0;
    if (std::isfinite(r) && std::isfinite(t)) {
      error = std::fabs(double(t) - double(r));
    } else if (!(std::isnan(r) && std::isnan(t)) && r != t) {
      error = std::numeric_limits<double>::infinity();
    }
    a.max_error = std::max(a.max_error, error);
  }
  return a;
}

// The algorithm a binding runs, as its algorithm selection reports it: cuSPARSELt's
// configuration id (0..max_id) and split-k settings.
struct AlgConfig {
  int id = 0, max_id = 0, split_k = 1, split_k_mode = 0, split_k_buffers = 0;
};

// One ready cuSPARSELt matmul for one bias address: the matmul descriptor (its bias pointer set
// before anything is initialised on it), an algorithm selection (cuSPARSELt's default, or a
// searched configuration) and the plan on them, built from scratch and never initialised again.
// Not movable: the plan may keep pointers to the descriptor and the selection.
//
// The rules, found the hard way with cuSPARSELt 0.8.0 on an H100 (bench/NOTES.md, GEMM v11 and
// v12): a binding runs only an S that it compressed itself (in the layers' orientation, B
// transposed and D column-major, S compressed by another binding gave illegal instructions or
// wrong sums, and so did a binding's own compression made after cusparseLtMatmulSearch had tuned
// it); a binding is never initialised again (after its bias pointer changed, that crashed in
// cusparseLtMatmulGetWorkspace). So a searched configuration is used only through fresh
// bindings, each compressing S itself.
class Binding {
 public:
  Binding(const cusparseLtHandle_t* handle, const PlanKey& key, const cusparseLtMatDescriptor_t& s,
          const cusparseLtMatDescriptor_t& b, const cusparseLtMatDescriptor_t& d,
          const void* bias, const AlgConfig* config)
      : handle_(handle) {
    check_supported(cusparseLtMatmulDescriptorInit(
                        handle_, &matmul_, CUSPARSE_OPERATION_NON_TRANSPOSE,
                        key.b_col_major ? CUSPARSE_OPERATION_TRANSPOSE
                                        : CUSPARSE_OPERATION_NON_TRANSPOSE,
                        &s, &b, &d, &d, CUSPARSE_COMPUTE_32F),
                    "cusparseLtMatmulDescriptorInit", "the product " + key.describe());
    if (key.has_bias) {
      S24_CUSPARSELT_CHECK(cusparseLtMatmulDescSetAttribute(
          handle_, &matmul_, CUSPARSELT_MATMUL_BIAS_POINTER, &bias, sizeof(bias)));
    }
    S24_CUSPARSELT_CHECK(cusparseLtMatmulAlgSelectionInit(handle_, &alg_.obj, &matmul_,
                                                          CUSPARSELT_MATMUL_ALG_DEFAULT));
    alg_.live = true;
    if (config) {  // a searched configuration: its id, and its split-k settings unless 1
      set_alg_attribute(CUSPARSELT_MATMUL_ALG_CONFIG_ID, config->id);
      if (config->split_k != 1) {
        set_alg_attribute(CUSPARSELT_MATMUL_SPLIT_K, config->split_k);
        set_alg_attribute(CUSPARSELT_MATMUL_SPLIT_K_MODE, config->split_k_mode);
        set_alg_attribute(CUSPARSELT_MATMUL_SPLIT_K_BUFFERS, config->split_k_buffers);
      }
    }
    check_supported(cusparseLtMatmulPlanInit(handle_, &plan_.obj, &matmul_, &alg_.obj),
                    "cusparseLtMatmulPlanInit", "the product " + key.describe());
    plan_.live = true;
    read_config();
  }

  const AlgConfig& config() const { return config_; }

  // Compresses the dense pruned S (m x k, row-major) for this plan into `compressed`, grown to
  // the size the plan gives, with `scratch` as cuSPARSELt's compression buffer; queued. Returns
  // the compressed S.
  void* compress(const void* dense, cuda::Scratch& compressed, cuda::Scratch& scratch) const {
    size_t bytes = 0, scratch_bytes = 0;
    S24_CUSPARSELT_CHECK(
        cusparseLtSpMMACompressedSize(handle_, &plan_.obj, &bytes, &scratch_bytes));
    // cuSPARSELt 0.8.0's sparse GEMM kernels read up to a few hundred bytes past the compressed
    // size it reports (1 KiB loads; compute-sanitizer showed it on a 144 x 352 fp16 operand on an
    // H100): the buffer gets 64 KiB of slack.
    void* out = compressed.get(bytes + kCompressedSlack);
    S24_CUSPARSELT_CHECK(cusparseLtSpMMACompress(handle_, &plan_.obj, dense, out,
                                                 scratch.get(scratch_bytes), nullptr));
    return out;
  }

  // D = alpha * S B + beta * D (+ bias) with this binding's algorithm; queued on the default
  // stream.
  void matmul(float alpha, const void* compressed, const void* b, float beta, void* d,
              cuda::Scratch& workspace) const {
    cudaStream_t stream = nullptr;
    S24_CUSPARSELT_CHECK(cusparseLtMatmul(handle_, &plan_.obj, &alpha, compressed, b, &beta, d, d,
                                          workspace.get(workspace_bytes_), &stream, 1));
  }

  // Times every algorithm on these inputs (cusparseLtMatmulSearch; S compressed by this binding;
  // into d with beta 0) and returns the winner's configuration. This binding must not run
  // afterwards (the class comment says why): fresh bindings run the winner.
  AlgConfig search(const void* compressed, const void* b, void* d, cuda::Scratch& workspace) {
    const float one = 1.f, zero = 0.f;
    cudaStream_t stream = nullptr;
    S24_CUSPARSELT_CHECK(cusparseLtMatmulSearch(handle_, &plan_.obj, &one, compressed, b, &zero,
                                                d, d, workspace.get(workspace_bytes_), &stream,
                                                1));
    read_config();
    return config_;
  }

 private:
  int alg_attribute(cusparseLtMatmulAlgAttribute_t attribute) const {
    int value = 0;
    S24_CUSPARSELT_CHECK(
        cusparseLtMatmulAlgGetAttribute(handle_, &alg_.obj, attribute, &value, sizeof(value)));
    return value;
  }

  void set_alg_attribute(cusparseLtMatmulAlgAttribute_t attribute, int value) {
    S24_CUSPARSELT_CHECK(
        cusparseLtMatmulAlgSetAttribute(handle_, &alg_.obj, attribute, &value, sizeof(value)));
  }

  // The algorithm the plan runs and the workspace it needs.
  void read_config() {
    config_.id = alg_attribute(CUSPARSELT_MATMUL_ALG_CONFIG_ID);
    config_.max_id = alg_attribute(CUSPARSELT_MATMUL_ALG_CONFIG_MAX_ID);
    config_.split_k = alg_attribute(CUSPARSELT_MATMUL_SPLIT_K);
    config_.split_k_mode = alg_attribute(CUSPARSELT_MATMUL_SPLIT_K_MODE);
    config_.split_k_buffers = alg_attribute(CUSPARSELT_MATMUL_SPLIT_K_BUFFERS);
    S24_CUSPARSELT_CHECK(cusparseLtMatmulGetWorkspace(handle_, &plan_.obj, &workspace_bytes_));
  }

  const cusparseLtHandle_t* handle_;
  cusparseLtMatmulDescriptor_t matmul_{};
  AlgSelection alg_;
  MatmulPlan plan_;  // declared last: destroyed first
  AlgConfig config_;
  size_t workspace_bytes_ = 0;
};

// "alg 3 (ids 0..11), split-k 1 (data-parallel)".
std::string describe_config(const AlgConfig& c) {
  return detail::concat("alg ", c.id, " (ids 0..", c.max_id, "), split-k ", c.split_k, " (",
                        split_k_mode_name(c.split_k_mode), ")");
}

struct Backend;

// What cuSPARSELt needs for one PlanKey: the descriptors of S (structured, m x k row-major), B
// and D (which is also C), the algorithm (the default until search() keeps a winner), and one
// Binding per bias address seen (one in all without bias). Not movable: bindings point at the
// descriptors.
class Plan {
 public:
  Plan(const cusparseLtHandle_t* handle, const PlanKey& key) : handle_(handle), key_(key) {
    const cudaDataType ab = cuda_type(key.s_dtype), cd = cuda_type(key.d_dtype);
    const int64_t m = key.m, n = key.n, k = key.k;
    check_supported(cusparseLtStructuredDescriptorInit(handle_, &s_.obj, m, k, k, kAlignment, ab,
                                                       CUSPARSE_ORDER_ROW,
                                                       CUSPARSELT_SPARSITY_50_PERCENT),
                    "cusparseLtStructuredDescriptorInit",
                    detail::concat("the 2:4 operand (", dtype_name(key.s_dtype), ", ", m, " x ",
                                   k, ")"));
    s_.live = true;
    // B row-major is itself (k x n); B column-major is B^T row-major (n x k), transposed back.
    check_supported(cusparseLtDenseDescriptorInit(handle_, &b_.obj, key.b_col_major ? n : k,
                                                  key.b_col_major ? k : n,
                                                  key.b_col_major ? k : n, kAlignment, ab,
                                                  CUSPARSE_ORDER_ROW),
                    "cusparseLtDenseDescriptorInit",
                    detail::concat("B (", dtype_name(key.s_dtype), ", ", k, " x ", n,
                                   key.b_col_major ? ", col-major)" : ", row-major)"));
    b_.live = true;
    check_supported(cusparseLtDenseDescriptorInit(handle_, &d_.obj, m, n, key.d_col_major ? m : n,
                                                  kAlignment, cd,
                                                  key.d_col_major ? CUSPARSE_ORDER_COL
                                                                  : CUSPARSE_ORDER_ROW),
                    "cusparseLtDenseDescriptorInit",
                    detail::concat("the output (", dtype_name(key.d_dtype), ", ", m, " x ", n,
                                   key.d_col_major ? ", col-major)" : ", row-major)"));
    d_.live = true;
  }

  const PlanKey& key() const { return key_; }

  // A new binding for `bias` (null without bias), running the plan's algorithm.
  std::unique_ptr<Binding> make(const void* bias) const {
    return make(bias, searched_ ? &config_ : nullptr);
  }

  bool tried_search() const { return !how_.empty(); }

  // cusparseLtMatmulSearch on p's inputs (p.d is not written), once, for a product without a
  // bias (with one, the default algorithm stays: GEMM v12 in bench/NOTES.md): a default binding
  // compresses S into `compressed`, writes the reference output (beta 0, into scratch) and is
  // searched; a fresh binding with the winner's configuration compresses S itself and runs. The
  // winner is kept if its output agrees with the reference (some configurations return wrong
  // results); otherwise, or if the search fails, the default stays. Called once, on a fresh
  // plan (before make()); synchronises.
  void search(Backend& be, const SparseProblem& p, cuda::Scratch& compressed,
              cuda::Scratch& workspace);

  // "alg 3 (ids 0..11), split-k 1 (data-parallel); searched, agrees with the default algorithm
  // (...)", or why the default runs.
  std::string describe() const {
    if (!tried_search()) return "the default algorithm (not searched)";
    return key_.has_bias ? how_ : describe_config(config_) + "; " + how_;
  }

  // The binding for a problem's bias, made on first use. Each call compresses S with the plan
  // of the binding that runs it.
  const Binding& bound(const SparseProblem& p) {
    const void* bias = p.bias ? p.bias->data : nullptr;
    auto it = bindings_.find(bias);
    if (it != bindings_.end()) return *it->second;
    // A training loop's fresh bias tensors would add bindings without end: past kMaxBindings
    // they are all dropped (after the GPU has finished the work queued with them) and rebuilt on
    // demand.
    if (bindings_.size() >= kMaxBindings) {
      S24_CHECK(cudaStreamSynchronize(nullptr) == cudaSuccess, kDevice, kOp,
                ": cudaStreamSynchronize before dropping cuSPARSELt plans failed");
      bindings_.clear();
    }
    return *bindings_.emplace(bias, make(bias)).first->second;
  }

 private:
  static constexpr size_t kMaxBindings = 64;

  // A new binding for `bias` running `config`, or cuSPARSELt's default algorithm if null.
  std::unique_ptr<Binding> make(const void* bias, const AlgConfig* config) const {
    return std::make_unique<Binding>(handle_, key_, s_.obj, b_.obj, d_.obj, bias, config);
  }

  const cusparseLtHandle_t* handle_;
  PlanKey key_;
  MatDescriptor s_, b_, d_;
  bool searched_ = false;  // bindings run config_ (else cuSPARSELt's default)
  AlgConfig config_;       // what the plan runs, once search() has run
  std::string how_;        // search()'s outcome; empty before
  std::map<const void*, std::unique_ptr<Binding>> bindings_;  // declared last: destroyed first
};

// The cuSPARSELt state of one GPU: a handle is bound to the GPU current at cusparseLtInit, and
// plans and buffers live on that GPU. Never destroyed: its plans and buffers would be released
// after the CUDA runtime has shut down.
struct Backend {
  std::mutex mutex;  // held by every call that uses the handle, the plans or the buffers
  cusparseLtHandle_t handle{};
  std::map<PlanKey, std::unique_ptr<Plan>> plans;  // cusparselt_mm's
  cuda::Scratch dense;             // the dense pruned copy of S, m x k row-major
  cuda::Scratch compressed;        // cusparselt_mm's compressed S
  cuda::Scratch compress_scratch;  // cuSPARSELt's compression buffer
  cuda::Scratch workspace;         // cusparseLtMatmul's
  std::vector<uint8_t> host_values, host_codes, host_dense;  // the 8-bit expansion
};

// The state of GPU `gpu` (current_gpu() by default), made on first use while it is current.
Backend& backend(int gpu = cuda::current_gpu()) {
  static cuda::PerGpu<Backend> states;
  return states.get([](Backend& b) { S24_CUSPARSELT_CHECK(cusparseLtInit(&b.handle)); }, gpu);
}

// Writes the dense pruned m x k copy of S's stored values (row-major, pruned entries zero) to
// `dense` (device memory). 16-bit values: the library's CUDA decompress with scale 1, queued.
// 8-bit values: decompress writes only 16- and 32-bit floats, so the bytes are placed on the host
// (synchronous copies both ways).
void expand(Backend& be, const Sparse24Matrix& s, void* dense) {
  if (dtype_size(s.dtype) == 2) {
    Sparse24Matrix unscaled = s;
    unscaled.scale = 1.f;
    cuda::decompress(unscaled, TensorView::matrix(dense, s.dtype, s.rows, s.cols,
                                                  Layout::kRowMajor, Device::kCUDA));
    return;
  }
  const size_t rows = size_t(s.rows), cols = size_t(s.cols), groups = cols / 4;
  const size_t row_bytes = size_t(s.mask.row_bytes());
  be.host_values.resize(rows * cols / 2);
  be.host_codes.resize(rows * row_bytes);
  be.host_dense.assign(rows * cols, 0);
  cuda::copy(be.host_values.data(), false, s.values.view().data, true, be.host_values.size());
  cuda::copy(be.host_codes.data(), false, s.mask.codes().view().data, true,
             be.host_codes.size());
  int64_t first_bad = std::numeric_limits<int64_t>::max();  // the first row with an invalid code
#ifdef SPARSE24_WITH_OPENMP
#pragma omp parallel for schedule(static) reduction(min : first_bad)
#endif
  for (int64_t ri = 0; ri < s.rows; ++ri) {
    const size_t r = size_t(ri);
    for (size_t g = 0; g < groups; ++g) {
      const uint8_t code = uint8_t((be.host_codes[r * row_bytes + g / 2] >> (4 * (g % 2))) & 0xF);
      if (!is_valid_group_code(code)) {
        first_bad = std::min(first_bad, ri);
        break;
      }
      const uint8_t* kept = &be.host_values[(r * groups + g) * 2];
      uint8_t* group = &be.host_dense[r * cols + 4 * g];
      group[code & 3] = kept[0];
      group[code >> 2] = kept[1];
    }
  }
  S24_CHECK(first_bad == std::numeric_limits<int64_t>::max(), kInvalidMask, kOp, ": the 2:4 "
            "operand (", s.rows, " x ", s.cols, ") has an invalid metadata code in row ",
            first_bad);
  cuda::copy(dense, true, be.host_dense.data(), false, be.host_dense.size());
}

// S expanded and compressed for `binding` into `target`; returns the compressed S.
void* compress_operand(Backend& be, const Binding& binding, const Sparse24Matrix& s,
                       cuda::Scratch& target) {
  void* dense = be.dense.get(size_t(s.rows) * size_t(s.cols) * size_t(dtype_size(s.dtype)));
  expand(be, s, dense);
  return binding.compress(dense, target, be.compress_scratch);
}

}  // namespace

void Plan::search(Backend& be, const SparseProblem& p, cuda::Scratch& compressed,
                  cuda::Scratch& workspace) {
  if (key_.has_bias) {
    how_ = "the default: plans with a bias are not searched (searched algorithms gave wrong sums "
           "with a bias, bench/NOTES.md, GEMM v12)";
    return;
  }
  const size_t count = size_t(key_.m) * size_t(key_.n);
  const size_t bytes = count * size_t(dtype_size(key_.d_dtype));
  const std::shared_ptr<void> ref = cuda::alloc(bytes), test = cuda::alloc(bytes);
  AlgConfig winner;
  {
    const std::unique_ptr<Binding> first = make(nullptr, nullptr);
    config_ = first->config();
    const void* s = compress_operand(be, *first, *p.s, compressed);
    first->matmul(1.f, s, p.b.data, 0.f, ref.get(), workspace);
    try {
      winner = first->search(s, p.b.data, test.get(), workspace);
    } catch (const Error& e) {
      how_ = detail::concat("the default: cusparseLtMatmulSearch failed (", e.what(), ")");
      return;
    }
  }
  const std::unique_ptr<Binding> chosen = make(nullptr, &winner);
  chosen->matmul(1.f, compress_operand(be, *chosen, *p.s, compressed), p.b.data, 0.f, test.get(),
                 workspace);
  const Agreement a = compare_outputs(read_back(ref.get(), count, key_.d_dtype),
                                      read_back(test.get(), count, key_.d_dtype),
                                      relative_tolerance(key_));
  if (!a.ok()) {
    how_ = detail::concat("the default: the searched alg ", winner.id, " disagreed with it (max "
                          "error ", a.max_error, " > ", a.tolerance, ")");
    return;
  }
  searched_ = true;
  config_ = winner;
  how_ = detail::concat("searched, agrees with the default algorithm (max error ", a.max_error,
                        " <= ", a.tolerance, ")");
}

bool cusparselt_built() { return true; }

void cusparselt_mm(const SparseProblem& p) {
  const PlanKey key = check_problem(p);
  Backend& be = backend();
  const std::lock_guard<std::mutex> lock(be.mutex);
  auto it = be.plans.find(key);
  if (it == be.plans.end()) {
    it = be.plans.emplace(key, std::make_unique<Plan>(&be.handle, key)).first;
  }
  Plan& plan = *it->second;
  if (!plan.tried_search()) plan.search(be, p, be.compressed, be.workspace);
  const Binding& binding = plan.bound(p);
  binding.matmul(p.alpha * p.s->scale, compress_operand(be, binding, *p.s, be.compressed),
                 p.b.data, p.beta, p.d.data, be.workspace);
}

struct CusparseltGemm::Impl {
  int gpu = -1;  // the GPU of the plan and the compressed S
  std::unique_ptr<Plan> plan;        // this product's own, searched or not
  const void* bias = nullptr;        // the bias address the binding was made for
  std::unique_ptr<Binding> binding;  // runs the plan's algorithm on `compressed`
  cuda::Scratch workspace;           // this product's own workspace
  cuda::Scratch compressed_buffer;   // and compressed S (compressed by `binding`)
  void* compressed = nullptr;
};

CusparseltGemm::CusparseltGemm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CusparseltGemm::~CusparseltGemm() {
  const std::lock_guard<std::mutex> lock(backend(impl_->gpu).mutex);
  impl_.reset();
}

std::unique_ptr<CusparseltGemm> CusparseltGemm::create(const SparseProblem& p, bool search) {
  const PlanKey key = check_problem(p);
  Backend& be = backend();
  const std::lock_guard<std::mutex> lock(be.mutex);
  auto impl = std::make_unique<Impl>();  // released under the lock if a step below throws
  impl->gpu = cuda::current_gpu();
  impl->plan = std::make_unique<Plan>(&be.handle, key);
  impl->bias = p.bias ? p.bias->data : nullptr;
  if (search) impl->plan->search(be, p, impl->compressed_buffer, impl->workspace);
  impl->binding = impl->plan->make(impl->bias);
  impl->compressed = compress_operand(be, *impl->binding, *p.s, impl->compressed_buffer);
  return std::unique_ptr<CusparseltGemm>(new CusparseltGemm(std::move(impl)));
}

void CusparseltGemm::run(const SparseProblem& p) {
  const PlanKey key = check_problem(p);
  const PlanKey& planned = impl_->plan->key();
  S24_CHECK(key == planned, kShape, kOp, ": CusparseltGemm::run got the problem ",
            key.describe(), ", planned for ", planned.describe());
  S24_CHECK(cuda::current_gpu() == impl_->gpu, kDevice, kOp, ": CusparseltGemm::run on GPU ",
            cuda::current_gpu(), ", planned on GPU ", impl_->gpu, " (cudaSetDevice(",
            impl_->gpu, ") first)");
  const void* bias = p.bias ? p.bias->data : nullptr;
  S24_CHECK(bias == impl_->bias, kValue, kOp, ": CusparseltGemm::run got a bias at ", bias,
            ", planned with the bias at ", impl_->bias, " (a cuSPARSELt plan keeps its bias "
            "address; cusparselt_mm takes any)");
  const std::lock_guard<std::mutex> lock(backend().mutex);
  impl_->binding->matmul(p.alpha * p.s->scale, impl_->compressed, p.b.data, p.beta, p.d.data,
                         impl_->workspace);
}

std::string CusparseltGemm::describe() const {
  return impl_->plan->describe();
}

std::string cusparselt_describe(const SparseProblem& p) {
  const PlanKey key = check_problem(p);
  Backend& be = backend();
  const std::lock_guard<std::mutex> lock(be.mutex);
  const auto it = be.plans.find(key);
  return it == be.plans.end() ? std::string("not planned (no call of this shape yet)")
                              : it->second->describe();
}

}  // namespace sparse24::gemm
