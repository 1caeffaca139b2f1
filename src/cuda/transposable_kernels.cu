// CUDA transposable 2:4: one pass over W choosing, for every aligned 4x4 block, the best of the
// 90 patterns (the pattern rules::best_transposable returns, found by a cheaper exact search) or
// reading a given mask, and writing W and W^T compressed. A thread owns one 4x4 block of fp32
// input, two side by side of 16-bit input. Row-major inputs are read straight into registers;
// other layouts go through a shared-memory tile in the input type. W's outputs are written
// straight from registers; W^T's are staged in shared memory so that they too leave the block in
// row order.
#include <type_traits>

#include "core/rules24.h"
#include "cuda/check.h"
#include "cuda/tile.cuh"
#include "cuda/transforms_cuda.h"

namespace sparse24::cuda {
namespace {

// A block of threads takes a tile of kTileRows rows of W: (kTileRows / 4) x 16 threads, each one
// or two 4x4 blocks (kCols below: the tile's width). 64 rows, or 128 for a given mask on large
// matrices: W^T's tile rows are then 64 values, whole 128-byte lines for fp16, with 16-byte
// metadata runs (+3-4 points of the copy rate on an H100, bench/NOTES.md v17). The search stays
// at 64 rows (its longer work between the loads and the block's barrier lost 1-10% with 512
// threads), and so do smaller matrices (fewer, larger blocks fill the GPU's last wave worse).

// ---- The search ------------------------------------------------------------------------------
// Pair p of a row keeps columns (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); pair 5 - p keeps the other two.
// Nibble p of kPairBits: pair p's columns as bits.
constexpr uint32_t kPairBits = 0xCA6953u;

// The pair index of a two-column mask (compile-time use).
S24_HD constexpr int pair_of_bits(int m) {
  return rules::pair_index(m & 1 ? 0 : (m & 2 ? 1 : 2), m & 8 ? 3 : (m & 4 ? 2 : 1));
}
// Pair p's two columns as a nibble (compile-time use).
S24_HD constexpr uint32_t pair_bits(int p) { return (kPairBits >> (4 * p)) & 0xF; }

// Non-negative floats, +0 to +Inf, order as their bit patterns read as unsigned integers, so
// their maximum is an integer maximum (VIMNMX3 takes three operands at once).
S24_HD uint32_t fkey(float x) { return f32_to_bits(x); }
S24_HD uint32_t umax3(uint32_t a, uint32_t b, uint32_t c) {
#if defined(__CUDA_ARCH__)
  return __vimax3_u32(a, b, c);
#else
  return a > b ? (a > c ? a : c) : (b > c ? b : c);
#endif
}
S24_HD uint32_t umax6(const uint32_t x[6]) {
  const uint32_t lo = umax3(x[0], x[1], x[2]), hi = umax3(x[3], x[4], x[5]);
  return lo > hi ? lo : hi;
}

// PTX's prmt.b32 for selectors whose four low nibbles are 0..7 by construction: byte i of the
// result is byte (nibble i of sel) of the 8 bytes y:x. (__byte_perm would first clear each
// nibble's bit 3, PRMT's sign-replicate flag: one more instruction per run-time selector.)
S24_HD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t sel) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(x), "r"(y), "r"(sel));
  return r;
