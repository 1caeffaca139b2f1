#!/usr/bin/env bash
# One call on the GPU machine: build, then profile kernels with Nsight Compute (speed of light,
# memory workload, occupancy, scheduler and warp-state sections). Reports land in $OUT (or
# ./out/device). Usage: bench/profile_device.sh [transforms|gemm]
#   transforms: one launch of each transform kernel while `sparse24 bench transforms --quick` runs;
#   gemm: one launch of the native sparse GEMM at 3072 x 16384 x 768 (`bench gemm --quick`).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-out/device}"
mkdir -p "$OUT_DIR"
export PATH=/usr/local/cuda/bin:$PATH
cusparselt=$(python3 -c "import nvidia.cusparselt as m; print(m.__path__[0])" 2>/dev/null || true)
cmake -S . -B build-dev -G Ninja -DSPARSE24_CUDA=ON -DSPARSE24_GTEST_SOURCE="${GTEST_SOURCE:-$PWD/.deps/googletest}" \
  ${cusparselt:+-DSPARSE24_CUSPARSELT_DIR=$cusparselt} >/dev/null 2>&1
cmake --build build-dev -j"$(nproc)" --target sparse24_cli >"$OUT_DIR/build.log" 2>&1 || { grep -A5 error "$OUT_DIR/build.log" | head -40; exit 1; }
suite=${1:-transforms}
summary() {
  grep -E "Duration|Memory Throughput|DRAM Throughput|L2 Cache Throughput|L1/TEX Cache Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy|Issued Ipc|No Eligible|Warp Cycles Per Issued|Stall|Shared Memory|Block Limit|Cluster" "$1" | head -50
}
sections="--section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section SchedulerStats --section WarpStateStats --section InstructionStats"
if [ "$suite" = gemm ]; then
  echo "== native sparse GEMM (cutlass device_kernel)"
  ncu --clock-control none $sections -k "regex:device_kernel" --launch-skip 3 -c 1 \
      build-dev/sparse24 bench gemm --quick >"$OUT_DIR/ncu_gemm_native.txt" 2>&1
  summary "$OUT_DIR/ncu_gemm_native.txt"
  exit 0
fi
for k in rows_kernel tile_kernel transposable_kernel; do
  echo "== $k"
  ncu --clock-control none $sections -k "regex:$k" --launch-skip 3 -c 1 \
      build-dev/sparse24 bench transforms --quick >"$OUT_DIR/ncu_$k.txt" 2>&1
  summary "$OUT_DIR/ncu_$k.txt"
done
