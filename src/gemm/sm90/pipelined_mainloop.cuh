// src/gemm/sm90/pipelined_mainloop.cuh: CUTLASS's sm90 sparse mainloop with consecutive K tiles'
// tensor-core work overlapped.
//
// Why: a sparse wgmma takes its metadata from registers. CUTLASS 4.2's sparse mainloop loads one
// K tile's metadata from shared memory into a single register fragment, issues the tile's
// wgmmas, and waits for all of them to finish (K_PIPE_MMAS = 0) before it may overwrite that
// fragment with the next tile's metadata. The tensor cores drain at every K tile: with 64-deep
// tiles that bubble is a large part of the tile's ~500 cycles of math, and the kernels reached
// about 40% of the 2:4 peak on an H100.
//
// What this does instead: two metadata fragments, used by alternate K tiles. Tile t's metadata is
// loaded into the fragment tile t-1 does not use, tile t's wgmmas are issued while tile t-1's may
// still run, and only then does the warpgroup wait for tile t-1 (wgmma.wait_group 1) and hand
// its shared-memory stage back to the producer. The fragment of tile t-1 is kept live (register
// fence) until that wait, so the compiler cannot give its registers to anything else while the
// asynchronous wgmma may still read them.
//
// Everything else (TMA loads, shared-memory layouts, the producer side, parameters) is CUTLASS's
// collective, inherited unchanged: this class replaces only mma() and mma_tail().
#pragma once

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"

namespace sparse24::gemm {

template <class Base>
struct PipelinedSparseMainloop : Base {
  using typename Base::ElementEMma;
  using typename Base::MainloopPipeline;
  using typename Base::Params;
  using typename Base::PipelineState;
  using typename Base::SmemCopyAtomE;
  using typename Base::SmemLayoutA;
  using typename Base::SmemLayoutB;
  using typename Base::SmemLayoutE;
  using typename Base::TensorStorage;
  using typename Base::TiledMma;

  // The thread-value layout of one MMA tile's metadata (BLK_M x BLK_K logical elements) over the
  // tiled MMA's threads, the way the sparse wgmma atoms read it: split the tile into atoms
  // (AtomM x AtomK), map each atom through the atom's ELayout (thread, value), then distribute
  // the atoms over the warpgroups along M and K.
  template <class MmaT, class ETensorLayout>
  CUTE_HOST_DEVICE static constexpr auto metadata_thread_layout(MmaT const& mma,
                                                                ETensorLayout const& e) {
    using namespace cute;
    auto permuted = logical_divide(e, make_tile(mma.template permutation_mnk<0>(),
                                                mma.template permutation_mnk<2>()));
    using AtomShape = typename MmaT::AtomShape_MNK;
    auto atoms = zipped_divide(permuted, make_tile(make_layout(size<0>(AtomShape{})),
                                                   make_layout(size<2>(AtomShape{}))));
    auto thread_value = atoms.compose(typename MmaT::Atom::Traits::ELayout{}, _);
    auto per_group = make_tile(_, make_tile(make_layout(size<1>(mma.thr_layout_vmnk_)),
                                            make_layout(size<3>(mma.thr_layout_vmnk_))));
    return zipped_divide(thread_value, per_group);  // ((ThrV,(ThrM,ThrK)),(FrgV,(RestM,RestK)))
  }

  // This thread's part of a metadata tile, as the MMA reads it (MMA, MMA_M, MMA_K).
  template <class ThrMma, class ETensor>
  CUTE_HOST_DEVICE static constexpr auto metadata_fragment(ThrMma const& thr, ETensor&& e) {
    using namespace cute;
    auto tensor = make_tensor(e.data(), metadata_thread_layout(thr, e.layout()));
    auto coord = make_coord(get<0>(thr.thr_vmnk_),
                            make_coord(get<1>(thr.thr_vmnk_), get<3>(thr.thr_vmnk_)));
    return tensor(coord, make_coord(_, repeat<rank<1, 1>(decltype(tensor){})>(_)));
  }

