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
// A second table repeats some of it while a producer thread streams TMA copies into shared
// memory; the last one measures intake alone: the bytes per cycle that TMA bulk copies and plain
// loads bring into each SM from an L2-resident buffer, and what is left of it while TMA stores
// stream to memory as a GEMM's output does (results and readings:
// bench/results/2026-11-27-h100-wgmma-ceiling.md, 2026-11-27-h100-gemm-intake.md,
// 2026-11-28-h100-gemm-epilogues.md).
//
// Build and run (bench/run_device.sh --bench wgmma does both; `./wgmma_ceiling intake` runs the
// intake table only):
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
//        -I.deps/cutlass/include bench/wgmma_ceiling.cu -o wgmma_ceiling && ./wgmma_ceiling
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>
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

// One producer thread's stream: keeps kN_ copies of kBytes bytes in flight (cp.async.bulk, global
// -> shared, copy b into landing + b * kBytes, completing on bars[b]) from `source`, cycling
// through kSource bytes from `offset`, until done() is true; then waits for the copies still in
// flight. Returns the bytes of the copies that landed before done() (not those waited for after).
template <int kN_, int kBytes, class Done>
__device__ long long stream_copies(const unsigned char* source, long long offset, unsigned char* landing,
                                   uint64_t* bars, Done done) {
  static_assert(kN_ <= 64);
  long long bytes = 0;
  uint64_t phases = 0;  // bit b: the phase copy b waits for
  auto issue = [&](int b) {
    cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&bars[b], kBytes);
    SM90_BULK_COPY_G2S::copy(source + offset, &bars[b], landing + b * kBytes, kBytes);
    offset = (offset + kBytes) % kSource;
  };
  for (int b = 0; b < kN_; ++b) issue(b);
  for (int b = 0; !done(); b = (b + 1) % kN_) {
    cutlass::arch::ClusterTransactionBarrier::wait(&bars[b], (phases >> b) & 1);
    phases ^= uint64_t(1) << b;
    bytes += kBytes;
    issue(b);
  }
  for (int b = 0; b < kN_; ++b) cutlass::arch::ClusterTransactionBarrier::wait(&bars[b], (phases >> b) & 1);
  return bytes;
}

// The milliseconds between CUDA events around launch() on the default stream.
template <class Launch>
float timed_ms(Launch launch) {
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  CHECK(cudaEventRecord(start));
  launch();
  CHECK(cudaEventRecord(stop));
  CHECK(cudaEventSynchronize(stop));
  float ms = 0.f;
  CHECK(cudaEventElapsedTime(&ms, start, stop));
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  return ms;
}

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
    const long long bytes = stream_copies<kCopies, kChunk>(
        source, 0, landing, bars, [&] { return *reinterpret_cast<volatile int*>(finished) >= kGroups; });
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
  const float ms = timed_ms([&] { kernel<<<sms, threads, kSmemBytes>>>(iterations, source, counters); });
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

// ---- Intake alone: how many bytes per cycle an SM takes in from L2, and through which path ----
// The TMA table above kept 6 x 16 KiB in flight from one thread. Here the copies in flight, their
// size and the number of producer threads vary, on all SMs and on one in eight: what limits one
// producer, one SM, and all SMs together. A second path into the SM, plain loads (LDG, L2 only:
// ld.global.cg) into registers, alone and beside the TMA, shows whether the paths add up.
struct IntakeCounters {
  // Cycles: of SM 0 (SM 1 for the loads when kSplit gives the loads to odd SMs); bytes: all SMs.
  long long tma_cycles, tma_bytes;  // the producers' longest run
  long long ldg_cycles, ldg_bytes;  // warp 0's run
  long long st_cycles, st_bytes;    // the storer's run
};

// The output side of a GEMM: with kStores > 0 one more warp's first thread streams TMA bulk
// stores (cp.async.bulk, shared -> global) of kStoreChunk bytes, kStores in flight (waiting
// only until each store has read shared memory), into a 1 GiB buffer that no cache holds (each
// SM cycling through its own share of it): what a round of output tiles writes, beside the loads.
constexpr long long kDest = 1ll << 30;
constexpr int kStoreChunk = 16384;