#else
  const uint64_t xy = uint64_t(y) << 32 | x;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t((xy >> (8 * ((sel >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  return r;
#endif
}

// s[p] of the pair whose columns are the two set bits of a run-time nibble m, by selects on
// bits 0-2: with bit 0, the pair (0, b) for b = 1, 2, 3 as bit 1 / bit 2 / neither;
// without it, (1, 2), (1, 3) or (2, 3).
S24_HD float pick_pair(const float s[6], uint32_t m) {
  const float with0 = m & 2 ? s[0] : (m & 4 ? s[1] : s[2]);
  const float without0 = m & 2 ? (m & 4 ? s[3] : s[4]) : s[5];
  return m & 1 ? with0 : without0;
}

// rules::best_transposable for a block of finite |w| (absw[4 * r + c]), with the same result,
// returned as the kept mask: bit 4r + c for a kept (r, c), so nibble r is row r's pair's columns.
//
// A pattern is a prefix (p0, p1), rows 0-1, and a completion (p2, p3) that fills every column to
// two; score = A + B with A = s0[p0] + s1[p1] and B = s2[p2] + s3[p3], in float. Float addition
// (round to nearest) is monotone in each operand, so the best completion of a prefix scores
// T = A + (its largest B), and the first pattern in tie-break (lexicographic) order with the
// maximal score S is: the first prefix with T == S, completed by its first (p2 order) completion
// with A + B == S. A prefix's completions depend only on the columns it fills:
//   p1 == p0:      rows 2-3 both keep the two columns neither prefix row keeps (one completion);
//   p1 == 5 - p0:  the four columns once each: (q, 5 - q) for q = 0..5 (six completions);
//   otherwise:     the rows share a column; column z is kept by neither, x < y by one each. Both
//                  completion rows keep z, one of them x and the other y; (z, x) comes first in
//                  pair order whatever z is, so the completions are (z|x, z|y), then (z|y, z|x).
// Every sum is the float sum best_transposable forms (same operands, same order; a + b == b + a
// exactly); with finite inputs no sum is NaN (sums may overflow to +Inf, which stays monotone).
//
// The first prefix with T == S: a scan over the prefixes in lexicographic order, three at a time
// (p1 = 0..2, then 3..5, of each p0). A triple whose largest T beats the best so far strictly
// takes over, by its first prefix reaching that T; a later tie loses, so the scan ends on the
// first prefix with T == S. Maxima and equalities are taken on the T's float bits (exact: +0 to
// +Inf order as unsigned integers, and no T is NaN), 8 instructions per triple where a scan of
// one prefix at a time takes 3 per prefix.
//
// A prefix is carried as a compile-time code, bytes of kept-mask rows: byte 0 its rows' columns
// m0 | m1 << 4, byte 1 its first completion's m2 | m3 << 4, byte 2 the second one's (rows 2 and
// 3 swapped; unused with one completion), and bit 24 for the six-completion kind. The winner's A
// is formed again from s0, s1 picked by m0, m1: the same operands, so the same sum.
S24_HD constexpr uint32_t prefix_code(int p0, int p1) {
  const uint32_t m0 = pair_bits(p0), m1 = pair_bits(p1);
  const uint32_t once = m0 ^ m1, none = 0xF & ~(m0 | m1);  // columns kept by one / no prefix row
  const uint32_t x = once & (0u - once);                  // the lower column kept once
  const uint32_t m2 = none | x, m3 = none | (once ^ x);
  return m0 | m1 << 4 | (m2 | m3 << 4) << 8 | (m3 | m2 << 4) << 16 | (once == 0xF ? 1u << 24 : 0u);
}

S24_HD uint32_t best_transposable_finite(const float absw[16]) {
  float s[4][6];  // s[r][p]: row r's pair p
  S24_UNROLL
  for (int r = 0; r < 4; ++r)
    S24_UNROLL
    for (int p = 0; p < 6; ++p) s[r][p] = absw[4 * r + rules::pair_a(p)] + absw[4 * r + rules::pair_b(p)];
  float bd[6];  // B of the six completions (q, 5 - q) of a p1 == 5 - p0 prefix, and their largest
  uint32_t bd_key[6];
  S24_UNROLL
  for (int q = 0; q < 6; ++q) bd[q] = s[2][q] + s[3][5 - q], bd_key[q] = fkey(bd[q]);
  const float bd_max = f32_from_bits(umax6(bd_key));

  // The scan: `best` the largest T so far (float bits), `code` its first prefix.
  uint32_t best = 0, code = 0;
  S24_UNROLL
  for (int p0 = 0; p0 < 6; ++p0)
    S24_UNROLL
    for (int h = 0; h < 6; h += 3) {
      uint32_t t[3];
      S24_UNROLL
      for (int i = 0; i < 3; ++i) {
        const int p1 = h + i;
        float bmax;  // the prefix's largest B (compile-time kind)
        if (p1 == p0) {
          bmax = s[2][5 - p0] + s[3][5 - p0];
        } else if (p1 == 5 - p0) {
          bmax = bd_max;
        } else {
          const int m0c = int(pair_bits(p0)), m1c = int(pair_bits(p1)), z = 0xF & ~(m0c | m1c);
          const int u = pair_of_bits(z | (m0c & ~m1c)), v = pair_of_bits(z | (m1c & ~m0c));
          bmax = fmaxf(s[2][u] + s[3][v], s[2][v] + s[3][u]);
        }
        t[i] = fkey((s[0][p0] + s[1][p1]) + bmax);
      }
      const uint32_t m = umax3(t[0], t[1], t[2]);
      const bool win = (p0 == 0 && h == 0) || m > best;
      uint32_t c = win ? prefix_code(p0, h + 2) : code;
      c = win && t[1] == m ? prefix_code(p0, h + 1) : c;
      code = win && t[0] == m ? prefix_code(p0, h) : c;
      best = win ? m : best;
    }
  const float a = pick_pair(s[0], code & 0xF) + pick_pair(s[1], (code >> 4) & 0xF);  // the winning prefix's A
  const float score = f32_from_bits(best);  // S

  // Its first completion reaching S, as rows 2-3 of the kept mask. Six completions: the first q
  // with a + B(q, 5 - q) == S (q = 5 if no earlier one). One or two: byte 1 of the code unless
  // only the swapped one, byte 2, reaches S (with one completion, byte 1 reaches S).
  uint32_t rows_q = pair_bits(5) | pair_bits(0) << 4;
  S24_UNROLL
  for (int q = 4; q >= 0; --q) rows_q = a + bd[q] == score ? pair_bits(q) | pair_bits(5 - q) << 4 : rows_q;
  const bool first = a + (pick_pair(s[2], (code >> 8) & 0xF) + pick_pair(s[3], (code >> 12) & 0xF)) == score;
  // Bytes (0, b) of the code, b = 1 or 2, or (0 of the code, 0 of rows_q), by one byte permute;
  // the upper two bytes take byte 3 of rows_q, a zero.
  const uint32_t sel = code >> 24 ? 0x7740u : (first ? 0x7710u : 0x7720u);
  return byte_perm(code, rows_q, sel);
}

// ---- The kernel ------------------------------------------------------------------------------
// x[i] for a run-time i in 0..3 (rules::pick4's value), by selects on i's bits: no branches.
__device__ __forceinline__ float pick4_bits(const float x[4], uint32_t i) {
  return i & 2 ? (i & 1 ? x[3] : x[2]) : (i & 1 ? x[1] : x[0]);
}

struct TransposableParams {
  void* w_values;              // rows x cols/2
  uint8_t* w_meta;             // rows x w_row_bytes
  void* wt_values;             // cols x rows/2
  uint8_t* wt_meta;            // cols x wt_row_bytes
  int64_t w_row_bytes, wt_row_bytes;
  const uint8_t* given_mask;   // W's canonical metadata when the mask is given, else null
  float scale;
  Overflow overflow;
  bool check_finite;           // report non-finite weights (the search always does)
  unsigned long long* bad;     // report slot: 2 * position + kind (0: invalid mask block, 1: NaN/Inf)
  uint8_t *w_hw, *wt_hw;       // sm90 metadata of W and W^T, written beside the canonical; or null
  Sm90Meta w_hwg, wt_hwg;      // their geometries
};

// Storage types kept as packed pairs of 16-bit values, whose kept values are picked by byte permutes.
template <typename Out>
constexpr bool kHalfOut = std::is_same_v<Out, f16_t> || std::is_same_v<Out, bf16_t>;

// |x| as float by the hardware conversion (rules::abs_f of to_f32_non_nan): for fp16 the
// conversion takes the absolute value as an operand modifier (HADD2.F32 of |h|), no separate AND.
__device__ __forceinline__ float hw_abs_f32(float x) { return rules::abs_f(x); }
__device__ __forceinline__ float hw_abs_f32(f16_t x) { return __half2float(__habs(__ushort_as_half(x.bits))); }
__device__ __forceinline__ float hw_abs_f32(bf16_t x) { return rules::abs_f(to_f32_non_nan(x)); }

// Group codes and value selectors of the four nibbles of a 16-bit kept mask (bit 4r + c: column c
// of row r kept), by byte-permute table lookups on n / 2 for a nibble n (0..7; two set bits give
// 1..6). Byte r of `codes` is row r's group code (a | b << 2 for kept columns a < b; a nibble
// that is not a valid pair gets the code the table gives and is reported elsewhere); sel[0] and
// sel[1] hold rows 0-1 and 2-3, 16 bits each: the selector that takes 16-bit values a and b of
// the row's two words (bytes 2a, 2a + 1, 2b, 2b + 1).
struct PairPicks {
  uint32_t codes, sel[2];
};
__device__ __forceinline__ PairPicks pair_picks(uint32_t kept) {
  const uint32_t n = (kept >> 1) & 0x7777u;  // per nibble: the table index
  PairPicks r;
  r.codes = byte_perm(0x09080400u, 0x000E0D0Cu, n);            // n/2 -> code: 0 4 8 9 12 13 14 0
  const uint32_t ab = byte_perm(0x21201000u, 0x00323130u, n);  // n/2 -> a | b << 4, the same pairs
  r.sel[0] = byte_perm(0x76543210u, 0, ab);                    // value i -> bytes 2i | 2i + 1 << 4
  r.sel[1] = byte_perm(0x76543210u, 0, ab >> 16);
  return r;
}
// Row r's selector of a PairPicks (byte_perm reads the low 16 bits).
__device__ __forceinline__ uint32_t row_sel(const PairPicks& pk, int r) { return pk.sel[r / 2] >> (16 * (r % 2)); }

// A given mask's block as a kept mask: `codes` holds row r's group code in byte r, whose columns
// a = code & 3 and b = code >> 2 become one-hot bytes by byte-permute lookups, packed into
// nibbles. Codes with a >= b give one column or the pair (b, a): given_transposable tells.
__device__ __forceinline__ uint32_t given_kept(uint32_t codes) {
  const uint32_t s = byte_perm(codes | codes >> 4, 0, 0x20u);  // nibble r: row r's code
  const uint32_t k = byte_perm(0x08040201u, 0, s & 0x3333u) | byte_perm(0x08040201u, 0, (s >> 2) & 0x3333u);
  return byte_perm(k | k >> 4, 0, 0x4420u);  // byte r of k: row r's columns, as nibble r
}
// Whether the given codes form a transposable block: every column keeps two (the transposed
// mask's nibbles count 2 each), so that every row keeps two columns, and every row's code is the
// canonical code of its columns (a < b), the one pair_picks gives back. Exactly the CPU's check:
// valid codes, and two per column.
__device__ __forceinline__ bool given_transposable(uint32_t codes, const PairPicks& pk, uint32_t kept_t) {
  uint32_t n = kept_t - ((kept_t >> 1) & 0x5555u);  // per nibble: two 2-bit counts
  n = (n & 0x3333u) + ((n >> 2) & 0x3333u);         // per nibble: its count
  return n == 0x2222u && pk.codes == codes;
}

// Two kept values of a group x[4] as stored (from_f32 of each): the path for non-finite blocks,
// scales other than 1 and storage types that are not 16-bit. In a non-finite block of a given
// mask (reached only under NonFinite::kPropagate; the search reports such blocks and its caller
// throws, so it passes true) a group holding NaN or Inf stores the canonical NaN twice, as the
// CPU does.
template <typename Out>
__device__ __forceinline__ Vec<Out, 2> convert_pair(const float x[4], uint32_t code, const TransposableParams& p,
                                                    bool block_finite) {
  Vec<Out, 2> r;
  if (!block_finite && !rules::is_finite4(x)) {
    r.v[0] = r.v[1] = from_f32<Out>(rules::canonical_nan(), p.scale, p.overflow);
    return r;
  }
  r.v[0] = from_f32<Out>(pick4_bits(x, code & 3), p.scale, p.overflow);
  r.v[1] = from_f32<Out>(pick4_bits(x, (code >> 2) & 3), p.scale, p.overflow);
  return r;
}

// 4x4 blocks per thread, side by side: two for 16-bit inputs, whose 4 x 8 elements are then one
// 16-byte load per row as fp32's 4 x 4 are. That doubles the bytes a thread has in flight, fills
// W's metadata bytes without a shuffle and halves the per-block share of the thread's indexing.
template <typename In>
constexpr int kBlocksPer = sizeof(In) == 4 ? 1 : 2;
template <typename In>
constexpr int kCols = 64 * kBlocksPer<In>;  // the tile's columns: 16 thread columns
template <typename In>
constexpr int kPitch = kCols<In> + 4;          // row pitch of the input tile (other layouts only)

// The W^T tile in shared memory: kRows rows (W's columns) x kTileRows / 2 values, its 16-byte
// chunks XOR-swizzled by the row's thread column (row / (4 kBlocks)) so that the 8 thread columns
// of a warp, which write the same word of rows 4 kBlocks apart, spread over the row's chunks (all
// different banks where a row has 8 chunks or more: 16-bit values in 128-row tiles, fp32). The
// rows of one thread column share their swizzle: at(row + c, i) is at(row, i) + c rows within them.
template <typename Out, int kBlocks, int kTileRows>
struct WtTile {
  static constexpr int kRows = 64 * kBlocks;
  static constexpr int kChunks = (kTileRows / 2) * int(sizeof(Out)) / 16;  // 16-byte chunks per row
  alignas(16) Out v[kRows][kTileRows / 2];
  __device__ static int chunk(int row, int k) { return k ^ ((row / (4 * kBlocks)) & (kChunks - 1)); }
  __device__ Out* at(int row, int i) {
    constexpr int kPer = 16 / int(sizeof(Out));  // values per chunk
    return &v[row][chunk(row, i / kPer) * kPer + i % kPer];
  }
};

// N bytes as one integer or vector type: a value moved by a single load or store.
template <int N>
using Bits = std::conditional_t<N == 2, uint16_t,
                                std::conditional_t<N == 4, uint32_t, std::conditional_t<N == 8, uint2, uint4>>>;
template <typename To, typename From>
__device__ __forceinline__ To bits_as(const From& x) {
  static_assert(sizeof(To) == sizeof(From));
  To r;
  memcpy(&r, &x, sizeof(To));
  return r;
}

// kGiven: the pattern is read from p.given_mask (else searched); each kernel holds only its path.
template <typename In, typename Out, bool kGiven, int kTileRows>
__global__ void __launch_bounds__(4 * kTileRows, 256 / kTileRows)
    transposable_kernel(DeviceMatrix w, TransposableParams p, bool vec, bool along_rows) {
  constexpr int kThreads = 4 * kTileRows;
  constexpr int kWords = int(sizeof(In));  // 32-bit words per block row
  constexpr int kBlocks = kBlocksPer<In>, kTileCols = kCols<In>;
  // The input tile for layouts other than row-major with vector loads (dynamic: 0 bytes else).
  extern __shared__ uint4 input_smem[];
  __shared__ WtTile<Out, kBlocks, kTileRows> wt_vals;
  __shared__ alignas(16) uint8_t wt_meta[kTileCols][kTileRows / 8];  // W^T's rows x their metadata bytes
  using Row = Vec<uint32_t, kWords * kBlocks>;  // a thread's part of a row: 16 bytes
  using Pair = Bits<2 * int(sizeof(Out))>;      // a row's two kept values of a block, as stored
  const bool direct = vec && along_rows;
  const int64_t r0 = int64_t(blockIdx.y) * kTileRows, c0 = int64_t(blockIdx.x) * kTileCols;
  const int t_rows = int(min(int64_t(kTileRows), w.rows - r0)), t_cols = int(min(int64_t(kTileCols), w.cols - c0));

  // A warp covers 4 block rows x 8 thread columns (thread column bj holds blocks kBlocks bj + b):
  // lanes 8 apart (bi, bi + 1) share W^T's metadata bytes, and with one block per thread lanes
  // 1 apart share W's; row-major loads and W's stores stay 32-128 contiguous bytes per row.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int bi = 4 * (warp / 2) + lane / 8, bj = 8 * (warp % 2) + lane % 8;
  // The first element. Rows fit 32 bits (the launch has at most 65535 tile rows): formed in 32
  // bits, row0's upper half is a known zero and takes no register through the search.
  const int64_t row0 = uint32_t(blockIdx.y * kTileRows + 4 * bi), col0 = c0 + 4 * kBlocks * bj;
  bool in[kBlocks];  // which of the thread's blocks lie inside the matrix
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) in[b] = 4 * bi < t_rows && 4 * (kBlocks * bj + b) < t_cols;
  const bool inside = in[0];

  // The thread's blocks as raw words, zeros outside the matrix. Row-major input is read straight
  // from W, before anything waits (one pointer stepping a row stride); it has a multiple of 8
  // columns, so a thread's blocks are inside or outside together.
  In(*tile)[kPitch<In>] = reinterpret_cast<In(*)[kPitch<In>]>(input_smem);
  auto read_direct = [&](uint32_t(&dst)[kBlocks][4][kWords]) {
    const char* src = static_cast<const char*>(w.data) + (row0 * w.sr + col0) * int64_t(sizeof(In));
    const int64_t stride = w.sr * int64_t(sizeof(In));
#pragma unroll
    for (int r = 0; r < 4; ++r, src += stride) {
      const Row x = *reinterpret_cast<const Row*>(src);
#pragma unroll
      for (int k = 0; k < kWords * kBlocks; ++k) dst[k / kWords][r][k % kWords] = x.v[k];
    }
  };
  auto read_tile = [&](uint32_t(&dst)[4][kWords], int b) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const auto x = *reinterpret_cast<const Vec<uint32_t, kWords>*>(&tile[4 * bi + r][4 * (kBlocks * bj + b)]);
#pragma unroll
      for (int k = 0; k < kWords; ++k) dst[r][k] = x.v[k];
    }
  };
  // Two blocks per thread and a search: the second block's words wait in shared memory while the
  // first is searched (16 raw words and a search do not fit 64 registers). Direct reads park them
  // in `park` (the input tile's space, unused then; each thread its own slots); tile reads take
  // them from the tile when their turn comes. A given mask needs no search: both stay in registers.
  constexpr bool kPark = kBlocks == 2 && !kGiven;
  uint2(*park)[kThreads] = reinterpret_cast<uint2(*)[kThreads]>(input_smem);
  uint32_t raw[kBlocks][4][kWords] = {};
  if (direct && inside) read_direct(raw);
  // A given mask: the byte of the thread's columns in each of its rows, loaded right behind the
  // input, before anything waits for the input (the input tile's stores do), so that both are in
  // flight together and no thread waits at a barrier for another's loads. A 16-bit thread's byte
  // holds its two blocks' codes; an fp32 thread's block is nibble bj % 2.
  uint32_t mask_bytes[4] = {};
  if (kGiven && inside) {
    const uint8_t* src = p.given_mask + row0 * p.w_row_bytes + col0 / 8;
#pragma unroll
    for (int r = 0; r < 4; ++r) mask_bytes[r] = src[r * p.w_row_bytes];
  }
  if constexpr (kPark) {
    if (direct) {
#pragma unroll
      for (int r = 0; r < 4; ++r) park[r][threadIdx.x] = make_uint2(raw[1][r][0], raw[1][r][1]);
    }
  }
  if (!direct) load_tile<In, In, kTileRows, kTileCols, kThreads, kPitch<In>>(w, r0, c0, vec, along_rows, tile);
  if (!direct) __syncthreads();
  if (!direct) read_tile(raw[0], 0);

  // 16-bit storage: a block as stored, per row two words of packed values (the input's own bits
  // when the types match). With kSaturate, .satfinite equals from_f32's clamp for finite values;
  // the words of a non-finite block are not used.
  constexpr bool kPacked = kHalfOut<Out>;
  auto pack_block = [&](const uint32_t(&x)[4][kWords], uint32_t(&h)[4][2]) {
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int k = 0; k < 2; ++k)
        if constexpr (std::is_same_v<In, Out>) h[r][k] = x[r][k];
        else
          h[r][k] = pack_pair<Out>(to_f32_non_nan(word_element<In>(x[r], 2 * k)),
                                   to_f32_non_nan(word_element<In>(x[r], 2 * k + 1)), p.overflow);
  };
  // fp32 inputs: the 16 raw words are not kept through the search (register pressure). With
  // 16-bit storage the block is packed before it (8 words); whatever needs the raw block after the
  // search reads it again (the input is never written). 16-bit inputs keep their 8 raw words and
  // pack after the search.
  constexpr bool kReread = kWords == 4;

  // W's outputs, written when the last block's are known. Values: a row's pairs of the thread's
  // blocks in one store when every row's are aligned (a multiple of 8 columns), else block by
  // block. Metadata: four rows' bytes.
  auto write_w_values = [&](const Pair(&w_vals)[kBlocks][4]) {
    const int64_t w_stride = (w.cols / 2) * int64_t(sizeof(Out));
    char* wv = static_cast<char*>(p.w_values) + (row0 * (w.cols / 2) + col0 / 2) * int64_t(sizeof(Out));
    if (inside) {
      const bool one_store = kBlocks == 1 || w.cols % 8 == 0;
#pragma unroll
      for (int r = 0; r < 4; ++r, wv += w_stride) {
        if (one_store) {
          Vec<Pair, kBlocks> v;
#pragma unroll
          for (int b = 0; b < kBlocks; ++b) v.v[b] = w_vals[b][r];
          *reinterpret_cast<Bits<int(sizeof(v))>*>(wv) = bits_as<Bits<int(sizeof(v))>>(v);
        } else {
#pragma unroll
          for (int b = 0; b < kBlocks; ++b)
            if (in[b]) reinterpret_cast<Pair*>(wv)[b] = w_vals[b][r];
        }
      }
    }
  };
  auto write_w_meta = [&](uint32_t bytes) {
    if (inside && (kBlocks == 2 || bj % 2 == 0)) {
      uint8_t* wm = p.w_meta + row0 * p.w_row_bytes + col0 / 8;
#pragma unroll
      for (int r = 0; r < 4; ++r, wm += p.w_row_bytes) {
        const uint8_t byte = uint8_t(bytes >> (8 * r));
        *wm = byte;
        if (p.w_hw) p.w_hw[p.w_hwg.offset(row0 + r, col0 / 8)] = byte;
      }
    }
  };

  // Block by block: the pattern, W's values and codes (held until the last block), W^T's values
  // and metadata (staged in shared memory).
  Pair w_vals[kBlocks][4];
  uint32_t w_codes[kBlocks];
  uint32_t given = 0;  // the given mask's bytes as one word, row r's in byte r
  Out* const wt_slot = wt_vals.at(4 * kBlocks * bj, 2 * bi);  // the thread's slot in its first W^T row
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) {
    if (b == 1) {  // the second block's words, back from shared memory
      if (!direct) {
        read_tile(raw[1], 1);
      } else if constexpr (kPark) {
#pragma unroll
        for (int r = 0; r < 4; ++r) raw[1][r][0] = park[r][threadIdx.x].x, raw[1][r][1] = park[r][threadIdx.x].y;
      }
    }
    const uint32_t(&x)[4][kWords] = raw[b];
    const int64_t bcol0 = col0 + 4 * b;  // the block's first column
    const int trow0 = 4 * (kBlocks * bj + b);  // its first row in the W^T tile
    Out* const wt_dst = wt_slot + 4 * b * (kTileRows / 2);  // the block's slot in that row
    uint32_t h[4][2] = {};
    if constexpr (kReread && kPacked) pack_block(x, h);

    // Finite block: every |x| (as bits) below Inf's; 16-bit inputs are checked two per word.
    bool finite;
    if constexpr (kWords == 4) {
      uint32_t m = 0;
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int k = 0; k < 4; ++k) m = max(m, x[r][k] & 0x7FFFFFFFu);
      finite = m < 0x7F800000u;
    } else {
      uint32_t m = 0;
#pragma unroll
      for (int r = 0; r < 4; ++r) m = __vimax3_u16x2(m, x[r][0] & 0x7FFF7FFFu, x[r][1] & 0x7FFF7FFFu);
      finite = max(m & 0xFFFFu, m >> 16) < rules::non_finite_key(In{});
    }
    // Non-finite weights: the block's first NaN/Inf in row-major order (kind 1), found among the
    // block's values as floats (v(k), k = 0..15).
    auto report_non_finite = [&](auto v) {
      int k = 15;
#pragma unroll
      for (int j = 14; j >= 0; --j)
        if (!rules::is_finite_f(v(j))) k = j;
      report_first(p.bad, 2 * ((row0 + k / 4) * w.cols + bcol0 + k % 4) + 1);
    };

    // The pattern as a 16-bit mask, bit 4r + c for a kept (r, c).
    uint32_t kept = 0, codes = 0;
    if constexpr (kGiven) {
      if (in[b] && !finite && p.check_finite)
        report_non_finite([&](int k) { return to_f32(word_element<In>(x[k / 4], k % 4)); });
      if (b == 0)  // gathered only now: nothing waits for the mask bytes before (an input tile loads first)
        given = byte_perm(byte_perm(mask_bytes[0], mask_bytes[1], 0x40u), byte_perm(mask_bytes[2], mask_bytes[3], 0x40u), 0x5410u);
      codes = (given >> (4 * (kBlocks == 2 ? b : bj % 2))) & 0x0F0F0F0Fu;  // byte r: row r's code
      kept = given_kept(codes);
    } else {
      // |x| by the hardware conversions: exact for every input but a NaN, which stays a NaN (the
      // reference search, which NaN/Inf blocks take, sees no payloads).
      float absw[16];
#pragma unroll
      for (int k = 0; k < 16; ++k) absw[k] = hw_abs_f32(word_element<In>(x[k / 4], k % 4));
      if (finite) {
        kept = best_transposable_finite(absw);
      } else {
        if (in[b]) report_non_finite([&](int k) { return absw[k]; });  // the search always reports
        const uint16_t pairs = rules::best_transposable(absw);
#pragma unroll
        for (int r = 0; r < 4; ++r) kept |= ((kPairBits >> (4 * ((pairs >> (3 * r)) & 7))) & 0xF) << (4 * r);
      }
    }
    // The same mask transposed (bit 4c + r): W^T's block is the transpose of W's.
    uint32_t kept_t = kept, t = (kept_t ^ (kept_t >> 3)) & 0x0A0Au;
    kept_t ^= t ^ (t << 3);
    t = (kept_t ^ (kept_t >> 6)) & 0x00CCu;
    kept_t ^= t ^ (t << 6);
    const PairPicks pk = pair_picks(kept), pk_t = pair_picks(kept_t);
    if (kGiven && in[b] && !given_transposable(codes, pk, kept_t))
      report_first(p.bad, 2 * (row0 * w.cols + bcol0));  // kind 0: not a transposable block
    w_codes[b] = pk.codes;
    // W's metadata (at the last block): a byte = a block's code | the next block's << 4 (zero
    // past the matrix), four rows' bytes at once; with one block per thread the next block's
    // codes come in one shuffle (lanes 1 apart).
    uint32_t bytes = 0;
    if (b == kBlocks - 1) {
      if constexpr (kBlocks == 1) {
        const uint32_t odd_codes = __shfl_down_sync(0xFFFFFFFFu, w_codes[0], 1);
        bytes = w_codes[0] | (4 * (bj + 1) < t_cols ? odd_codes : 0) << 4;
      } else {
        bytes = w_codes[0] | (in[1] ? w_codes[1] : 0) << 4;
      }
    }

    // W^T's metadata: a byte = this block's code | the block below's << 4 (lanes 8 apart), four
    // rows' bytes at once.
    const uint32_t odd_codes_t = __shfl_down_sync(0xFFFFFFFFu, pk_t.codes, 8);
    const uint32_t bytes_t = pk_t.codes | (4 * (bi + 1) < t_rows ? odd_codes_t : 0) << 4;

    // Values. W: row row0 + r keeps the block's group; W^T: tile row trow0 + c keeps the two rows
    // of the pattern with a one in column c, as group bi (at wt_dst, c rows further).
    if (kPacked && finite && p.scale == 1.f) {
      // 16-bit storage, finite block, scale 1: byte-permute picks from the words h. W^T's column c
      // is first gathered as two words (rows 0-1, rows 2-3).
      if constexpr (kPacked) {
        if constexpr (!kReread) pack_block(x, h);
#pragma unroll
        for (int r = 0; r < 4; ++r) w_vals[b][r] = bits_as<Pair>(byte_perm(h[r][0], h[r][1], row_sel(pk, r)));
        if (b == kBlocks - 1) write_w_values(w_vals);
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const uint32_t half = c % 2 ? 0x7632u : 0x5410u;
          const uint32_t lo = __byte_perm(h[0][c / 2], h[1][c / 2], half), hi = __byte_perm(h[2][c / 2], h[3][c / 2], half);
          *reinterpret_cast<uint32_t*>(wt_dst + c * (kTileRows / 2)) = byte_perm(lo, hi, row_sel(pk_t, c));
        }
      }
    } else {
      // Any other case: the block as floats (to_f32 where a NaN may be present, keeping payloads),
      // the kept values picked and converted one by one. fp32 inputs read the block again.
      uint32_t again[kBlocks][4][kWords] = {};
      if constexpr (kReread) {
        if (direct && inside) read_direct(again);
        if (!direct) read_tile(again[0], 0);
      }
      const uint32_t(&again_b)[4][kWords] = again[b];
      const uint32_t(&blk_raw)[4][kWords] = kReread ? again_b : x;
      float blk[4][4];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) blk[r][c] = to_f32_non_nan(word_element<In>(blk_raw[r], c));
      if (!finite) {
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int c = 0; c < 4; ++c) blk[r][c] = to_f32(word_element<In>(blk_raw[r], c));
      }
