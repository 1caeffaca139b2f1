// src/gemm/sm90/warp_store_epilogue.cuh: an sm90 epilogue in which every warp writes its own part
// of the output tile, with no barrier between warps.
//
// What it computes: D = alpha * acc + bias[row] (bias optional), rounded to D's 16-bit type, D
// column-major (the forward and input-gradient products, where D holds Y = X W^T row-major). No
// source operand: beta must be 0.
//
// Why: CUTLASS's TMA epilogue (sm90_epilogue_tma_warpspecialized.hpp) stages each 128 x 32
// subtile in shared memory, syncs both math warpgroups, has one thread issue the TMA store, and
// syncs again before the buffer is reused: 16 CTA-wide barriers per 128 x 256 tile, each waiting
// for the slowest warp and for earlier stores to leave shared memory. Nsight put 30% of the math
// warps' stall samples there at GPT-2 S fc (cuBLAS's kernel, same tile and schedule: 16%), and
// a K sweep found 2.8 us per round of output tiles outside the main loop (cuBLAS 1.0 us); see
// bench/NOTES.md, GEMM v18 and v19.
//
// How: a wgmma accumulator gives each warp 16 whole rows (along M) of the tile. A warp takes its
// rows 64 columns at a time:
//   1. each thread scales, adds the bias and rounds its values to 16-bit pairs;
//   2. stmatrix .trans writes them into the warp's own shared buffer as 64 columns of 16 rows
//      (32 bytes each, M contiguous as in D);
//   3. __syncwarp; each lane reads 16 bytes (8 rows of one column) back and stores them to D:
//      one 16-byte global store per lane and 16 columns per warp instruction;
//   4. __syncwarp before the buffer is written again.
// Global stores are fire-and-forget (they read registers), so nothing waits for earlier stores.
//
// Buffer layout (per warp, 64 columns x 16 rows of 16-bit values, 2 KB): column c at byte
// 32 c; its rows 0-7 in the 16-byte half h = ((c >> 2) & 1), rows 8-15 in the other. The XOR
// puts the eight 16-byte rows an stmatrix matrix writes (eight consecutive columns, one half)
// into eight different bank groups; reads (a warp's 32 lanes over 16 whole columns) cover 512
// contiguous bytes and are conflict-free too.
//
// Wrapped in CUTLASS's Sm90TmaWarpSpecializedAdapter (detail.hpp), which gives the kernel the
// collective-epilogue interface for an operator()-style epilogue, as CUTLASS does for its own
// register-store epilogue (default_epilogue.hpp).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/gemm/gemm.h"
#include "cutlass/numeric_types.h"

namespace sparse24::gemm {

template <class ElementD_, class TileShape>
class WarpStoreEpilogue {
 public:
  using ElementD = ElementD_;
  using ElementC = void;  // no source operand
  using ElementOutput = ElementD;
  using ElementAccumulator = float;
  using ElementCompute = float;
  using StrideD = cutlass::gemm::TagToStrideC_t<cutlass::layout::ColumnMajor>;
  using StrideC = StrideD;
  using GmemTiledCopyC = void;
  using GmemTiledCopyD = void;
  static_assert(cutlass::sizeof_bits<ElementD>::value == 16, "16-bit outputs only");

  static constexpr int kTileM = cute::size<0>(TileShape{});
  static constexpr int kTileN = cute::size<1>(TileShape{});
  static constexpr int kWarps = 8;            // the cooperative kernel's two math warpgroups
  static constexpr int kChunk = 64;           // columns per round through the buffer
  static_assert(kTileN % kChunk == 0, "the tile's N must be a multiple of 64");

  struct SharedStorage {
    alignas(128) uint16_t buffer[kWarps][kChunk * 16];
  };
  using TensorStorage = SharedStorage;

  // The fields and order that CUTLASS's epilogues have, so that Sm90SparseGemm::run fills either.
  struct ThreadParams {
    float alpha = 1.f;
    float beta = 0.f;  // must be 0: no source operand
    const ElementD* bias_ptr = nullptr;
  };
  struct Arguments {
    ThreadParams thread{};
    const ElementD* ptr_C = nullptr;  // unused
    StrideC dC{};
    ElementD* ptr_D = nullptr;
    StrideD dD{};
  };
  using Params = Arguments;
  using ThreadEpilogueOp = ThreadParams;  // the name CUTLASS's device adapter looks up

  template <class ProblemShape>
  static constexpr Params to_underlying_arguments(ProblemShape const&, Arguments const& args, void*) {
    return args;
  }
  template <class ProblemShape>
  static size_t get_workspace_size(ProblemShape const&, Arguments const&) {
    return 0;
  }
  template <class ProblemShape>
  static cutlass::Status initialize_workspace(ProblemShape const&, Arguments const&, void*, cudaStream_t,
                                              cutlass::CudaHostAdapter* = nullptr) {
    return cutlass::Status::kSuccess;
  }
  // Each lane stores 8 rows of one column as one 16-byte vector: m, the leading dimension and D's
  // address must allow that.
  template <class ProblemShape>
  static bool can_implement(ProblemShape const& problem, Arguments const& args) {
    const auto m = cute::get<0>(problem);
    return args.thread.beta == 0.f && m % 8 == 0 && cute::get<1>(args.dD) % 8 == 0 &&
           reinterpret_cast<uintptr_t>(args.ptr_D) % 16 == 0;
  }

  CUTLASS_HOST_DEVICE explicit WarpStoreEpilogue(Params const& params) : params_(params) {}

