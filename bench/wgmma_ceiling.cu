// bench/wgmma_ceiling.cu: the rate of Hopper's warpgroup MMAs alone, dense against 2:4, with no
// global memory in the loop: the ceiling of any GEMM kernel built on them.
//
// Why: the native 2:4 GEMM (src/gemm/sm90) and cuSPARSELt's best reach 1.3-1.7x of cuBLAS dense,
// not 2x. A sparse wgmma (m64nNk32) reads a 32 x N dense B from shared memory in the time a dense
// one (m64nNk16) reads 16 x N, so if shared memory is what limits, no kernel that keeps B in
// shared memory can reach 2x. This measures it: every warpgroup of one CTA per SM issues the
// same product in a loop on operands that sit in shared memory from the start (canonical 64- or
// 32-byte swizzled K-major layouts, built with CuTe's GMMA atoms), in commit groups ("batches")
// of 1 to 8 wgmmas with 1 to 4 batches in flight, for 1 and 2 warpgroups per SM (3 leave too
// few registers: ptxas serialises the wgmmas), with A from shared memory (SS) or registers (RS). The operands' values do not matter for the rate
// (fp16 0.25-1.75, metadata keeping elements 0 and 1 of every group).
//
// Build and run (bench/run_device.sh --bench wgmma does both):
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
//        -I.deps/cutlass/include bench/wgmma_ceiling.cu -o wgmma_ceiling && ./wgmma_ceiling
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "cute/arch/mma_sm90_gmma.hpp"
#include "cute/arch/mma_sm90_gmma_sparse.hpp"
#include "cute/atom/mma_traits_sm90_gmma.hpp"
#include "cute/arch/copy_sm90_tma.hpp"
#include "cute/tensor.hpp"
#include "cutlass/arch/barrier.h"
#include "cutlass/arch/reg_reconfig.h"

