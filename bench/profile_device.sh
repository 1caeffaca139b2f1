#!/usr/bin/env bash
# One call on the GPU machine: build, then profile kernels with Nsight Compute (speed of light,
# memory workload, occupancy, scheduler and warp-state sections). Reports land in $OUT (or
# ./out/device). Usage: bench/profile_device.sh [transforms|gemm [CASE]|intake]
#   transforms: one launch of each transform kernel while `sparse24 bench transforms --quick` runs;
#   gemm: the native sparse GEMM (forward and weight gradient) and cuBLAS's dense GEMM at GPT-2 XL
#   fc shapes, with per-instruction stall samples; with CASE (a `bench gemm` case name), the
#   native and cuBLAS forward kernels at that case instead;
#   intake: for three columns of `bench gemm` (cuBLAS dense, cuSPARSELt searched, native; NVTX
#   ranges of their timed calls) at three shapes, the kernel that ran and what it
#   moved: bytes each SM took in from L2 per cycle (TMA and loads through the crossbar), L2
#   bytes, shared-memory wavefronts; summarised by bench/intake_summary.py.
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
  # One launch each, full Nsight Compute sets: the native kernel at GPT-2 XL fc (forward) and at
  # XL fc dW (weight gradient), cuBLAS's dense kernel at XL fc. Per report: the details page and
  # the per-instruction SASS page (stall samples by reason), gzipped.
  profile() {  # name, kernel regex, bench gemm case
    ncu --clock-control none --set full -k "regex:$2" --launch-skip 3 -c 1 -f -o "/tmp/$1" \
        build-dev/sparse24 bench gemm --only "$3" >"/tmp/$1.log" 2>&1 || { tail -20 "/tmp/$1.log"; return; }
    ncu -i "/tmp/$1.ncu-rep" --page details >"$OUT_DIR/$1_details.txt" 2>&1
    ncu -i "/tmp/$1.ncu-rep" --page source --csv --print-source sass 2>&1 | gzip >"$OUT_DIR/$1_sass.csv.gz"
    echo "== $1 ($3)"
    summary "$OUT_DIR/$1_details.txt"
  }
  profile native_fwd device_kernel "${2:-GPT-2 XL fc}"
  [ -z "${2:-}" ] && profile native_dw device_kernel "GPT-2 XL fc dW"
  profile cublas_fwd "nvjet|xmma_gemm" "${2:-GPT-2 XL fc}"
  exit 0
fi
if [ "$suite" = intake ]; then
  # Metrics this ncu knows for GH100 (names differ between versions): keep the wanted ones it has.
  ncu --query-metrics --chip gh100 >"$OUT_DIR/ncu_metrics_gh100.txt" 2>&1
  metrics=()
  for m in gpu__time_duration.sum sm__cycles_elapsed.avg sm__cycles_elapsed.avg.per_second \
           l1tex__m_xbar2l1tex_read_bytes.sum lts__t_bytes.sum dram__bytes_read.sum \
           l1tex__data_pipe_lsu_wavefronts_mem_shared.sum launch__grid_size launch__cluster_dim_x launch__cluster_dim_y \
           launch__registers_per_thread launch__shared_mem_per_block_dynamic device__attribute_multiprocessor_count; do
    grep -q "^${m%%.*} " "$OUT_DIR/ncu_metrics_gh100.txt" && metrics+=("$m")
  done
  list=$(IFS=,; echo "${metrics[*]}")
  echo "metrics: $list"
  { echo "| case | column | kernel | grid | cluster | registers | us | MHz | crossbar -> SM bytes per cycle and SM | L2 bytes per cycle and SM | shared wavefronts per cycle and SM |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"; } >"$OUT_DIR/intake.md"
  for case in "GPT-2 S fc (Y = X W^T)" "GPT-2 XL fc" "GPT-2 XL fc dW"; do
    for range in "cuBLAS dense" "cuSPARSELt searched" "native"; do
      # A push/pop range's filter ends in "/"; plain names are tried if that profiles nothing.
      for filter in "$range/" "$range"; do
        ncu --clock-control none --nvtx --nvtx-include "$filter" --launch-skip 5 -c 2 --csv --page raw \
            --metrics "$list" build-dev/sparse24 bench gemm --only "$case" >/tmp/ncu.csv 2>/tmp/ncu.err \
          || { echo "ncu failed ($case, $range)"; tail -5 /tmp/ncu.err; }
        grep -q '^"[0-9]' /tmp/ncu.csv && break
      done
      python3 bench/intake_summary.py "$case" "$range" /tmp/ncu.csv >>"$OUT_DIR/intake.md"
    done
  done
  cat "$OUT_DIR/intake.md"
  exit 0
fi
for k in rows_kernel tile_kernel transposable_kernel; do
  echo "== $k"
  ncu --clock-control none $sections -k "regex:$k" --launch-skip 3 -c 1 \
      build-dev/sparse24 bench transforms --quick >"$OUT_DIR/ncu_$k.txt" 2>&1
  summary "$OUT_DIR/ncu_$k.txt"
done