  // The shared-to-register copy of a metadata tile, thread index -> the values it loads.
  template <class CopyAtom, class MmaT>
  CUTE_HOST_DEVICE static constexpr auto metadata_copy(CopyAtom const& atom, MmaT const& mma) {
    using namespace cute;
    auto whole = make_layout(make_shape(tile_size<0>(mma), tile_size<2>(mma)));
    auto tv = metadata_thread_layout(mma, whole);
    // (ThrV,(ThrM,ThrK)) -> (ThrV,(ThrM,ThrN,ThrK)): warpgroups along N read the same metadata.
    auto broadcast_n = make_tile(
        _, make_tile(make_layout(make_shape(size<1>(mma.thr_layout_vmnk_),
                                            size<2>(mma.thr_layout_vmnk_)),
                                 make_stride(Int<1>{}, Int<0>{})),
                     _));
    auto thread_to_values =
        tv.compose(broadcast_n, _).compose(right_inverse(mma.thr_layout_vmnk_), _);
    return make_tiled_copy_impl(atom, thread_to_values,
                                make_shape(tile_size<0>(mma), tile_size<2>(mma)));
  }

  // Keeps a register fragment's values live (and its registers reserved) at this point.
  template <class Fragment>
  CUTLASS_DEVICE static void keep_live(Fragment& f) {
    auto words = cute::recast<uint32_t>(f);
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < cute::size(words); ++i) cute::warpgroup_fence_operand(words(i));
  }

  template <class FrgTensorC>
  CUTLASS_DEVICE void mma(MainloopPipeline pipeline, PipelineState smem_pipe_read,
                          FrgTensorC& accum, int k_tile_count, int thread_idx,
                          TensorStorage& shared_tensors, Params const& /*params*/) {
    using namespace cute;
    Tensor sA = make_tensor(make_smem_ptr(shared_tensors.smem_A.begin()), SmemLayoutA{});
    Tensor sB = make_tensor(make_smem_ptr(shared_tensors.smem_B.begin()), SmemLayoutB{});
    Tensor sE = as_position_independent_swizzle_tensor(
        make_tensor(make_smem_ptr(shared_tensors.smem_E.begin()), SmemLayoutE{}));

    constexpr int kGroups = size(TiledMma{}) / cutlass::NumThreadsPerWarpGroup;
    const auto groups = make_layout(Int<kGroups>{}, Int<cutlass::NumThreadsPerWarpGroup>{});
    const int group = __shfl_sync(0xFFFFFFFF, thread_idx / cutlass::NumThreadsPerWarpGroup, 0);
    TiledMma tiled_mma;
    auto thr = tiled_mma.get_thread_slice(groups(group));
    Tensor tCrA = thr.make_fragment_A(thr.partition_A(sA));  // (MMA,MMA_M,MMA_K,PIPE)
    Tensor tCrB = thr.make_fragment_B(thr.partition_B(sB));  // (MMA,MMA_N,MMA_K,PIPE)

    // Two metadata fragments (even and odd K tiles) and their shared-memory source.
    Tensor tCsE = metadata_fragment(thr, sE(_, _, Int<0>{}));
    Tensor frag0 = make_fragment_like<ElementEMma>(tCsE);
    Tensor frag1 = make_fragment_like<ElementEMma>(tCsE);
    auto e_copy = metadata_copy(Copy_Atom<SmemCopyAtomE, uint32_t>{}, tiled_mma);
    auto e_thr = e_copy.get_thread_slice(thread_idx);
    Tensor tEsE = e_thr.partition_S(sE);  // (ECPY,ECPY_M,ECPY_K,PIPE)
    Tensor e0 = e_thr.retile_D(frag0);
    Tensor e1 = e_thr.retile_D(frag1);

    // Waits for the stage of smem_pipe_read, loads its metadata into `e`, issues its wgmmas.
    auto issue = [&](auto& e) {
      pipeline.consumer_wait(smem_pipe_read, pipeline.consumer_try_wait(smem_pipe_read));
      const int stage = smem_pipe_read.index();
      copy(e_copy, tEsE(_, _, _, stage), e);
      warpgroup_fence_operand(accum);
      warpgroup_arrive();
      CUTLASS_PRAGMA_UNROLL
      for (int kb = 0; kb < size<2>(tCrA); ++kb) {
        cute::gemm(tiled_mma, make_zip_tensor(tCrA(_, _, kb, stage), e(_, _, kb)),
                   tCrB(_, _, kb, stage), accum);
        tiled_mma.accumulate_ = GMMA::ScaleOut::One;
      }
      warpgroup_commit_batch();
      warpgroup_fence_operand(accum);
      ++smem_pipe_read;
    };
    // After issuing a tile: wait for the previous one, whose fragment `prev` then becomes free,
    // and hand its stage back to the producer.
    PipelineState smem_pipe_release = smem_pipe_read;
    auto retire_previous = [&](auto& prev) {
      warpgroup_wait<1>();
      keep_live(prev);
      pipeline.consumer_release(smem_pipe_release);
      ++smem_pipe_release;
    };

    tiled_mma.accumulate_ = GMMA::ScaleOut::Zero;
    if (k_tile_count <= 0) return;
    issue(e0);
    --k_tile_count;
    CUTLASS_PRAGMA_NO_UNROLL
    while (k_tile_count > 0) {
      issue(e1);
      retire_previous(frag0);
      if (--k_tile_count == 0) break;
      issue(e0);
      retire_previous(frag1);
      --k_tile_count;
    }
    // The last tile's wgmmas may still run: mma_tail waits for them and releases its stage.
  }