#pragma unroll
      for (int r = 0; r < 4; ++r)
        w_vals[b][r] = bits_as<Pair>(convert_pair<Out>(blk[r], pk.codes >> (8 * r), p, finite || !kGiven));
      if (b == kBlocks - 1) write_w_values(w_vals);
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const float col[4] = {blk[0][c], blk[1][c], blk[2][c], blk[3][c]};
        *reinterpret_cast<Pair*>(wt_dst + c * (kTileRows / 2)) =
            bits_as<Pair>(convert_pair<Out>(col, pk_t.codes >> (8 * c), p, finite || !kGiven));
      }
    }
    if (b == kBlocks - 1) write_w_meta(bytes);
    if (bi % 2 == 0) {
#pragma unroll
      for (int c = 0; c < 4; ++c) wt_meta[trow0 + c][bi / 2] = uint8_t(bytes_t >> (8 * c));
    }
  }

  __syncthreads();

  // Write the W^T tile: rows c0.., values from slot r0/2, metadata from byte r0/8; whole rows of
  // the tile go out as 16-byte vectors when the tile is full and the rows are 16-byte aligned.
  // Offsets inside the tile fit 32 bits: a row of W^T holds under 2^21 values (W has at most 65535
  // x 64 rows), so the tile's rows span under 2^30 bytes.
  const int t_vals = t_rows / 2, t_bytes = (t_rows / 4 + 1) / 2;
  const uint32_t wt_row_vals = uint32_t(w.rows / 2), wt_row_bytes = uint32_t(p.wt_row_bytes);
  Out* tv = static_cast<Out*>(p.wt_values) + c0 * int64_t(wt_row_vals) + r0 / 2;
  using Wt = WtTile<Out, kBlocks, kTileRows>;
  constexpr int kChunks = Wt::kChunks;
  static_assert(kTileCols * (kTileRows / 2) % kThreads == 0, "whole passes over the W^T tile");
  if (t_vals == kTileRows / 2 && wt_row_vals * sizeof(Out) % 16 == 0) {
    // A thread moves chunk k of rows lr0, lr0 + kStep, ...: one row pointer, stepped.
    constexpr int kStep = kThreads / kChunks;
    static_assert(kThreads % kChunks == 0, "whole rows per pass");
    const uint32_t k = threadIdx.x % kChunks, lr0 = threadIdx.x / kChunks;
    char* dst = reinterpret_cast<char*>(tv + lr0 * wt_row_vals) + 16 * k;
#pragma unroll
    for (int i = 0; i < (kTileCols + kStep - 1) / kStep; ++i, dst += kStep * wt_row_vals * sizeof(Out)) {
      const uint32_t lr = lr0 + i * kStep;
      if (lr < uint32_t(t_cols))
        *reinterpret_cast<uint4*>(dst) = reinterpret_cast<const uint4*>(wt_vals.v[lr])[Wt::chunk(lr, k)];
    }
  } else {
    for (int i = 0; i < kTileCols * (kTileRows / 2) / kThreads; ++i) {
      const int e = int(threadIdx.x) + i * kThreads, lr = e / (kTileRows / 2), k = e % (kTileRows / 2);
      if (lr < t_cols && k < t_vals) tv[lr * wt_row_vals + k] = *wt_vals.at(lr, k);
    }
  }
  if (p.wt_hw) {
    for (int e = threadIdx.x; e < kTileCols * (kTileRows / 8); e += kThreads) {
      const int lr = e / (kTileRows / 8), k = e % (kTileRows / 8);
      if (lr < t_cols && k < t_bytes) p.wt_hw[p.wt_hwg.offset(c0 + lr, r0 / 8 + k)] = wt_meta[lr][k];
    }
  }
  uint8_t* tm = p.wt_meta + c0 * p.wt_row_bytes + r0 / 8;
  using MetaRun = Bits<kTileRows / 8>;  // a W^T row's metadata bytes of the tile
  if (t_bytes == kTileRows / 8 && wt_row_bytes % sizeof(MetaRun) == 0) {
    if (threadIdx.x < uint32_t(t_cols))
      *reinterpret_cast<MetaRun*>(tm + threadIdx.x * wt_row_bytes) = *reinterpret_cast<const MetaRun*>(wt_meta[threadIdx.x]);
  } else {
    static_assert(kTileCols * (kTileRows / 8) % kThreads == 0, "whole passes over the W^T metadata tile");
    for (int i = 0; i < kTileCols * (kTileRows / 8) / kThreads; ++i) {
      const int e = int(threadIdx.x) + i * kThreads, lr = e / (kTileRows / 8), k = e % (kTileRows / 8);
      if (lr < t_cols && k < t_bytes) tm[lr * wt_row_bytes + k] = wt_meta[lr][k];
    }
  }
}

}  // namespace

