// The native backend: picks one of the CUTLASS sm90 kernels of kernels.def for a call and runs
// it on the operands as they are (no copies, no re-layout). What a call needs:
//   - a Hopper GPU (sm_90);
//   - the 2:4 operand compressed with the metadata layout native_layout(dtype) (hw_meta);
//   - a kernel for its dtypes (S, B, D; bias in D's dtype) and for the majors of B and D;
//   - TMA alignment: K % 16 (16-bit values) or % 32 (8-bit); 16-byte aligned pointers and
//     leading dimensions; the contiguous extent of B and of D a multiple of 16 bytes.
// Each unmet need is an error that names it. Of the kernels of kernels.def that fit (the file
// lists them in order of preference, from `bench gemm --all-kernels`), the first runs whose tiles
// pad the output at most 15% beyond another's and whose tile is long along the output's long
// side, else the first of those that pad little (choose(), below); a fuller tile-count
// heuristic (wave quantization) chose worse than kernels.def's order at 2 of 14 benchmark shapes.
#include "gemm/native_sm90.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>
#include <string>

#include "cuda/check.h"
#include "cuda/runtime.h"
#include "sparse24/error.h"
#include "sparse24/gemm.h"

namespace sparse24::gemm {

// The kernels this build compiled (src/gemm/sm90/CMakeLists.txt lists them): those of
// kernels.def, and with -DSPARSE24_SM90_EXPLORE=ON the candidates of bench/sm90_explore.def
// (measured by `bench gemm --all-kernels`; SPARSE24_SM90_EXPLORE_ONLY picks some).
#define S24_SM90_KERNEL(name, ...) const Sm90Kernel& sm90_kernel_##name();
#include "gemm/sm90_kernels.inc"
#undef S24_SM90_KERNEL

const std::vector<const Sm90Kernel*>& native_kernels() {
  static const std::vector<const Sm90Kernel*> kernels = {
#define S24_SM90_KERNEL(name, ...) &sm90_kernel_##name(),
#include "gemm/sm90_kernels.inc"
#undef S24_SM90_KERNEL
  };
  return kernels;
}

bool native_built() { return true; }

namespace {

// How B (k x n) and D (m x n) sit in memory, as a kernel reads them.
struct Reading {
  bool b_k_major = false;
  int64_t ldb = 0;
  bool d_col_major = false;
  int64_t ldd = 0;
};

// The readings of a matrix view: column-major (strides[0] == 1, leading dimension strides[1]
// >= rows) and/or row-major (strides[1] == 1, leading dimension strides[0] >= cols). A vector
// may be both; a view whose rows or columns overlap is neither.
struct Majors {
  bool col = false, row = false;
  int64_t col_ld = 0, row_ld = 0;
};
Majors majors_of(const TensorView& v) {
  Majors m;
  m.col_ld = v.cols() == 1 ? v.rows() : v.strides[1];
  m.row_ld = v.rows() == 1 ? v.cols() : v.strides[0];
  m.col = (v.strides[0] == 1 || v.rows() == 1) && m.col_ld >= std::max<int64_t>(v.rows(), 1);
  m.row = (v.strides[1] == 1 || v.cols() == 1) && m.row_ld >= std::max<int64_t>(v.cols(), 1);
  return m;
}

std::string describe_kernels() {
  std::string s;
  for (const Sm90Kernel* k : native_kernels())
    s += detail::concat("\n  ", k->name, ": S ", dtype_name(k->a),
                        k->tile_k >= 128 ? " (sm90-k128)" : " (sm90-k64)", ", B ", dtype_name(k->b),
                        k->b_k_major ? " K-major" : " N-major", ", D ", dtype_name(k->d),
                        k->d_col_major ? " column-major" : " row-major");
  return s;
}

// The current GPU's SM count; throws kDevice unless it is a Hopper (sm_90). Checked once per GPU.
int hopper_sm_count() {
  static cuda::PerGpu<int> checked;  // the value unused: made once the GPU passed
  checked.get([](int&) {
    const int dev = cuda::current_gpu();
    int major = 0, minor = 0;
    S24_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    S24_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    S24_CHECK(major == 9 && minor == 0, kDevice, "the native sparse GEMM runs on Hopper (sm_90); "
              "GPU ", dev, " is sm_", major, minor, ": use GemmBackend::kCusparselt");
  });
  return cuda::sm_count();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The alignment needs shared by every kernel of the call's dtypes; throws kShape naming the
// first one unmet.
void check_alignment(const SparseProblem& p, const Sm90Kernel& k, const Reading& r) {
  const Sparse24Matrix& s = *p.s;
  const int64_t m = s.rows, kk = s.cols, n = p.d.cols();
  const int sa = dtype_size(k.a), sb = dtype_size(k.b), sd = dtype_size(k.d);
  const int k_align = sa == 1 ? 32 : 16;
  S24_CHECK(kk % k_align == 0, kShape, "native sparse GEMM: K = ", kk, " must be a multiple of ",
            k_align, " for ", dtype_name(k.a), " values (the 2:4 operand is ", m, " x ", kk, ")");
  S24_CHECK(aligned16(s.values.view().data) && aligned16(s.hw_meta.view().data) &&
                aligned16(p.b.data) && aligned16(p.d.data) && (!p.bias || aligned16(p.bias->data)),
            kShape, "native sparse GEMM: every operand must start at a 16-byte aligned address");
  const int64_t b_extent = r.b_k_major ? kk : n;
  S24_CHECK(b_extent * sb % 16 == 0 && r.ldb * sb % 16 == 0, kShape, "native sparse GEMM: B ",
            p.b.describe(), " read ", r.b_k_major ? "K-major" : "N-major", " needs its ",
            r.b_k_major ? "K" : "N", " extent and leading dimension to be multiples of ",
            16 / sb, " elements");
  const int64_t d_extent = r.d_col_major ? m : n;
  S24_CHECK(d_extent * sd % 16 == 0 && r.ldd * sd % 16 == 0, kShape, "native sparse GEMM: the ",
            "output ", p.d.describe(), " (", r.d_col_major ? "m" : "n", " = ", d_extent,
            ") needs its contiguous extent and leading dimension to be multiples of ", 16 / sd,
            " elements");
}

// The kernels for p's dtypes and majors, with the reading each uses.
std::vector<std::pair<const Sm90Kernel*, Reading>> fitting(const SparseProblem& p) {
  const Sparse24Matrix& s = *p.s;
  hopper_sm_count();  // throws unless the GPU is a Hopper
  const MetaLayout want = native_layout(s.dtype);
  S24_CHECK(s.layout != MetaLayout::kCanonical && s.hw_meta.defined(), kValue, "native sparse "
            "GEMM: the 2:4 operand (", s.rows, " x ", s.cols, ", ", dtype_name(s.dtype),
            ") carries the ", meta_layout_name(s.layout), " metadata layout; the native kernels "
            "read ", meta_layout_name(want), ": compress it with CompressOptions::layout = ",
            meta_layout_name(want), " (native_layout(dtype))");
  const Majors b = majors_of(p.b), d = majors_of(p.d);
  S24_CHECK(b.col || b.row, kShape, "native sparse GEMM: B ", p.b.describe(),
            " must be row- or column-major");
  S24_CHECK(d.col || d.row, kShape, "native sparse GEMM: the output ", p.d.describe(),
            " must be row- or column-major");
  const DType bias_dtype = p.bias ? p.bias->dtype : p.d.dtype;
  std::vector<std::pair<const Sm90Kernel*, Reading>> out;
  for (const Sm90Kernel* k : native_kernels()) {
    if (k->a != s.dtype || k->b != p.b.dtype || k->d != p.d.dtype || k->d != bias_dtype)
      continue;
    if (!(k->b_k_major ? b.col : b.row) || !(k->d_col_major ? d.col : d.row)) continue;
    if (s.layout != (k->tile_k >= 128 ? MetaLayout::kSm90K128 : MetaLayout::kSm90K64)) continue;
    if (!k->reads_source && p.beta != 0.f) continue;
    out.push_back({k, Reading{k->b_k_major, k->b_k_major ? b.col_ld : b.row_ld, k->d_col_major,
                              k->d_col_major ? d.col_ld : d.row_ld}});
  }
  S24_CHECK(!out.empty(), kDType, "native sparse GEMM: no kernel for S ", dtype_name(s.dtype),
            " (", meta_layout_name(s.layout), " metadata)",
            ", B ", p.b.describe(), ", output ", p.d.describe(),
            p.bias ? detail::concat(", bias ", dtype_name(p.bias->dtype)) : std::string(),
            " (a bias must have the output's dtype). The kernels:", describe_kernels(),
            "\nGemmBackend::kCusparselt covers more combinations");
  check_alignment(p, *out.front().first, out.front().second);
  return out;
}

// The workspace of the launch in progress, one per GPU (memory of one device is no use to a
// kernel on another); launches are serialised (launch_mutex) so that no thread grows (frees) the
// buffer between another's get and its kernel's launch.
std::mutex launch_mutex;
void* workspace(size_t bytes) {
  static cuda::PerGpu<cuda::Scratch> scratch;
  return scratch.get().get(bytes);
}

void launch(const SparseProblem& p, const Sm90Kernel& k, const Reading& r) {
  const Sparse24Matrix& s = *p.s;
  if (s.rows == 0 || p.d.cols() == 0) return;
  S24_CHECK(s.cols > 0, kShape, "native sparse GEMM: K = 0");
  S24_CHECK(s.rows <= INT32_MAX && s.cols <= INT32_MAX && p.d.cols() <= INT32_MAX, kShape,
            "native sparse GEMM: dimensions beyond 2^31 - 1");
  Sm90Args a;
  a.name = k.name;
  a.m = int(s.rows);
  a.n = int(p.d.cols());
  a.k = int(s.cols);
  a.a = s.values.view().data;
  a.e = static_cast<const uint8_t*>(s.hw_meta.view().data);
  a.b = p.b.data;
  a.ldb = r.ldb;
  a.d = p.d.data;
  a.ldd = r.ldd;
  a.bias = p.bias ? p.bias->data : nullptr;
  a.alpha = p.alpha * s.scale;
  a.beta = p.beta;
  a.sm_count = hopper_sm_count();
  a.workspace = &workspace;
  std::lock_guard<std::mutex> lock(launch_mutex);
  k.run(a);
}

}  // namespace

std::vector<NativeKernelInfo> native_kernel_info() {
  std::vector<NativeKernelInfo> info;
  for (const Sm90Kernel* k : native_kernels())
    info.push_back({k->name, k->a, k->b, k->d, k->b_k_major, k->d_col_major,
                    k->tile_k >= 128 ? MetaLayout::kSm90K128 : MetaLayout::kSm90K64, k->reads_source});
  return info;
}

namespace {

// The outputs a kernel's grid covers for an m x n output, padding included (grid_tiles).
int64_t padded_outputs(const Sm90Kernel& k, int64_t m, int64_t n) {
  return grid_tiles(m, n, k.tile_m, k.tile_n, k.cluster_m, k.cluster_n) * k.tile_m * k.tile_n;
}

// Whether a kernel's tile is long along the same side as an m x n output (square counts as tall).
bool same_orientation(const Sm90Kernel& k, int64_t m, int64_t n) { return (k.tile_m >= k.tile_n) == (m >= n); }

// The kernel for p with the reading it uses: p.native_kernel if named, else, of the fitting
// kernels that pad the output at most 15% more than the one that pads it least, the first in
// kernels.def order whose tile has the output's orientation, or the first if none has it.
// Padding: GPT-2 S's 768 x 3072 weight gradient in 256 x 128 tiles (2 x 1 clusters) pads m to
// 1024, a third more work; at GPT-2 XL proj's (1600 x 6400) they pad 12% more than 128 x 192
// tiles, within the margin, where 256 x 128 tiles had stayed ahead of 128 x 256 ones (GEMM v15).
// Orientation: 128 x 192 tiles ran 10-20% faster than 256 x 128 at both wide weight gradients,
// 256 x 128 as fast or faster at the two tall ones on an H100 (GEMM v18; on an H200 128 x 192
// won 6400 x 1600 by 11-13%).
std::pair<const Sm90Kernel*, Reading> choose(const SparseProblem& p) {
  const auto fit = fitting(p);
  if (p.native_kernel.empty()) {
    const int64_t m = p.s->rows, n = p.d.cols();
    int64_t least = padded_outputs(*fit.front().first, m, n);
    for (const auto& f : fit) least = std::min(least, padded_outputs(*f.first, m, n));
    const std::pair<const Sm90Kernel*, Reading>* first_near = nullptr;
    for (const auto& f : fit) {
      if (double(padded_outputs(*f.first, m, n)) > 1.15 * double(least)) continue;
      if (same_orientation(*f.first, m, n)) return f;
      if (!first_near) first_near = &f;
    }
    return *first_near;  // the least-padding kernel is near itself
  }
  for (const auto& f : fit)
    if (p.native_kernel == f.first->name) return f;
  std::string names;
  for (const auto& f : fit) names += detail::concat(" ", f.first->name);
  S24_FAIL(kValue, "native sparse GEMM: kernel '", p.native_kernel, "' does not fit this call; "
           "the kernels that do:", names);
}

}  // namespace

const Sm90Kernel& native_choice(const SparseProblem& p) { return *choose(p).first; }

bool native_mm_if_it_fits(const SparseProblem& p, std::string* why) {
  std::pair<const Sm90Kernel*, Reading> chosen;
  try {
    chosen = choose(p);  // throws before anything is launched
  } catch (const Error& e) {
    if (why) *why = e.what();
    return false;
  }
  launch(p, *chosen.first, chosen.second);
  return true;
}

void native_mm(const SparseProblem& p) {
  const auto [kernel, reading] = choose(p);
  launch(p, *kernel, reading);
}

}  // namespace sparse24::gemm