  // After mma(): all but the last K tile's stages are released; wait for the last tile's wgmmas
  // and release its stage. smem_pipe_release is the state mma() started from.
  CUTLASS_DEVICE void mma_tail(MainloopPipeline pipeline, PipelineState smem_pipe_release,
                               int k_tile_count) {
    if (k_tile_count <= 0) return;
    smem_pipe_release.advance(k_tile_count - 1);
    cute::warpgroup_wait<0>();
    pipeline.consumer_release(smem_pipe_release);
  }
};

// ---- Split loads ------------------------------------------------------------------------------
// The same mainloop with a stage's TMA copies issued by two producer warps instead of one: the
// mainloop producer warp issues A's and E's copies (and, as leader, announces the stage's bytes
// on its full barrier), the otherwise idle warp 3 of the producer warpgroup (CUTLASS's
// "MainloopAux" role) B's. Both wait for the stage to be released by the consumers.
//
// Why (bench/NOTES.md, GEMM v18): one thread issuing bulk copies managed one copy per ~255 cycles
// up to 16 KiB (the intake probe, GEMM v14), and the kernels took in what that predicts: the
// native 128 x 256 x 64 stage (3 copies for 41 KiB) 46 bytes per cycle, cuSPARSELt's 128 x 336
// (4 copies for 52 KiB) 51. A 2:4 stage at the full rate needs its 41 KiB in 512 cycles.
// Measured: the 16-bit forward kernels ran level with it or slightly faster (-4% to +9%), so the
// copies' issue was not their limit; the 128 x 192 weight-gradient kernels ran 1-8% (16-bit, wide
// outputs) and 3-9% (FP8) faster, and kernels.def's have it.
//
// B's copies may land (complete_tx) before the leader's arrive_and_expect_tx for the same phase:
// the barrier's transaction count goes negative meanwhile, and the phase cannot complete while
// the leader's arrival is pending, as with a cluster peer's multicast copies.
template <class Policy>
struct SplitLoadPolicy : Policy {};

template <class Base>
struct SplitLoadMainloop : PipelinedSparseMainloop<Base> {
  using DispatchPolicy = SplitLoadPolicy<typename Base::DispatchPolicy>;
  using typename Base::MainloopPipeline;
  using typename Base::Params;
  using typename Base::PipelineState;
  using typename Base::SmemLayoutA;
  using typename Base::SmemLayoutB;
  using typename Base::SmemLayoutE;
  using typename Base::TensorStorage;