namespace wgmma_ceiling {

using namespace cute;
constexpr int kN = 256;           // the wgmma's N (the accumulator: 128 floats per thread)
constexpr uint32_t kMeta = 0x44444444u;  // every group keeps elements 0 and 1

#define CHECK(x)                                                                        \
  do {                                                                                  \
    cudaError_t e_ = (x);                                                               \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

// The four products timed. A is 64 x 16 stored halves in every case (dense k16, or 2:4 k32
// compressed); B is N x 16 (dense) or N x 32 (2:4), K-major.
enum class Kind { kDenseSS, kSparseSS, kDenseRS, kSparseRS, kIdle };  // kIdle: no wgmma, a timed wait
constexpr bool sparse(Kind k) { return k == Kind::kSparseSS || k == Kind::kSparseRS; }

using DenseSS = SM90::GMMA::MMA_64x256x16_F32F16F16_SS<GMMA::Major::K, GMMA::Major::K>;
using DenseRS = SM90::GMMA::MMA_64x256x16_F32F16F16_RS<GMMA::Major::K, GMMA::Major::K>;
using SparseSS = SM90::GMMA::SPARSE::GMMA_64x256x32_F32F16F16_SS<GMMA::Major::K, GMMA::Major::K>;
using SparseRS = SM90::GMMA::SPARSE::GMMA_64x256x32_F32F16F16_RS<GMMA::Major::K, GMMA::Major::K>;

// One wgmma of kind K into d (128 floats), A from the descriptor or the four registers a.
template <Kind K, size_t... I>
__device__ void wgmma(uint64_t desc_a, const uint32_t (&a)[4], uint64_t desc_b, float (&d)[128],
                      std::index_sequence<I...>) {
  if constexpr (K == Kind::kDenseSS) DenseSS::fma(desc_a, desc_b, d[I]...);
  const uint32_t meta = kMeta;
  if constexpr (K == Kind::kSparseSS) SparseSS::fma(desc_a, desc_b, d[I]..., meta);
  if constexpr (K == Kind::kDenseRS) DenseRS::fma(a[0], a[1], a[2], a[3], desc_b, d[I]...);
  if constexpr (K == Kind::kSparseRS)
    SparseRS::fma(a[0], a[1], a[2], a[3], desc_b, d[I]..., meta);
}

using LayoutA = decltype(tile_to_shape(GMMA::Layout_K_SW32_Atom<half_t>{}, Shape<_64, _16>{}));
using LayoutBDense = decltype(tile_to_shape(GMMA::Layout_K_SW32_Atom<half_t>{}, Shape<Int<kN>, _16>{}));
using LayoutBSparse = decltype(tile_to_shape(GMMA::Layout_K_SW64_Atom<half_t>{}, Shape<Int<kN>, _32>{}));
// With kTma, a producer thread streams kChunk-byte TMA bulk copies (cp.async.bulk, global ->
// shared, kCopies in flight) from an L2-resident buffer into a landing zone of its own while the
// warpgroups compute: the shared-memory writes a GEMM's TMA loads make, at the rate the TMA can.
constexpr int kChunk = 16384;
constexpr int kCopies = 6;
constexpr int kSource = 4 << 20;  // bytes of global memory the copies cycle through
constexpr int kOperandBytes = 64 * 16 * 2 + kN * 32 * 2;  // A and the larger B
constexpr int kSmemBytes = kOperandBytes + kCopies * kChunk + 8 * kCopies + 16 + 1024;  // + landing, barriers, alignment

struct Counters {
  long long cycles;     // SM 0's cycles for the loop
  long long tma_bytes;  // bytes SM 0's producer copied meanwhile
};

// kBatch wgmmas per commit group; kInFlight groups may run while the next is issued
// (wgmma.wait_group kInFlight - 1 after each commit); kGroups warpgroups per CTA.
// With kTma, one more warpgroup: its first thread is the producer.
template <Kind K, int kBatch, int kInFlight, int kGroups, bool kTma>
__global__ void __launch_bounds__(128 * (kGroups + kTma), 1)
    wgmma_loop(int iterations, const unsigned char* source, Counters* out) {
  const long long start = clock64();
  extern __shared__ unsigned char raw[];
  half_t* base = reinterpret_cast<half_t*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023));
  unsigned char* landing = reinterpret_cast<unsigned char*>(base) + kOperandBytes;
  uint64_t* bars = reinterpret_cast<uint64_t*>(landing + kCopies * kChunk);
  int* finished = reinterpret_cast<int*>(bars + kCopies);  // warpgroups done computing
  half_t* a_smem = base;
  half_t* b_smem = base + 64 * 16;
  const int b_elems = kN * (sparse(K) ? 32 : 16);
  for (int i = threadIdx.x; i < 64 * 16 + b_elems; i += blockDim.x)
    base[i] = half_t(0.25f + 0.25f * float(i % 7));
  if (kTma && threadIdx.x == 0) {
    *finished = 0;
    for (int b = 0; b < kCopies; ++b) cutlass::arch::ClusterTransactionBarrier::init(&bars[b], 1);
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
  // With the producer, 384 threads share the register file: the producer gives registers to
  // the math warpgroups (as CUTLASS's kernels do), else ptxas serialises the wgmmas.
  if (kTma && threadIdx.x >= 128 * kGroups) {  // the producer warpgroup
    cutlass::arch::warpgroup_reg_dealloc<40>();
    if (threadIdx.x != 128 * kGroups) return;
    long long bytes = 0, offset = 0;
    uint32_t phases = 0;  // bit b: the phase copy b waits for
    auto issue = [&](int b) {
      cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&bars[b], kChunk);
      SM90_BULK_COPY_G2S::copy(source + offset, &bars[b], landing + b * kChunk, kChunk);
      offset = (offset + kChunk) % kSource;
    };
    for (int b = 0; b < kCopies; ++b) issue(b);
    for (int b = 0; *reinterpret_cast<volatile int*>(finished) < kGroups; b = (b + 1) % kCopies) {
      cutlass::arch::ClusterTransactionBarrier::wait(&bars[b], (phases >> b) & 1);
      phases ^= 1u << b;
      bytes += kChunk;
      issue(b);
    }
    for (int b = 0; b < kCopies; ++b)
      cutlass::arch::ClusterTransactionBarrier::wait(&bars[b], (phases >> b) & 1);
    if (blockIdx.x == 0) out->tma_bytes = bytes;
    return;
  }