// kCopies bulk copies of kChunk bytes in flight from each of kProducers producer threads (one
// per warp, the last warps), and kLdgWarps warps each keeping 8 16-byte loads per thread in
// flight, for `budget` cycles; one CTA per SM. Two producers where one was: if the rate doubles,
// a producer's own loop was the limit; if not, the SM's TMA unit.
// kSplit: even CTAs only store, odd ones only load (whether the loads starve beside the stores
// on their own SM, or through the memory system every SM shares).
template <int kCopies, int kChunk, int kLdgWarps, int kProducers = 1, int kStores = 0, bool kSplit = false>
__global__ void __launch_bounds__(32 * (kLdgWarps + kProducers + (kStores > 0)), 1)
    intake_loop(long long budget, const unsigned char* source, unsigned char* dest, IntakeCounters* out,
                long long store_gap) {
  extern __shared__ unsigned char raw[];
  unsigned char* landing = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023));
  unsigned char* outgoing = landing + kProducers * kCopies * kChunk;  // the stores' source
  uint64_t* bars = reinterpret_cast<uint64_t*>(outgoing + kStores * kStoreChunk);
  if (kCopies > 0 && threadIdx.x == 0) {
    for (int b = 0; b < kProducers * kCopies; ++b) cutlass::arch::ClusterTransactionBarrier::init(&bars[b], 1);
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
  const long long start = clock64();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool storer = warp == kLdgWarps + kProducers;
  if (kSplit && storer != (blockIdx.x % 2 == 0)) return;
  if constexpr (kStores > 0) {
    if (storer) {
      if (lane != 0) return;
      const long long region = kDest / gridDim.x / kStoreChunk * kStoreChunk;
      long long offset = 0, bytes = 0;
      // With store_gap > 0, one store per store_gap cycles at most (a paced output).
      for (int b = 0; clock64() - start < budget; b = (b + 1) % kStores) {
        const long long issued = clock64();
        cute::SM90_BULK_COPY_S2G::copy(outgoing + b * kStoreChunk, dest + blockIdx.x * region + offset, kStoreChunk);
        cute::tma_store_arrive();
        cute::tma_store_wait<kStores - 1>();
        offset = (offset + kStoreChunk) % region;
        bytes += kStoreChunk;
        while (clock64() - issued < store_gap) {
        }
      }
      cute::tma_store_wait<0>();
      atomicAdd(reinterpret_cast<unsigned long long*>(&out->st_bytes), (unsigned long long)bytes);
      if (blockIdx.x == 0) out->st_cycles = clock64() - start;  // (an even CTA in any case)
      return;
    }
  }
  if (warp >= kLdgWarps) {  // a producer warp
    if constexpr (kCopies > 0) {
      if (lane != 0) return;
      const int producer = warp - kLdgWarps;
      const long long offset = (long long)(blockIdx.x * kProducers + producer) * kChunk % kSource;
      const long long bytes =  // the copies still in flight at the end land too, and count
          stream_copies<kCopies, kChunk>(source, offset, landing + producer * kCopies * kChunk,
                                         bars + producer * kCopies, [&] { return clock64() - start >= budget; }) +
          (long long)kCopies * kChunk;
      atomicAdd(reinterpret_cast<unsigned long long*>(&out->tma_bytes), (unsigned long long)bytes);
      if (blockIdx.x == (kSplit ? 1 : 0))
        atomicMax(reinterpret_cast<unsigned long long*>(&out->tma_cycles), (unsigned long long)(clock64() - start));
    }
    return;
  }
  const uint4* src = reinterpret_cast<const uint4*>(source);
  constexpr uint32_t kMask = kSource / 16 - 1;  // kSource is a power of two
  uint32_t i = (uint32_t(blockIdx.x * kLdgWarps + warp) * 4096u + lane) & kMask;
  uint32_t acc = 0;
  long long loads = 0;
  while (clock64() - start < budget) {
    uint4 v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = __ldcg(src + ((i + 32 * j) & kMask));
#pragma unroll
    for (int j = 0; j < 8; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
    i = (i + 256) & kMask;
    loads += 8;
  }
  atomicAdd(reinterpret_cast<unsigned long long*>(&out->ldg_bytes), (unsigned long long)(16 * loads));
  if (blockIdx.x == (kSplit ? 1 : 0) && threadIdx.x == 0) out->ldg_cycles = clock64() - start;
  if (acc == 0x9E3779B9u) out->tma_cycles = -1;  // keeps the loads (never true for this buffer)
}

// One row of the intake table: bytes per cycle and SM by each path (the mean over the SMs), and
// the SM clock.
template <int kCopies, int kChunk, int kLdgWarps, int kProducers = 1, int kStores = 0, bool kSplit = false>
void intake_row(const char* name, int sms, const unsigned char* source, unsigned char* dest,
                IntakeCounters* counters, long long store_gap = 0) {
  auto kernel = intake_loop<kCopies, kChunk, kLdgWarps, kProducers, kStores, kSplit>;
  const int threads = 32 * (kLdgWarps + kProducers + (kStores > 0));
  const int smem = 1024 + kProducers * kCopies * (kChunk + 8) + kStores * kStoreChunk;
  CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  kernel<<<sms, threads, smem>>>(100000, source, dest, counters, store_gap);  // warm-up
  CHECK(cudaGetLastError());
  CHECK(cudaMemset(counters, 0, sizeof(IntakeCounters)));
  const float ms = timed_ms([&] { kernel<<<sms, threads, smem>>>(4000000, source, dest, counters, store_gap); });
  IntakeCounters c{};
  CHECK(cudaMemcpy(&c, counters, sizeof c, cudaMemcpyDeviceToHost));
  // Per SM and cycle, averaged over the SMs that take that role (every CTA runs the same budget
  // of cycles).
  const int role_sms = kSplit ? sms / 2 : sms;
  const double tma = c.tma_cycles > 0 ? double(c.tma_bytes) / double(c.tma_cycles) / role_sms : 0.0;
  const double ldg = c.ldg_cycles > 0 ? double(c.ldg_bytes) / double(c.ldg_cycles) / role_sms : 0.0;
  const double st = c.st_cycles > 0 ? double(c.st_bytes) / double(c.st_cycles) / role_sms : 0.0;
  long long cycles = c.tma_cycles > c.ldg_cycles ? c.tma_cycles : c.ldg_cycles;
  cycles = c.st_cycles > cycles ? c.st_cycles : cycles;
  const double mhz = double(cycles) / (ms * 1e3);
  std::printf("| %s | %d | %.0f | %.0f | %.0f | %.0f (%.2f TB/s) | %.0f |\n", name, sms, tma, ldg, tma + ldg, st,
              st * role_sms * mhz * 1e6 / 1e12, mhz);
}

}  // namespace wgmma_ceiling

