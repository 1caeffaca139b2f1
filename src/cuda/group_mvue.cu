// The mvue group kernels (group_kernels.cuh), compiled on their own, and MVUE's own kernel for
// column-major inputs (the dY^T of the weight gradient).
#include "cuda/group_kernels.cuh"

namespace sparse24::cuda::group {
namespace {

// MVUE on a column-major input whose columns are 16-byte aligned runs (vector_friendly with
// along_rows false), the dY^T view of a row-major dY. Block tile: TR rows x 64 columns; warp w
// takes metadata byte w of each row (columns 8w .. 8w + 7 of the tile), lane l the RT = 16 /
// sizeof(In) consecutive rows RT*l ..: one 16-byte load per column reads all of them (a warp reads
// 512 contiguous bytes of a column per load), and the transpose costs no per-element instruction:
// the first half of the rows is worked on from registers while the second waits in shared memory
// (kRestShared). The outputs go through shared memory (row-major, XOR-swizzled by lane against
// bank conflicts) so that every row's values and metadata leave as contiguous runs. S: how the
// fast path stores kept values (mvue_store; launch_mvue picks it from p); key: mvue_key(p.seed),
// read in place from the parameters (the same round keys for every byte).
constexpr int kColsTile = 64;

// mvue_general_byte out of line: the kernel's main loop then holds none of its registers (the
// parameters are __grid_constant__, so passing p by reference copies nothing).
template <typename In, typename Out>
__device__ __noinline__ ByteOut<Out> mvue_general_byte_out_of_line(const Vec<In, 8> raw, int64_t row, int64_t byte,
                                                                  bool both, const GroupParams& p) {
  return mvue_general_byte<In, Out>(raw, row, byte, both, p);
}

// Words 2-3 of each thread's 8 columns wait for the second pass in shared memory (fewer
// registers: 4 blocks per SM), where that fits beside the outputs in 48 KB (all but 16-bit inputs
// to fp32), else in registers (3 blocks per SM).
template <typename In, typename Out>
constexpr bool kRestShared = (8 * sizeof(Vec<Out, 4>) + 8) * (32 * 16 / sizeof(In))  // vals, metas
                                 + 8 * kThreads * sizeof(uint2) <= 48 * 1024;           // rest

template <typename In, typename Out, MvueStore S>
__global__ void __launch_bounds__(kThreads, kRestShared<In, Out> ? 4 : 3)
    mvue_cols_kernel(const __grid_constant__ DeviceMatrix in, const __grid_constant__ GroupParams p,
                     const __grid_constant__ PhiloxKey key) {
  constexpr int RT = 16 / int(sizeof(In)), TR = 32 * RT;  // rows per thread, per tile
  constexpr int RW = 4 / int(sizeof(In));                 // rows per 32-bit word
  static_assert(TR <= kThreads, "one thread per tile row stores the metadata");
  // Row r's chunk (4 values) of byte b at [r][b ^ sw(r)]: sw(r) = U (r / RT) % 8 keeps whole
  // 16-byte units of U chunks together (the epilogue's loads and stores), and varies with the
  // lane that writes the row (fewer bank conflicts).
  constexpr unsigned U = 4 / sizeof(Out);  // chunks per 16 bytes
  __shared__ Vec<Out, 4> vals[TR][8];
  __shared__ alignas(8) uint8_t metas[TR][8];  // byte b of row r at [r][b ^ ((r / RT) % 8)]
  __shared__ uint2 rest[kRestShared<In, Out> ? 8 : 1][kThreads];
  const unsigned t = threadIdx.x, lane = t % 32, w = t / 32;
  // 32-bit indices: rows < 2^24 (grid.y <= 65535) and row_bytes < 2^31 (launch_mvue checks both)
  const uint32_t rows = uint32_t(p.rows), row_bytes = uint32_t(p.row_bytes), groups = uint32_t(p.groups);
  const uint32_t r0 = blockIdx.y * TR, byte0 = blockIdx.x * (kColsTile / 8);  // the tile's first row, byte
  const uint32_t row0 = r0 + RT * lane, byte = byte0 + w;
  if (row0 < rows && byte < row_bytes) {
    const bool both = 2 * byte + 1 < groups;  // else the row's last byte: columns 8 byte .. + 3
    const uint32_t meta_mask = both ? 0xFFu : 0x0Fu;
    // Columns 8 byte + k; the lone last group of a row (!both) reads its own 4 columns again in
    // place of the absent ones (its group 1 is not stored).
    const In* col = static_cast<const In*>(in.data) + 8 * uint64_t(byte) * in.sc + row0;
    const In* col4 = col + (both ? 4 : 0) * in.sc;
    uint32_t x[8][2], later[8][2];  // [column][word]: the pass's RT / 2 rows; words 2-3 if in registers
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint4 v = *reinterpret_cast<const uint4*>(k < 4 ? col + k * in.sc : col4 + (k - 4) * in.sc);
      x[k][0] = v.x;
      x[k][1] = v.y;
      if constexpr (kRestShared<In, Out>) {
        rest[k][t] = make_uint2(v.z, v.w);
      } else {
        later[k][0] = v.z;
        later[k][1] = v.w;
      }
    }
    // Two passes of RT / 2 rows each (words 0-1 of a column's 16 bytes, then 2-3): the body is
    // unrolled for 2 * RW rows, not RT, which halves the code. The Philox counter's high word is
    // the same for the thread's rows unless its low word wraps (then the general path redoes them
    // all). If a sum is out of the fast path's range (mvue_sums_normal), all the thread's bytes
    // are redone after the loop from memory (a NaN/Inf in the tile: rare), so the loop holds no
    // call.
    uint32_t sums = 0;
    const uint64_t n0 = uint64_t(row0) * row_bytes + byte;  // Philox counter: + row_bytes per row
    const uint32_t n_hi = uint32_t(n0 >> 32);
    const bool wraps = (n0 & 0xFFFFFFFFu) + uint64_t(RT - 1) * row_bytes > 0xFFFFFFFFu;
    uint32_t n_lo = uint32_t(n0);
    Vec<Out, 4>* out = &vals[RT * lane][w ^ (U * lane % 8)];  // + 8 per row
    uint8_t* meta = &metas[RT * lane][w ^ (lane % 8)];
#pragma unroll 1
    for (int pass = 0; pass < 2; ++pass) {
#pragma unroll
      for (int i = 0; i < 2 * RW; ++i, n_lo += row_bytes, out += 8, meta += 8) {
        float xf[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) xf[k] = to_f32_non_nan(word_element<In>(x[k], i));
        uint8_t code;
        mvue_fast_byte<Out, S>(xf, p, key, uint64_t(n_hi) << 32 | n_lo, *out, code, sums);
        *meta = uint8_t(code & meta_mask);
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        if constexpr (kRestShared<In, Out>) {
          x[k][0] = rest[k][t].x;
          x[k][1] = rest[k][t].y;
        } else {
          x[k][0] = later[k][0];
          x[k][1] = later[k][1];
        }
      }
    }
    if (!mvue_sums_normal(sums) || wraps) {
#pragma unroll 1
      for (int j = 0; j < RT; ++j) {
        const int r = RT * lane + j;
        Vec<In, 8> raw{};
        for (int k = 0; k < (both ? 8 : 4); ++k) raw.v[k] = col[k * in.sc + j];
        const ByteOut<Out> b = mvue_general_byte_out_of_line<In, Out>(raw, row0 + j, byte, both, p);
        vals[r][w ^ (U * lane % 8)] = b.v;
        metas[r][w ^ (lane % 8)] = b.meta;
      }
    }
  }
  __syncthreads();
  const uint32_t tile_rows = rows - r0 < TR ? rows - r0 : TR;
  const uint32_t tile_bytes = row_bytes - byte0 < 8 ? row_bytes - byte0 : 8;
  // Values. A full tile whose rows start at 16-byte boundaries (and hold whole bytes) leaves as
  // 16-byte units of U chunks, unchecked: kUnits consecutive threads write one row's units in
  // order (thread t: unit t % kUnits of rows t / kUnits + kRowStep k), row t / kUnits + kRowStep k
  // having the swizzle U ((t / kUnits / RT + kRowStep / RT k) % kUnits), two terms in disjoint
  // bits. Else 8 threads per row, a byte's chunk each, with the row's checks.
  if (tile_rows == TR && tile_bytes == 8 && uint64_t(groups) * sizeof(Out) % 8 == 0 &&
      reinterpret_cast<uintptr_t>(p.values) % 16 == 0) {
    constexpr unsigned kUnits = 8 / U, kRowStep = kThreads / kUnits;  // units per row, rows per step
    const unsigned j = t % kUnits;
    const uint64_t first = (uint64_t(r0 + t / kUnits) * groups + 2 * byte0) * 2;  // the tile in its first row
    auto* dst = reinterpret_cast<uint4*>(static_cast<Out*>(p.values) + first) + j;
    const uint64_t step = uint64_t(kRowStep) * groups * 2 * sizeof(Out) / 16;  // kRowStep rows, in units
    const unsigned q = t / kUnits / RT;  // the swizzle's first term, < kRowStep / RT
#pragma unroll
    for (unsigned k = 0; k < TR / kRowStep; ++k, dst += step)
      *dst = *reinterpret_cast<const uint4*>(
          &vals[t / kUnits + kRowStep * k][U * (j ^ (q ^ kRowStep / RT * k) % kUnits)]);
  } else {
    const unsigned b = t % 8;
    const uint32_t byte_b = byte0 + b;
    if (b < tile_bytes) {
#pragma unroll
      for (unsigned k = 0; k < TR * 8 / kThreads; ++k) {
        const unsigned r = t / 8 + kThreads / 8 * k;
        if (r < tile_rows) store_values<Out>(vals[r][b ^ (U * (r / RT) % 8)], r0 + r, byte_b, 2 * byte_b + 1 < groups, p);
      }
    }
  }
  // Metadata: one thread per row, 8 bytes, un-swizzled (byte b sits at b ^ m: byte selectors
  // 0x3210 ^ m and 0x7654 ^ m, nibble-wise); the sm90 copy byte by byte.
  if (t < tile_rows) {
    const uint32_t m = (t / RT) % 8 * 0x1111u;
    const uint2 s = *reinterpret_cast<const uint2*>(metas[t]);
    const uint32_t lo = __byte_perm(s.x, s.y, 0x3210u ^ m), hi = __byte_perm(s.x, s.y, 0x7654u ^ m);
    uint8_t* dst = p.meta + uint64_t(r0 + t) * row_bytes + byte0;
    if (tile_bytes == 8 && row_bytes % 8 == 0 && reinterpret_cast<uintptr_t>(p.meta) % 8 == 0) {
      *reinterpret_cast<uint2*>(dst) = make_uint2(lo, hi);
    } else {
      for (uint32_t b = 0; b < tile_bytes; ++b) dst[b] = uint8_t((b < 4 ? lo : hi) >> (8 * (b % 4)));
    }
    if (p.hw_meta)
      for (uint32_t b = 0; b < tile_bytes; ++b)
        p.hw_meta[p.hw.offset(r0 + t, byte0 + b)] = uint8_t((b < 4 ? lo : hi) >> (8 * (b % 4)));
  }
}

}  // namespace