  if constexpr (kTma) cutlass::arch::warpgroup_reg_alloc<232>();
  const auto sa = make_tensor(make_smem_ptr(a_smem), LayoutA{});
  uint64_t desc_a = GMMA::make_gmma_desc<GMMA::Major::K>(sa);
  uint64_t desc_b;
  if constexpr (sparse(K)) {
    desc_b = GMMA::make_gmma_desc<GMMA::Major::K>(make_tensor(make_smem_ptr(b_smem), LayoutBSparse{}));
  } else {
    desc_b = GMMA::make_gmma_desc<GMMA::Major::K>(make_tensor(make_smem_ptr(b_smem), LayoutBDense{}));
  }
  uint32_t a[4];
  for (int i = 0; i < 4; ++i) a[i] = 0x3C003C00u + uint32_t(threadIdx.x + i);  // fp16 pairs ~1.0

  float d[128];
  for (int i = 0; i < 128; ++i) d[i] = 0.f;
  if constexpr (K == Kind::kIdle) {  // as long as 2:4 SS takes, roughly: 1000 cycles per iteration
    while (clock64() - start < 1000LL * iterations) {
    }
    iterations = 0;
  }
  for (int it = 0; it < iterations; ++it) {
    for (float& x : d) warpgroup_fence_operand(x);
    warpgroup_arrive();
#pragma unroll
    for (int j = 0; j < kBatch; ++j) wgmma<K>(desc_a, a, desc_b, d, std::make_index_sequence<128>{});
    warpgroup_commit_batch();
    warpgroup_wait<kInFlight - 1>();
    for (float& x : d) warpgroup_fence_operand(x);
  }
  warpgroup_wait<0>();
  float s = 0.f;
  for (int i = 0; i < 128; ++i) s += d[i];
  if (kTma && threadIdx.x % 128 == 0) atomicAdd(finished, 1);
  // SM 0's cycles for the loop (the clock the kernel ran at, with the event time); the sum
  // keeps the loop (it is never negative).
  if (blockIdx.x == 0 && threadIdx.x == 0) out->cycles = clock64() - start + (s < 0.f ? 1 : 0);
}

struct Rate {
  double tflops, mhz;   // dense-equivalent TFLOP/s; the SM clock the loop ran at
  double tma_per_cycle; // bytes the producer wrote into shared memory per cycle (kTma)
};

// The kernel's rate, one CTA per SM.
template <Kind K, int kBatch, int kInFlight, int kGroups, bool kTma = false>
Rate measure(int sms, const unsigned char* source, Counters* counters) {
  const int iterations = 80000 / kBatch;
  const int threads = 128 * (kGroups + kTma);
  auto kernel = wgmma_loop<K, kBatch, kInFlight, kGroups, kTma>;
  CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  kernel<<<sms, threads, kSmemBytes>>>(100, source, counters);  // warm-up
  CHECK(cudaGetLastError());
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  CHECK(cudaEventRecord(start));
  kernel<<<sms, threads, kSmemBytes>>>(iterations, source, counters);
  CHECK(cudaEventRecord(stop));
  CHECK(cudaEventSynchronize(stop));
  float ms = 0.f;
  CHECK(cudaEventElapsedTime(&ms, start, stop));
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  const double k_equivalent = sparse(K) ? 32 : 16;
  const double flops =
      2.0 * 64 * kN * k_equivalent * kBatch * double(iterations) * kGroups * sms;
  Counters c{};
  CHECK(cudaMemcpy(&c, counters, sizeof c, cudaMemcpyDeviceToHost));
  return {flops / (ms * 1e-3) / 1e12, double(c.cycles) / (ms * 1e3),
          kTma ? double(c.tma_bytes) / double(c.cycles) : 0.0};
}