int main(int argc, char** argv) {
  using namespace wgmma_ceiling;
  const bool intake_only = argc > 1 && std::string(argv[1]) == "intake";  // the last table only
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each row as it is measured (through tee, too)
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
  const int sms = prop.multiProcessorCount;
  if (!intake_only) {
    std::printf("| warpgroups per SM | wgmmas per batch | batches in flight | dense SS | 2:4 SS | "
                "2:4 / dense (SS) | dense RS | 2:4 RS | 2:4 / dense (RS) |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
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
    // The same on one SM in eight. (Its rate is the same because this producer's copies are
    // what limit it, about 225-255 cycles each up to 16 KiB: the intake table below.)
    tma_row<Kind::kIdle>("none (TMA alone, one SM in eight)", sms / 8, source, counters);
    tma_row<Kind::kDenseSS>("dense SS", sms, source, counters);
    tma_row<Kind::kSparseSS>("2:4 SS", sms, source, counters);
    tma_row<Kind::kSparseRS>("2:4 RS", sms, source, counters);
  }

  IntakeCounters* intake = nullptr;
  CHECK(cudaMalloc(&intake, sizeof(IntakeCounters)));
  unsigned char* dest = nullptr;
  CHECK(cudaMalloc(&dest, kDest));
  std::printf("\nIntake alone: bytes per cycle and SM (the mean over the SMs that run) from the %d MiB L2-resident buffer, by TMA bulk "
              "copies (in flight x size) and by 16-byte loads (ld.global.cg, 8 in flight per thread), "
              "each path on its own and both at once, and in the last rows beside TMA bulk stores to a 1 GiB "
              "buffer (16 KiB each, 2 or 4 in flight per SM); one CTA per SM, ~4M cycles:\n\n"
              "| paths | SMs | TMA bytes per cycle | load bytes per cycle | total in | TMA stores out per cycle (all SMs) | MHz |\n"
              "|---|---|---|---|---|---|---|\n", kSource >> 20);
  intake_row<1, 16384, 0>("TMA 1 x 16 KiB", sms, source, dest, intake);
  intake_row<2, 16384, 0>("TMA 2 x 16 KiB", sms, source, dest, intake);
  intake_row<4, 16384, 0>("TMA 4 x 16 KiB", sms, source, dest, intake);
  intake_row<6, 16384, 0>("TMA 6 x 16 KiB (as the TMA rows above)", sms, source, dest, intake);
  intake_row<12, 16384, 0>("TMA 12 x 16 KiB", sms, source, dest, intake);
  intake_row<12, 16384, 0>("TMA 12 x 16 KiB", sms / 8, source, dest, intake);
  intake_row<6, 16384, 0, 2>("TMA 2 producers x 6 x 16 KiB", sms, source, dest, intake);
  intake_row<6, 16384, 0, 2>("TMA 2 producers x 6 x 16 KiB", sms / 8, source, dest, intake);
  intake_row<12, 8192, 0, 2>("TMA 2 producers x 12 x 8 KiB", sms, source, dest, intake);
  intake_row<6, 8192, 0, 4>("TMA 4 producers x 6 x 8 KiB", sms, source, dest, intake);
  intake_row<6, 8192, 0, 4>("TMA 4 producers x 6 x 8 KiB", sms / 8, source, dest, intake);
  intake_row<24, 8192, 0>("TMA 24 x 8 KiB", sms, source, dest, intake);
  intake_row<48, 4096, 0>("TMA 48 x 4 KiB", sms, source, dest, intake);
  intake_row<6, 32768, 0>("TMA 6 x 32 KiB", sms, source, dest, intake);
  intake_row<1, 65536, 0>("TMA 1 x 64 KiB", sms, source, dest, intake);
  intake_row<2, 65536, 0>("TMA 2 x 64 KiB", sms, source, dest, intake);
  intake_row<3, 65536, 0>("TMA 3 x 64 KiB", sms, source, dest, intake);
  intake_row<3, 65536, 0>("TMA 3 x 64 KiB", sms / 8, source, dest, intake);
  intake_row<0, 0, 8>("loads, 8 warps", sms, source, dest, intake);
  intake_row<0, 0, 16>("loads, 16 warps", sms, source, dest, intake);
  intake_row<0, 0, 31>("loads, 31 warps", sms, source, dest, intake);
  intake_row<0, 0, 31>("loads, 31 warps", sms / 8, source, dest, intake);
  intake_row<12, 16384, 16>("TMA 12 x 16 KiB + loads, 16 warps", sms, source, dest, intake);
  intake_row<6, 16384, 16>("TMA 6 x 16 KiB + loads, 16 warps", sms, source, dest, intake);
  // A GEMM's two directions at once: its TMA loads (L2-resident source) beside TMA stores to
  // memory no cache holds, as a round of output tiles writes.
  intake_row<0, 0, 0, 0, 2>("TMA stores 2 x 16 KiB, alone", sms, source, dest, intake);
  intake_row<0, 0, 0, 0, 4>("TMA stores 4 x 16 KiB, alone", sms, source, dest, intake);
  intake_row<6, 16384, 0, 1, 2>("TMA 6 x 16 KiB + stores 2 x 16 KiB", sms, source, dest, intake);
  intake_row<6, 16384, 0, 1, 4>("TMA 6 x 16 KiB + stores 4 x 16 KiB", sms, source, dest, intake);
  intake_row<6, 8192, 0, 2, 4>("TMA 2 producers x 6 x 8 KiB + stores 4 x 16 KiB", sms, source, dest, intake);
  intake_row<6, 8192, 0, 2>("TMA 2 producers x 6 x 8 KiB (for comparison)", sms, source, dest, intake);
  intake_row<0, 0, 16, 0, 4>("loads, 16 warps + stores 4 x 16 KiB", sms, source, dest, intake);
  intake_row<6, 16384, 0, 1, 4, true>("TMA 6 x 16 KiB on odd SMs, stores 4 x 16 KiB on even ones (rates per SM of each half)", sms, source, dest, intake);
  intake_row<6, 16384, 0, 1, 0, true>("TMA 6 x 16 KiB on odd SMs alone (half the SMs)", sms, source, dest, intake);
  // Paced stores: one 16 KiB store per gap cycles and SM (at ~1.98 GHz on 132 SMs, 4300 cycles
  // is about 1 TB/s in all).
  for (long long gap : {8600ll, 4300ll, 2870ll, 2150ll, 1430ll}) {
    const std::string name = "TMA 6 x 16 KiB + a store of 16 KiB every " + std::to_string(gap) + " cycles";
    intake_row<6, 16384, 0, 1, 4>(name.c_str(), sms, source, dest, intake, gap);
  }
  CHECK(cudaFree(dest));
  CHECK(cudaFree(intake));
  CHECK(cudaFree(source));
  CHECK(cudaFree(counters));
  return 0;
}
