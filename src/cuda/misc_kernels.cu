// CUDA twins of the small transforms: S-STE scale, decompress, masked decay, flip rate. Each
// thread owns one group of 4 (or one metadata byte); the arithmetic is the CPU's.
#include <vector>

#include "core/rules24.h"
#include "cuda/check.h"
#include "cuda/tile.cuh"
#include "cuda/transforms_cuda.h"

namespace sparse24::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ uint8_t code_at(const uint8_t* meta, int64_t row_bytes, int64_t r, int64_t g) {
  return uint8_t((meta[r * row_bytes + g / 2] >> (4 * (g % 2))) & 0xF);
}

// Per block: sum over its groups of <x, S(x)> and <S(x), S(x)> in double (grid-stride loop, then a
// tree in shared memory). The host adds the block partials in block order.
template <typename In>
__global__ void __launch_bounds__(kThreads) sste_partials(DeviceMatrix w, double* partials, unsigned long long* bad) {
  __shared__ double sd[kThreads], sn[kThreads];
  const In* base = static_cast<const In*>(w.data);
  const int64_t groups = w.cols / 4, total = w.rows * groups;
  double d = 0.0, n = 0.0;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < total; i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / groups, g = i % groups;
    float x[4], v0, v1;
    for (int k = 0; k < 4; ++k) {
      x[k] = to_f32(base[r * w.sr + (4 * g + k) * w.sc]);
      if (!rules::is_finite_f(x[k])) report_first(bad, r * w.cols + 4 * g + k);
    }
    const rules::Pick p = rules::soft_threshold(x, 1.f, &v0, &v1);
    d += double(x[p.i0]) * v0 + double(x[p.i1]) * v1;
    n += double(v0) * v0 + double(v1) * v1;
  }
  sd[threadIdx.x] = d;
  sn[threadIdx.x] = n;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) {
      sd[threadIdx.x] += sd[threadIdx.x + s];
      sn[threadIdx.x] += sn[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    partials[2 * blockIdx.x] = sd[0];
    partials[2 * blockIdx.x + 1] = sn[0];
  }
}

template <typename V, typename O>
__global__ void __launch_bounds__(kThreads) decompress_kernel(const V* values, const uint8_t* meta, int64_t rows,
                                                             int64_t groups, int64_t row_bytes, float scale, O* out) {
  const int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (i >= rows * groups) return;
  const int64_t r = i / groups, g = i % groups;
  const uint8_t code = code_at(meta, row_bytes, r, g);
  const float v0 = to_f32(values[2 * i]) * scale, v1 = to_f32(values[2 * i + 1]) * scale;
  O* o = out + r * 4 * groups + 4 * g;
  for (int k = 0; k < 4; ++k) o[k] = from_f32<O>(0.f, 1.f, Overflow::kPyTorch);
  o[code & 3] = from_f32<O>(v0, 1.f, Overflow::kPyTorch);
  o[code >> 2] = from_f32<O>(v1, 1.f, Overflow::kPyTorch);
}

template <typename G, typename W>
__global__ void __launch_bounds__(kThreads) masked_decay_kernel(DeviceMatrix grad, DeviceMatrix w, const uint8_t* meta,
                                                               int64_t row_bytes, float alpha) {
  const int64_t groups = grad.cols / 4;
  const int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (i >= grad.rows * groups) return;
  const int64_t r = i / groups, g = i % groups;
  const uint8_t kept = group_code_bits(code_at(meta, row_bytes, r, g));
  G* gp = static_cast<G*>(const_cast<void*>(grad.data));
  const W* wp = static_cast<const W*>(w.data);
  for (int k = 0; k < 4; ++k) {
    if ((kept >> k) & 1) continue;
    const int64_t c = 4 * g + k;
    G* e = gp + r * grad.sr + c * grad.sc;
    *e = from_f32<G>(to_f32(*e) + alpha * to_f32(wp[r * w.sr + c * w.sc]), 1.f, Overflow::kPyTorch);
  }
}