  // One producer warp's copies of k_tile_count stages: A's and E's (kB false) or B's (kB true).
  template <bool kB, class LoadInputs, class BlockCoord, class KTileIterator>
  CUTLASS_DEVICE static void issue(Params const& params, MainloopPipeline pipeline, PipelineState write,
                                   LoadInputs const& inputs, BlockCoord const& blk, KTileIterator k_tile,
                                   int k_tile_count, uint32_t rank_in_cluster, TensorStorage& storage) {
    using namespace cute;
    if (!elect_one_sync()) return;
    auto cluster = make_layout(typename DispatchPolicy::ClusterShape{});
    auto cta = cluster.get_flat_coord(rank_in_cluster);
    auto [m, n, k, l] = blk;
    if constexpr (kB) {
      // B is shared by the cluster's CTAs along M: each loads its part and multicasts it.
      Tensor sB = make_tensor(make_smem_ptr(storage.smem_B.begin()), SmemLayoutB{});
      auto tma_b = params.tma_load_b.get_slice(get<0>(cta));
      Tensor gB = get<1>(inputs)(_, _, n, _, l);
      Tensor src = tma_b.partition_S(gB);
      Tensor dst = tma_b.partition_D(sB);
      const uint16_t mask = create_tma_multicast_mask<0>(cluster, cta);
      CUTLASS_PRAGMA_NO_UNROLL
      for (; k_tile_count > 0; --k_tile_count, ++k_tile, ++write) {
        pipeline.producer_acquire(write);
        copy(params.tma_load_b.with(*pipeline.producer_get_barrier(write), mask), src(_, _, _, *k_tile),
             dst(_, _, _, write.index()));
      }
    } else {
      Tensor sA = make_tensor(make_smem_ptr(storage.smem_A.begin()), SmemLayoutA{});
      Tensor sE = make_tensor(make_smem_ptr(storage.smem_E.begin()), SmemLayoutE{});
      auto tma_a = params.tma_load_a.get_slice(get<1>(cta));
      auto tma_e = params.tma_load_e.get_slice(get<1>(cta));
      Tensor gA = get<0>(inputs)(_, _, m, _, l);
      Tensor gE = get<2>(inputs)(_, _, m, _, l);
      Tensor srcA = tma_a.partition_S(gA);
      Tensor dstA = tma_a.partition_D(sA);
      Tensor srcE = tma_e.partition_S(gE);
      Tensor dstE = tma_e.partition_D(sE);
      const uint16_t mask = create_tma_multicast_mask<1>(cluster, cta);  // A and E along N
      CUTLASS_PRAGMA_NO_UNROLL
      for (; k_tile_count > 0; --k_tile_count, ++k_tile, ++write) {
        pipeline.producer_acquire(write);  // the leader: also expects the stage's bytes
        auto* barrier = pipeline.producer_get_barrier(write);
        copy(params.tma_load_a.with(*barrier, mask), srcA(_, _, _, *k_tile), dstA(_, _, _, write.index()));
        copy(params.tma_load_e.with(*barrier, mask), srcE(_, _, _, *k_tile), dstE(_, _, _, write.index()));
      }
    }
  }

  template <class LoadInputs, class BlockCoord, class KTileIterator>
  CUTLASS_DEVICE void load(Params const& params, MainloopPipeline pipeline, PipelineState write,
                           LoadInputs const& inputs, BlockCoord const& blk, KTileIterator k_tile,
                           int k_tile_count, int /*thread_idx*/, uint32_t rank_in_cluster,
                           TensorStorage& storage) {
    issue<false>(params, pipeline, write, inputs, blk, k_tile, k_tile_count, rank_in_cluster, storage);
  }
  template <class LoadInputs, class BlockCoord, class KTileIterator>
  CUTLASS_DEVICE void load_auxiliary(Params const& params, MainloopPipeline pipeline, PipelineState write,
                                     LoadInputs const& inputs, BlockCoord const& blk, KTileIterator k_tile,
                                     int k_tile_count, int /*thread_idx*/, uint32_t rank_in_cluster,
                                     TensorStorage& storage) {
    issue<true>(params, pipeline, write, inputs, blk, k_tile, k_tile_count, rank_in_cluster, storage);
  }
};

}  // namespace sparse24::gemm

// CUTLASS's warp-specialized kernels run load_auxiliary on their auxiliary producer warp for
// mainloops whose dispatch policy says so.
template <class Policy>
struct cutlass::gemm::kernel::detail::HasAuxiliaryLoad<sparse24::gemm::SplitLoadPolicy<Policy>>
    : cute::true_type {};