int64_t prune_transposable(const TensorView& w, const Mask24* mask, const CompressOptions& opts,
                           Transposable24& res, bool report) {
  if (w.rows() == 0 || w.cols() == 0) return -1;
  unsigned long long* bad = reset_report_slot();  // non-finite weight, or invalid mask block
  TransposableParams p{res.w.values.view().data, res.w.mask.codes().data<uint8_t>(),
                       res.wt.values.view().data, res.wt.mask.codes().data<uint8_t>(),
                       res.w.mask.row_bytes(), res.wt.mask.row_bytes(),
                       mask ? mask->codes().data<uint8_t>() : nullptr, res.w.scale, opts.overflow,
                       !mask || opts.non_finite == NonFinite::kError, bad,
                       res.w.hw_meta.defined() ? res.w.hw_meta.data<uint8_t>() : nullptr,
                       res.wt.hw_meta.defined() ? res.wt.hw_meta.data<uint8_t>() : nullptr,
                       res.w.hw_meta.defined() ? sm90_meta(res.w.layout, res.w.rows, res.w.cols, res.w.dtype) : Sm90Meta{},
                       res.wt.hw_meta.defined() ? sm90_meta(res.wt.layout, res.wt.rows, res.wt.cols, res.wt.dtype) : Sm90Meta{}};
  bool along_rows = false;
  const bool vec = vector_friendly(w, &along_rows);
  S24_CHECK((w.rows() + 63) / 64 <= 65535, kShape, "prune_transposable: ", w.describe(),
            " has too many rows for one launch");
  const int sms = sm_count();
  dispatch_input_dtype(w.dtype, [&](auto itag) {
    dispatch_dtype(res.w.dtype, [&](auto otag) {
      using In = typename decltype(itag)::type;
      using Out = typename decltype(otag)::type;
      if constexpr (kIsValueType<Out>) {
        auto launch = [&](auto given, auto tile_rows) {
          constexpr bool kGiven = decltype(given)::value;
          constexpr int kTileRows = decltype(tile_rows)::value, kThreads = 4 * kTileRows;
          const auto kernel = transposable_kernel<In, Out, kGiven, kTileRows>;
          const dim3 grid(unsigned((w.cols() + kCols<In> - 1) / kCols<In>),
                          unsigned((w.rows() + kTileRows - 1) / kTileRows));
          // Row-major inputs with vector loads read straight from global memory (the search parks
          // its second blocks in shared memory); other layouts go through an input tile.
          constexpr size_t kTileBytes = size_t(kTileRows) * kPitch<In> * sizeof(In);
          static_assert(kTileBytes >= 4 * kThreads * sizeof(uint2), "the input tile's space holds the park");
          const size_t smem = vec && along_rows ? (kBlocksPer<In> == 2 && !kGiven ? 4 * kThreads * sizeof(uint2) : 0)
                                                : kTileBytes;
          // With the static W^T tile, some variants need more than the default 48 KB per block:
          // allowed the most they can ask for, once per GPU (a per-launch setting could race
          // between host threads launching the same kernel on different layouts).
          static PerGpu<int> allowed;
          allowed.get([&](int&) {
            S24_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kTileBytes)));
          });
          kernel<<<grid, kThreads, smem>>>(device_matrix(w), p, vec, along_rows);
        };
        // 128-row tiles for a given mask on matrices of at least 8 x 128 x 128 elements per SM (for
        // 16-bit input 8 blocks of 512 threads per SM, two at a time: four waves or more).
        const bool tall_tiles = mask && w.rows() * w.cols() >= 8 * 128 * 128 * int64_t(sms);
        using Rows64 = std::integral_constant<int, 64>;
        using Rows128 = std::integral_constant<int, 128>;
        if (tall_tiles) launch(std::true_type{}, Rows128{});
        else if (mask) launch(std::true_type{}, Rows64{});
        else launch(std::false_type{}, Rows64{});
        S24_CUDA_CHECK_LAUNCH("transposable_kernel");
      }
    });
  });
  res.mask = res.w.mask;
  return report ? read_report_slot() : -1;
}

}  // namespace sparse24::cuda