// masked_decay_kernel for row-major grad and w whose rows are 16-byte aligned runs of 8 (both
// vector_friendly along rows): one thread per metadata byte loads the byte's 8 gradients and 8
// weights as 16-byte vectors and writes all 8 gradients back, the kept ones unchanged. Block
// (32, 8): a warp takes 32 consecutive bytes of one row.
template <typename G, typename W>
__global__ void __launch_bounds__(kThreads) masked_decay_rows_kernel(DeviceMatrix grad, DeviceMatrix w,
                                                                    const uint8_t* meta, int64_t row_bytes,
                                                                    float alpha) {
  const int64_t byte = int64_t(blockIdx.x) * 32 + threadIdx.x, r = int64_t(blockIdx.y) * 8 + threadIdx.y;
  if (byte >= row_bytes || r >= grad.rows) return;
  const uint8_t m = meta[r * row_bytes + byte];
  const uint32_t kept = group_code_bits(m & 0xF) | group_code_bits(m >> 4) << 4;
  auto* gp = reinterpret_cast<Vec<G, 8>*>(static_cast<G*>(const_cast<void*>(grad.data)) + r * grad.sr) + byte;
  const Vec<W, 8> wv = reinterpret_cast<const Vec<W, 8>*>(static_cast<const W*>(w.data) + r * w.sr)[byte];
  Vec<G, 8> g = *gp;
#pragma unroll
  for (int k = 0; k < 8; ++k)
    if (!((kept >> k) & 1)) g.v[k] = from_f32<G>(to_f32(g.v[k]) + alpha * to_f32(wv.v[k]), 1.f, Overflow::kPyTorch);
  *gp = g;
}

__global__ void __launch_bounds__(kThreads) flip_kernel(const uint8_t* a, const uint8_t* b, int64_t bytes,
                                                       unsigned long long* flips) {
  unsigned long long local = 0;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < bytes; i += int64_t(gridDim.x) * kThreads) {
    const uint8_t x = a[i], y = b[i];
    local += __popc(group_code_bits(x & 0xF) ^ group_code_bits(y & 0xF)) +
             __popc(group_code_bits(x >> 4) ^ group_code_bits(y >> 4));
  }
  if (local) atomicAdd(flips, local);
}

// Reports (report slot) the first group, r * groups + g, whose code is not one of the six valid
// ones; one thread per group.
__global__ void __launch_bounds__(kThreads) invalid_code_kernel(const uint8_t* meta, int64_t rows, int64_t groups,
                                                               int64_t row_bytes, unsigned long long* bad) {
  const int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (i >= rows * groups) return;
  if (!is_valid_group_code(code_at(meta, row_bytes, i / groups, i % groups))) report_first(bad, i);
}

unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

}  // namespace

int64_t first_invalid_code(const Mask24& mask) {
  const int64_t groups = mask.groups_per_row();
  if (mask.rows() * groups == 0) return -1;
  unsigned long long* bad = reset_report_slot();
  invalid_code_kernel<<<blocks_for(mask.rows() * groups), kThreads>>>(mask.codes().data<uint8_t>(), mask.rows(),
                                                                       groups, mask.row_bytes(), bad);
  S24_CUDA_CHECK_LAUNCH("invalid_code_kernel");
  return read_report_slot();
}

