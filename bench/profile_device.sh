#!/usr/bin/env bash
# One call on the GPU machine: build, then profile one launch of each transform kernel with Nsight
# Compute (speed of light, occupancy, scheduler and warp-state sections) while
# `sparse24 bench transforms --quick` runs. Reports land in $OUT (or ./out/device).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-out/device}"
mkdir -p "$OUT_DIR"
export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B build-dev -G Ninja -DSPARSE24_CUDA=ON -DSPARSE24_GTEST_SOURCE="${GTEST_SOURCE:-$PWD/.deps/googletest}" >/dev/null 2>&1
cmake --build build-dev -j"$(nproc)" --target sparse24_cli >"$OUT_DIR/build.log" 2>&1 || { grep -A5 error "$OUT_DIR/build.log" | head -40; exit 1; }
for k in rows_kernel tile_kernel transposable_kernel; do
  echo "== $k"
  ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats \
      --section SchedulerStats --section WarpStateStats --section InstructionStats \
      -k "regex:$k" --launch-skip 3 -c 1 build-dev/sparse24 bench transforms --quick >"$OUT_DIR/ncu_$k.txt" 2>&1
  grep -E "Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy|Theoretical Occupancy|Issued Ipc|No Eligible|Executed Instructions  |Warp Cycles Per Issued|Stall|Block Limit" "$OUT_DIR/ncu_$k.txt" | head -40
done