// One table row: dense and 2:4, A from shared memory and from registers.
template <int kBatch, int kInFlight, int kGroups>
void row(int sms, const unsigned char* source, Counters* counters) {
  const Rate dss = measure<Kind::kDenseSS, kBatch, kInFlight, kGroups>(sms, source, counters);
  const Rate sss = measure<Kind::kSparseSS, kBatch, kInFlight, kGroups>(sms, source, counters);
  const Rate drs = measure<Kind::kDenseRS, kBatch, kInFlight, kGroups>(sms, source, counters);
  const Rate srs = measure<Kind::kSparseRS, kBatch, kInFlight, kGroups>(sms, source, counters);
  std::printf("| %d | %d | %d | %.0f (%.0f) | %.0f (%.0f) | %.2fx | %.0f (%.0f) | %.0f (%.0f) | %.2fx |\n",
              kGroups, kBatch, kInFlight, dss.tflops, dss.mhz, sss.tflops, sss.mhz,
              sss.tflops / dss.tflops, drs.tflops, drs.mhz, srs.tflops, srs.mhz,
              srs.tflops / drs.tflops);
}

// One row of the TMA table: kind K alone and with the producer's writes.
template <Kind K>
void tma_row(const char* name, int sms, const unsigned char* source, Counters* counters) {
  const Rate alone = measure<K, 4, 2, 2>(sms, source, counters);
  const Rate with = measure<K, 4, 2, 2, true>(sms, source, counters);
  if (K == Kind::kIdle) {
    std::printf("| %s | - | - (%.0f) | %.0f |\n", name, with.mhz, with.tma_per_cycle);
    return;
  }
  std::printf("| %s | %.0f (%.0f) | %.0f (%.0f) | %.0f |\n", name, alone.tflops, alone.mhz,
              with.tflops, with.mhz, with.tma_per_cycle);
}

}  // namespace wgmma_ceiling

int main() {
  using namespace wgmma_ceiling;
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  Counters* counters = nullptr;
  unsigned char* source = nullptr;
  CHECK(cudaMalloc(&counters, sizeof(Counters)));
  CHECK(cudaMalloc(&source, kSource));
  CHECK(cudaMemset(source, 0x3C, kSource));
  std::printf("GPU: %s, %d SMs. wgmma m64n%dk16 (dense) and m64n%dk32 (2:4), fp16 in, fp32 "
              "accumulators, operands resident in shared memory; dense-equivalent TFLOP/s "
              "(2:4 counts its logical k32), and in parentheses the SM clock (MHz) the loop ran at.\n\n",
              prop.name, prop.multiProcessorCount, kN, kN);
  std::printf("| warpgroups per SM | wgmmas per batch | batches in flight | dense SS | 2:4 SS | "
              "2:4 / dense (SS) | dense RS | 2:4 RS | 2:4 / dense (RS) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  const int sms = prop.multiProcessorCount;
  row<4, 2, 1>(sms, source, counters);
  row<2, 2, 1>(sms, source, counters);
  row<1, 1, 1>(sms, source, counters);
  row<1, 1, 2>(sms, source, counters);  // one wgmma at a time
  row<2, 1, 2>(sms, source, counters);  // CUTLASS's sparse mainloop: a 64-deep K tile, then drain
  row<2, 2, 2>(sms, source, counters);  // the native kernels' pipelined mainloop: two K tiles in flight
  row<4, 2, 2>(sms, source, counters);
  row<2, 4, 2>(sms, source, counters);
  row<8, 2, 2>(sms, source, counters);
  std::printf("\nWith TMA writes into shared memory meanwhile (2 warpgroups, batches of 4, 2 in "
              "flight; a producer thread keeps %d bulk copies of %d bytes in flight, from a %d MiB "
              "L2-resident buffer):\n\n"
              "| product | TFLOP/s (MHz) alone | TFLOP/s (MHz) with TMA writes | TMA bytes per cycle "
              "and SM |\n|---|---|---|---|\n", kCopies, kChunk, kSource >> 20);
  tma_row<Kind::kIdle>("none (TMA alone)", sms, source, counters);
  // The same on one SM in eight: if the rate per SM rises, the limit is the L2's total output;
  // if not, it is each SM's intake.
  tma_row<Kind::kIdle>("none (TMA alone, one SM in eight)", sms / 8, source, counters);
  tma_row<Kind::kDenseSS>("dense SS", sms, source, counters);
  tma_row<Kind::kSparseSS>("2:4 SS", sms, source, counters);
  tma_row<Kind::kSparseRS>("2:4 RS", sms, source, counters);
  CHECK(cudaFree(source));
  CHECK(cudaFree(counters));
  return 0;
}