double sste_scale(const TensorView& w, int64_t* first_bad) {
  constexpr int kBlocks = 264;  // fixed, so the summation order is fixed for a given shape
  const std::shared_ptr<void> buffer = alloc(2 * kBlocks * sizeof(double));
  double* partials = static_cast<double*>(buffer.get());
  unsigned long long* bad = reset_report_slot();
  dispatch_input_dtype(w.dtype, [&](auto tag) {
    using In = typename decltype(tag)::type;
    sste_partials<In><<<kBlocks, kThreads>>>(device_matrix(w), partials, bad);
  });
  std::vector<double> host(2 * kBlocks);
  const cudaError_t launch = cudaGetLastError();
  const cudaError_t copy = cudaMemcpy(host.data(), partials, host.size() * sizeof(double), cudaMemcpyDeviceToHost);
  S24_CUDA_CHECK(launch);
  S24_CUDA_CHECK(copy);
  *first_bad = read_report_slot();
  double d = 0.0, n = 0.0;
  for (int b = 0; b < kBlocks; ++b) {
    d += host[size_t(2 * b)];
    n += host[size_t(2 * b + 1)];
  }
  return d / n;  // NaN or Inf when S(W) is all zero: the caller reports it
}

void decompress(const Sparse24Matrix& s, const TensorView& out) {
  const int64_t groups = s.cols / 4;
  if (s.rows * groups == 0) return;
  dispatch_dtype(s.dtype, [&](auto vtag) {
    dispatch_input_dtype(out.dtype, [&](auto otag) {
      using V = typename decltype(vtag)::type;
      using O = typename decltype(otag)::type;
      if constexpr (kIsValueType<V>) {
        decompress_kernel<V, O><<<blocks_for(s.rows * groups), kThreads>>>(
            s.values.data<V>(), s.mask.codes().data<uint8_t>(), s.rows, groups, s.mask.row_bytes(), s.scale,
            static_cast<O*>(out.data));
        S24_CUDA_CHECK_LAUNCH("decompress_kernel");
      }
    });
  });
}

void masked_decay(const TensorView& grad, const TensorView& w, const Mask24& mask, float alpha) {
  const int64_t n = grad.rows() * (grad.cols() / 4);
  if (n == 0) return;
  bool grad_rows = false, w_rows = false;
  const bool rows = vector_friendly(grad, &grad_rows) && grad_rows && vector_friendly(w, &w_rows) && w_rows &&
                    (grad.rows() + 7) / 8 <= 65535;
  dispatch_input_dtype(grad.dtype, [&](auto gtag) {
    dispatch_input_dtype(w.dtype, [&](auto wtag) {
      using G = typename decltype(gtag)::type;
      using W = typename decltype(wtag)::type;
      if (rows) {
        const dim3 grid(unsigned((mask.row_bytes() + 31) / 32), unsigned((grad.rows() + 7) / 8));
        masked_decay_rows_kernel<G, W><<<grid, dim3(32, 8)>>>(device_matrix(grad), device_matrix(w),
                                                               mask.codes().data<uint8_t>(), mask.row_bytes(), alpha);
      } else {
        masked_decay_kernel<G, W><<<blocks_for(n), kThreads>>>(device_matrix(grad), device_matrix(w),
                                                               mask.codes().data<uint8_t>(), mask.row_bytes(), alpha);
      }
      S24_CUDA_CHECK_LAUNCH("masked_decay_kernel");
    });
  });
}

double flip_rate(const Mask24& a, const Mask24& b) {
  const int64_t total = a.rows() * a.cols(), bytes = a.rows() * a.row_bytes();
  if (total == 0) return 0.0;
  const std::shared_ptr<void> buffer = alloc(sizeof(unsigned long long));
  auto* flips = static_cast<unsigned long long*>(buffer.get());
  S24_CUDA_CHECK(cudaMemset(flips, 0, sizeof(*flips)));
  flip_kernel<<<std::min(blocks_for(bytes), 1024u), kThreads>>>(a.codes().data<uint8_t>(), b.codes().data<uint8_t>(),
                                                                bytes, flips);
  unsigned long long host = 0;
  const cudaError_t launch = cudaGetLastError();
  const cudaError_t copy = cudaMemcpy(&host, flips, sizeof(host), cudaMemcpyDeviceToHost);
  S24_CUDA_CHECK(launch);
  S24_CUDA_CHECK(copy);
  return double(host) / double(total);
}

}  // namespace sparse24::cuda