  template <class ProblemShapeMNKL, class BlockShapeMNK, class BlockCoordMNKL, class FrgEngine,
            class FrgLayout, class TiledMma, class ResidueMNK>
  CUTLASS_DEVICE void operator()(ProblemShapeMNKL problem, BlockShapeMNK blk_shape, BlockCoordMNKL blk_coord,
                                 cute::Tensor<FrgEngine, FrgLayout> const& acc, TiledMma tiled_mma, ResidueMNK,
                                 int thread_idx, char* smem) {
    using namespace cute;
    // The sm90 wgmma accumulator of one thread: values ((2, 2, N/8), MMA_M, MMA_N), where the
    // first mode is two adjacent columns, the second rows r and r + 8, the third the 8-column
    // blocks (CUTLASS's CLayout_64xN).
    static_assert(rank(FrgLayout{}) == 3 && size<0, 0>(FrgLayout{}) == 2 && size<0, 1>(FrgLayout{}) == 2,
                  "unexpected accumulator layout");
    constexpr int kBlocks = size<0, 2>(FrgLayout{});  // 8-column blocks per MMA
    static_assert((kBlocks * 8) % kChunk == 0, "an MMA's N must be a multiple of 64");
    static_assert(size(TiledMma{}) == 32 * kWarps, "two math warpgroups (a cooperative kernel)");

    const int m_total = get<0>(problem), n_total = get<1>(problem);
    const int lane = thread_idx % 32, warp = (thread_idx / 32) % kWarps;
    const int64_t ldd = get<1>(params_.dD);
    // Tile coordinates of this thread's accumulators (the same partition as acc).
    Tensor coord = tiled_mma.get_thread_slice(thread_idx).partition_C(make_identity_tensor(take<0, 2>(blk_shape)));
    const int tile_m0 = get<0>(blk_coord) * kTileM, tile_n0 = get<1>(blk_coord) * kTileN;
    uint16_t* buffer = reinterpret_cast<SharedStorage*>(smem)->buffer[warp];
    const uint32_t buffer_s = static_cast<uint32_t>(__cvta_generic_to_shared(buffer));
    // stmatrix: lane l gives the address of row l % 8 of matrix l / 8; matrices 0-3 are
    // (block 2q, rows 0-7), (2q, 8-15), (2q + 1, 0-7), (2q + 1, 8-15); a stored row is a column.
    const int st_col = (lane / 16) * 8 + lane % 8, st_half = (lane / 8) % 2;
    const uint32_t st_addr = buffer_s + st_col * 32 + ((st_half ^ ((st_col >> 2) & 1)) * 16);
    // Read-back: lane l takes column l / 2 (+ 16 per read), rows 8 (l % 2) .. + 8.
    const int ld_col = lane / 2, ld_half = lane % 2;

    CUTLASS_PRAGMA_UNROLL
    for (int mm = 0; mm < size<1>(FrgLayout{}); ++mm) {
      // This thread's rows r and r + 8 and the warp's first row.
      const int row = get<0>(coord(make_coord(make_coord(0, 0, 0), mm, 0)));
      const int warp_row0 = tile_m0 + row - lane / 4;
      float bias[2] = {0.f, 0.f};
      if (params_.thread.bias_ptr != nullptr) {
        CUTLASS_PRAGMA_UNROLL
        for (int h = 0; h < 2; ++h)
          if (tile_m0 + row + 8 * h < m_total)
            bias[h] = static_cast<float>(params_.thread.bias_ptr[tile_m0 + row + 8 * h]);
      }
      const bool rows_in = warp_row0 + 8 * ld_half < m_total;  // m % 8 == 0: all 8 or none
      CUTLASS_PRAGMA_UNROLL
      for (int nn = 0; nn < size<2>(FrgLayout{}); ++nn) {
        const int mma_n0 = get<1>(coord(make_coord(make_coord(0, 0, 0), mm, nn))) - 2 * (lane % 4);
        CUTLASS_PRAGMA_UNROLL
        for (int c0 = 0; c0 < kBlocks * 8; c0 += kChunk) {
          CUTLASS_PRAGMA_UNROLL
          for (int q = 0; q < kChunk / 16; ++q) {  // two 8-column blocks per stmatrix
            uint32_t r[4];
            CUTLASS_PRAGMA_UNROLL
            for (int i = 0; i < 4; ++i) {
              const int j = c0 / 8 + 2 * q + i / 2, h = i % 2;
              r[i] = pack(params_.thread.alpha * acc(make_coord(make_coord(0, h, j), mm, nn)) + bias[h],
                          params_.thread.alpha * acc(make_coord(make_coord(1, h, j), mm, nn)) + bias[h]);
            }
            asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(
                             st_addr + q * 16 * 32),
                         "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
                         : "memory");
          }
          __syncwarp();
          CUTLASS_PRAGMA_UNROLL
          for (int q = 0; q < kChunk / 16; ++q) {
            const int col = q * 16 + ld_col;
            const uint4 v = *reinterpret_cast<const uint4*>(
                buffer + col * 16 + ((ld_half ^ ((col >> 2) & 1)) * 8));
            const int n = tile_n0 + mma_n0 + c0 + col;
            if (rows_in && n < n_total)
              *reinterpret_cast<uint4*>(params_.ptr_D + n * ldd + warp_row0 + 8 * ld_half) = v;
          }
          __syncwarp();
        }
      }
    }
  }

 private:
  // Two values rounded to nearest even, the first in the low half.
  CUTLASS_DEVICE static uint32_t pack(float lo, float hi) {
    if constexpr (std::is_same_v<ElementD, cutlass::half_t>) {
      const __half2 v = __floats2half2_rn(lo, hi);
      return *reinterpret_cast<const uint32_t*>(&v);
    } else {
      static_assert(std::is_same_v<ElementD, cutlass::bfloat16_t>, "fp16 or bf16 outputs");
      const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
      return *reinterpret_cast<const uint32_t*>(&v);
    }
  }

  Params params_;
};

}  // namespace sparse24::gemm
