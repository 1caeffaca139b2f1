#!/usr/bin/env bash
# Builds here (no GPU needed) the two binaries that `bench/run_device.sh --prebuilt` runs on the
# GPU machine, so that a device call spends its time on tests and benchmarks rather than on a
# 3-4 minute build there (here the CUTLASS kernels take about 8 minutes on 2 cores, outside the
# device budget). This machine's CUDA toolkit must be the device's version (13.0): check
# `nvcc --version`. cuSPARSELt is linked from .deps/cusparselt (scripts/setup-deps.sh fetches the
# version the device has) and found there through the device's PyTorch copy at run time.
# Usage, from the repository root:
#   bench/build_for_device.sh [--explore]   (SM90_EXPLORE_ONLY as for run_device.sh)
# then call the device tool's `run` with
#   carry ["build-carry/sparse24", "build-carry/tests/sparse24_gpu_tests"]
#   command "bench/run_device.sh --prebuilt [options] [bench args]"
# (the CPU test binary stays here: three binaries would pass the 64 MiB that a call carries, and
# CI runs the CPU suite).
set -euo pipefail
cd "$(dirname "$0")/.."
explore=OFF
[ "${1:-}" = --explore ] && explore=ON
cusparselt=/nonexistent
[ -f .deps/cusparselt/lib/libcusparseLt.so.0 ] && cusparselt=$PWD/.deps/cusparselt
cmake -S . -B build-carry -G Ninja -DSPARSE24_CUDA=ON -DSPARSE24_CUSPARSELT_DIR="$cusparselt" \
  -DSPARSE24_SM90_EXPLORE=$explore -DSPARSE24_SM90_EXPLORE_ONLY="${SM90_EXPLORE_ONLY:-}" >/dev/null
cmake --build build-carry -j"$(nproc)" --target sparse24_cli sparse24_gpu_tests >build-carry/build.log 2>&1 ||
  { grep -E "error" -A5 build-carry/build.log | head -60; exit 1; }
nvcc --version | tail -1
ls -l build-carry/sparse24 build-carry/tests/sparse24_gpu_tests
