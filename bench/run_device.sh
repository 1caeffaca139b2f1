#!/usr/bin/env bash
# One call on the GPU machine: build with CUDA (sm_90a), run the CPU and GPU test suites, the GPU
# suite again under compute-sanitizer, then the transform benchmarks (ours and PyTorch's).
# The GPU machine has no GoogleTest: copy Debian's sources here first (`scripts/setup-deps.sh`
# installs them: mkdir -p .deps && cp -r /usr/src/googletest .deps/) and carry `.deps` with the
# call. Usage, from the repository root: bench/run_device.sh [--quick]
# Logs go to $OUT when set (the device tool's output folder), else ./out/device.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-out/device}"
mkdir -p "$OUT_DIR"
export PATH=/usr/local/cuda/bin:$PATH
nproc_=$(nproc)
step() { echo; echo "== $*"; }

step "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
step "configure + build"
cmake -S . -B build-dev -G Ninja -DSPARSE24_CUDA=ON -DSPARSE24_GTEST_SOURCE="${GTEST_SOURCE:-$PWD/.deps/googletest}" \
  >"$OUT_DIR/configure.log" 2>&1 || { tail -30 "$OUT_DIR/configure.log"; exit 1; }
cmake --build build-dev -j"$nproc_" >"$OUT_DIR/build.log" 2>&1 || { grep -E "error" -A5 "$OUT_DIR/build.log" | head -60; exit 1; }
build-dev/sparse24 info
step "CPU tests"
build-dev/tests/sparse24_tests >"$OUT_DIR/cpu_tests.log" 2>&1; tail -3 "$OUT_DIR/cpu_tests.log"
step "GPU tests"
build-dev/tests/sparse24_gpu_tests 2>&1 | tee "$OUT_DIR/gpu_tests.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error" | head -40
step "GPU tests under compute-sanitizer (memcheck)"
compute-sanitizer --tool memcheck --error-exitcode 3 build-dev/tests/sparse24_gpu_tests \
  --gtest_filter='Cuda.NonTransposableMaskIsRejected:Cuda.NonFiniteInputs:Cuda.LargeColumnMajorGradientMvue:Cuda.SmallTransformsMatchTheCpu' \
  >"$OUT_DIR/sanitizer.log" 2>&1; echo "compute-sanitizer exit code $?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT_DIR/sanitizer.log" | head
step "bench transforms"
build-dev/sparse24 bench transforms "$@" 2>&1 | tee "$OUT_DIR/bench_transforms.md"
step "PyTorch baselines"
python3 bench/torch_baselines.py "$@" 2>&1 | tee "$OUT_DIR/bench_torch.md"
