// The mvue group kernels (group_kernels.cuh), compiled on their own, and MVUE's own kernel for
// column-major inputs (the dY^T of the weight gradient).
#include "cuda/group_kernels.cuh"

namespace sparse24::cuda::group {
namespace {

// MVUE on a column-major input whose columns are 16-byte aligned runs (vector_friendly with
// along_rows false), the dY^T view of a row-major dY. Block tile: TR rows x 64 columns; warp w
// takes metadata byte w of each row (columns 8w .. 8w + 7 of the tile), lane l the RT = 16 /
// sizeof(In) consecutive rows RT*l ..: one 16-byte load per column reads all of them (a warp reads
// 512 contiguous bytes of a column per load), and the thread's 8 x RT inputs stay in registers,
// so the transpose costs no shared memory and no per-element instruction. The outputs go through
// shared memory (row-major, chunks XOR-swizzled by lane against bank conflicts) so that every row's
// values and metadata leave as contiguous runs. S: how the fast path stores kept values
// (mvue_store; launch_mvue picks it from p); key: mvue_key(p.seed), read in place from the
// parameters (the same round keys for every byte).
constexpr int kColsTile = 64;

// mvue_general_byte out of line: the kernel's main loop then holds none of its registers (the
// parameters are __grid_constant__, so passing p by reference copies nothing).
template <typename In, typename Out>
__device__ __noinline__ ByteOut<Out> mvue_general_byte_out_of_line(const Vec<In, 8> raw, int64_t row, int64_t byte,
                                                                  bool both, const GroupParams& p) {
  return mvue_general_byte<In, Out>(raw, row, byte, both, p);
}

template <typename In, typename Out, MvueStore S>
__global__ void __launch_bounds__(kThreads) mvue_cols_kernel(const __grid_constant__ DeviceMatrix in,
                                                            const __grid_constant__ GroupParams p,
                                                            const __grid_constant__ PhiloxKey key) {
  constexpr int RT = 16 / int(sizeof(In)), TR = 32 * RT;  // rows per thread, per tile
  constexpr int RW = 4 / int(sizeof(In));                 // rows per 32-bit word
  static_assert(TR <= kThreads, "one thread per tile row stores the metadata");
  __shared__ Vec<Out, 4> vals[TR][8];  // row r's chunk of byte b at [r][b ^ ((r / RT) & 7)]
  __shared__ alignas(8) uint8_t metas[TR][8];  // the same swizzle
  const int lane = int(threadIdx.x) & 31, w = int(threadIdx.x) >> 5;
  const int64_t r0 = int64_t(blockIdx.y) * TR, c0 = int64_t(blockIdx.x) * kColsTile;
  const int64_t row0 = r0 + RT * lane, byte = c0 / 8 + w;
  if (row0 < p.rows && byte < p.row_bytes) {
    const bool both = 2 * byte + 1 < p.groups;  // else the row's last byte: columns 8 byte .. + 3
    const uint32_t meta_mask = both ? 0xFFu : 0x0Fu;
    const uint32_t row_bytes = uint32_t(p.row_bytes);  // < 2^31: launch_mvue checks
    const In* col = static_cast<const In*>(in.data) + 8 * byte * in.sc + row0;
    uint32_t x[8][4];  // [column][word]: RT rows of each column
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      Vec<uint32_t, 4> v{{0u, 0u, 0u, 0u}};
      if (k < 4 || both) v = *reinterpret_cast<const Vec<uint32_t, 4>*>(col + k * in.sc);
#pragma unroll
      for (int j = 0; j < 4; ++j) x[k][j] = v.v[j];
    }
    // Two passes over the rows of words 0-1 (then 2-3, shifted down): the body is unrolled for
    // 2 * RW rows, not RT, which halves the code. Bytes the fast path leaves (bit j of `general`
    // for row row0 + j) are redone afterwards from memory, so the loop holds no call.
    uint32_t general = 0;
    uint64_t n = uint64_t(row0) * row_bytes + uint64_t(byte);  // Philox counter: + row_bytes per row
    Vec<Out, 4>* out = &vals[RT * lane][w ^ (lane & 7)];  // + 8 per row
    uint8_t* meta = &metas[RT * lane][w ^ (lane & 7)];
#pragma unroll 1
    for (int pass = 0; pass < 2; ++pass) {
      uint32_t pass_general = 0;
#pragma unroll
      for (int i = 0; i < 2 * RW; ++i, n += row_bytes, out += 8, meta += 8) {
        float xf[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) xf[k] = to_f32_non_nan(word_element<In>(x[k], i));
        uint8_t code;
        pass_general |= uint32_t(!mvue_fast_byte<Out, S>(xf, p, key, n, *out, code)) << i;
        *meta = uint8_t(code & meta_mask);
      }
      general |= pass_general << (2 * RW * pass);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        x[k][0] = x[k][2];
        x[k][1] = x[k][3];
      }
    }
    for (; general != 0; general &= general - 1) {
      const int j = __ffs(general) - 1, r = RT * lane + j;
      Vec<In, 8> raw{};
      for (int k = 0; k < (both ? 8 : 4); ++k) raw.v[k] = col[k * in.sc + j];
      const ByteOut<Out> b = mvue_general_byte_out_of_line<In, Out>(raw, row0 + j, byte, both, p);
      vals[r][w ^ (lane & 7)] = b.v;
      metas[r][w ^ (lane & 7)] = b.meta;
    }
  }
  __syncthreads();
  const int64_t tile_rows = p.rows - r0 < TR ? p.rows - r0 : TR;
  const int64_t tile_bytes = p.row_bytes - c0 / 8 < 8 ? p.row_bytes - c0 / 8 : 8;
  // Values: 8 consecutive threads write one row's chunks in order (thread t: byte t % 8 of rows
  // t / 8 + 32 k). A full tile whose rows hold whole bytes of two groups (an even group count:
  // every chunk 4 aligned values) stores each chunk as one vector, unchecked.
  const unsigned t = threadIdx.x, b = t % 8;
  const int64_t byte_b = c0 / 8 + b;
  if (tile_rows == TR && tile_bytes == 8 && p.groups % 2 == 0) {
    using Chunk = Vec<uint32_t, int(sizeof(Out))>;  // the 4 values of a byte as words
    Out* dst = static_cast<Out*>(p.values) + (r0 + t / 8) * 2 * p.groups + 4 * byte_b;
    const int64_t step = kThreads / 8 * 2 * p.groups;  // 32 rows
#pragma unroll
    for (unsigned k = 0; k < TR * 8 / kThreads; ++k, dst += step) {
      const unsigned r = t / 8 + kThreads / 8 * k;
      *reinterpret_cast<Chunk*>(dst) = reinterpret_cast<const Chunk&>(vals[r][b ^ ((r / RT) % 8)]);
    }
  } else if (b < tile_bytes) {
#pragma unroll
    for (unsigned k = 0; k < TR * 8 / kThreads; ++k) {
      const unsigned r = t / 8 + kThreads / 8 * k;
      if (r < tile_rows) store_values<Out>(vals[r][b ^ ((r / RT) % 8)], r0 + r, byte_b, 2 * byte_b + 1 < p.groups, p);
    }
  }
  // Metadata: one thread per row, 8 bytes, un-swizzled (byte b sits at b ^ m); the sm90 copy
  // byte by byte.
  if (int(threadIdx.x) < tile_rows) {
    const int r = int(threadIdx.x), m = (r / RT) & 7;
    const uint2 s = *reinterpret_cast<const uint2*>(metas[r]);
    uint32_t lo = (m & 4) ? s.y : s.x, hi = (m & 4) ? s.x : s.y;
    if (m & 2) {
      lo = __byte_perm(lo, 0, 0x1032);
      hi = __byte_perm(hi, 0, 0x1032);
    }
    if (m & 1) {
      lo = __byte_perm(lo, 0, 0x2301);
      hi = __byte_perm(hi, 0, 0x2301);
    }
    uint8_t* dst = p.meta + (r0 + r) * p.row_bytes + c0 / 8;
    if (tile_bytes == 8 && p.row_bytes % 8 == 0 && reinterpret_cast<uintptr_t>(p.meta) % 8 == 0) {
      *reinterpret_cast<uint2*>(dst) = make_uint2(lo, hi);
    } else {
      for (int b = 0; b < tile_bytes; ++b) dst[b] = uint8_t((b < 4 ? lo : hi) >> (8 * (b % 4)));
    }
    if (p.hw_meta)
      for (int b = 0; b < tile_bytes; ++b)
        p.hw_meta[p.hw.offset(r0 + r, c0 / 8 + b)] = uint8_t((b < 4 ? lo : hi) >> (8 * (b % 4)));
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
