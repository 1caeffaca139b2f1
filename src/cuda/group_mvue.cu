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
// values and metadata leave as contiguous runs.
constexpr int kColsTile = 64;

// Element i (a compile-time index after unrolling) of a column's two 32-bit words.
template <typename In>
__device__ __forceinline__ In word_element(const uint32_t w[2], int i) {
  if constexpr (sizeof(In) == 4) {
    return __uint_as_float(w[i]);
  } else {
    In v;
    v.bits = uint16_t(w[i / 2] >> (16 * (i % 2)));
    return v;
  }
}

template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads) mvue_cols_kernel(DeviceMatrix in, GroupParams p) {
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
    // 2 * RW rows, not RT, which halves the code.
#pragma unroll 1
    for (int pass = 0; pass < 2; ++pass) {
#pragma unroll
      for (int i = 0; i < 2 * RW; ++i) {
        In raw[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) raw[k] = word_element<In>(x[k], i);
        const int r = RT * lane + 2 * RW * pass + i;  // row in the tile
        Vec<Out, 4> out;
        const uint8_t meta = mvue_byte<In, Out>(raw, r0 + r, byte, both, p, out);
        vals[r][w ^ (lane & 7)] = out;
        metas[r][w ^ (lane & 7)] = meta;
        if (p.hw_meta) p.hw_meta[p.hw.offset(r0 + r, byte)] = meta;
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        x[k][0] = x[k][2];
        x[k][1] = x[k][3];
      }
    }
  }
  __syncthreads();
  const int64_t tile_rows = p.rows - r0 < TR ? p.rows - r0 : TR;
  const int64_t tile_bytes = p.row_bytes - c0 / 8 < 8 ? p.row_bytes - c0 / 8 : 8;
  // Values: 8 consecutive threads write one row's chunks, in order.
#pragma unroll
  for (int e = int(threadIdx.x); e < TR * 8; e += kThreads) {
    const int r = e / 8, b = e % 8;
    if (r < tile_rows && b < tile_bytes) {
      const Vec<Out, 4> v = vals[r][b ^ ((r / RT) & 7)];
      const int64_t byte_b = c0 / 8 + b;
      store_values<Out>(v, r0 + r, byte_b, 2 * byte_b + 1 < p.groups, p);
    }
  }
  // Metadata: one thread per row, 8 bytes, un-swizzled (byte b sits at b ^ m).
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
  }
}

}  // namespace

void launch_mvue(const TensorView& in, DType out_dtype, const GroupParams& p) {
  bool along_rows = false;
  if (!vector_friendly(in, &along_rows) || along_rows) {
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
        mvue_cols_kernel<In, Out><<<grid, kThreads>>>(device_matrix(in), p);
      }
    });
  });
  S24_CUDA_CHECK_LAUNCH("mvue kernel");
}

}  // namespace sparse24::cuda::group