void launch_mvue(const TensorView& in, DType out_dtype, const GroupParams& p) {
  bool along_rows = false;
  if (!vector_friendly(in, &along_rows) || along_rows || p.row_bytes >= (int64_t(1) << 31)) {
    launch_rule<rules::GroupRule::kMvue>(in, out_dtype, p);  // rows_kernel, or tile_kernel for odd views
    return;
  }
  dispatch_input_dtype(in.dtype, [&](auto itag) {
    dispatch_dtype(out_dtype, [&](auto otag) {
      using In = typename decltype(itag)::type;
      using Out = typename decltype(otag)::type;
      if constexpr (kIsValueType<Out>) {
        constexpr int kTileRows = 32 * 16 / int(sizeof(In));
        const dim3 grid(unsigned((in.cols() + kColsTile - 1) / kColsTile), unsigned((in.rows() + kTileRows - 1) / kTileRows));
        S24_CHECK(grid.y <= 65535u, kShape, "CUDA transforms: ", in.describe(), " has too many rows for one launch");
        const PhiloxKey key = mvue_key(p.seed);
        if constexpr (std::is_same_v<Out, f16_t> || std::is_same_v<Out, bf16_t>) {
          if (p.scale == 1.f) {
            if (p.overflow == Overflow::kSaturate)
              mvue_cols_kernel<In, Out, MvueStore::kPairSaturate><<<grid, kThreads>>>(device_matrix(in), p, key);
            else
              mvue_cols_kernel<In, Out, MvueStore::kPair><<<grid, kThreads>>>(device_matrix(in), p, key);
            return;
          }
        }
        mvue_cols_kernel<In, Out, MvueStore::kAny><<<grid, kThreads>>>(device_matrix(in), p, key);
      }
    });
  });
  S24_CUDA_CHECK_LAUNCH("mvue kernel");
}

}  // namespace sparse24::cuda::group
