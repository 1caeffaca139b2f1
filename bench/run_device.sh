#!/usr/bin/env bash
# One call on the GPU machine: build with CUDA (sm_90a), run the CPU and GPU test suites, the GPU
# suite again under compute-sanitizer, then benchmarks.
# The GPU machine has no internet: carry `.deps` (scripts/setup-deps.sh fills it here: the CUTLASS
# headers in .deps/cutlass; GoogleTest's sources: mkdir -p .deps && cp -r /usr/src/googletest
# .deps/; leave .deps/cusparselt behind, too big to carry: the machine's PyTorch has cuSPARSELt).
# Usage, from the repository root:
#   bench/run_device.sh [--bench transforms|gemm|ffn|all|none|wgmma] [--filter GTEST_FILTER] [--explore]
#                       [--no-native] [--no-cpu-tests] [--no-sanitizer] [--prebuilt] [bench args...]
# --prebuilt runs the binaries that bench/build_for_device.sh built on the development machine and
# the call carried (build-carry/): no build here (--explore and --no-native do not apply; the
# build script takes --explore), no CPU suite;
# --explore also builds the candidate GEMM kernels of bench/sm90_explore.def (SM90_EXPLORE_ONLY, a
# regex of kernel names such as 'x_f16_a|x_f16_b', builds only those: fewer to compile);
# --no-native builds without CUTLASS (in build-dev-no-native, a few minutes faster): kAuto's 2:4
# products then run expanded to dense, as on a GPU without the native kernels (not Hopper);
# --no-cpu-tests and --no-sanitizer skip the CPU suite (CI runs it) and the compute-sanitizer run;
# --bench wgmma only builds and runs bench/wgmma_ceiling.cu (the tensor cores' own rate, dense and
# 2:4, operands in shared memory: what any GEMM kernel can reach; and what each SM takes in from
# L2 through TMA copies and loads), nothing else.
# Logs go to $OUT when set (the device tool's output folder), else ./out/device.
# Rebuilding by hand on a warm machine (cmake --build build-dev): a file that the device tool's
# copy of the working tree replaced can keep an older timestamp than its object, and ninja then
# skips it; touch the changed sources first, or a timing measures the old code.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-out/device}"
mkdir -p "$OUT_DIR"
export PATH=/usr/local/cuda/bin:$PATH
nproc_=$(nproc)
step() { echo; echo "== $*"; }
bench=all
filter='*'
explore=OFF
sanitizer=1
cpu_tests=1
build=build-dev
prebuilt=0
native=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bench) bench=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    --explore) explore=ON; shift ;;
    --no-native) build=build-dev-no-native; native=(-DSPARSE24_CUTLASS_DIR=/nonexistent); shift ;;
    --no-sanitizer) sanitizer=0; shift ;;
    --no-cpu-tests) cpu_tests=0; shift ;;
    --prebuilt) build=build-carry; prebuilt=1; cpu_tests=0; shift ;;
    *) break ;;
  esac
done
cusparselt=$(python3 -c "import nvidia.cusparselt as m; print(m.__path__[0])" 2>/dev/null || true)

if [ "$bench" = wgmma ]; then  # the tensor cores' ceiling alone: no library build, no tests
  step "GPU"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
  step "bench/wgmma_ceiling.cu"
  mkdir -p build-wgmma
  nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
    -I.deps/cutlass/include bench/wgmma_ceiling.cu -o build-wgmma/wgmma_ceiling || exit 1
  build-wgmma/wgmma_ceiling 2>&1 | tee "$OUT_DIR/bench_wgmma.md"
  exit "${PIPESTATUS[0]}"
fi

step "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ "$prebuilt" = 1 ]; then
  step "prebuilt binaries (bench/build_for_device.sh)"
  [ -x "$build/sparse24" ] && [ -x "$build/tests/sparse24_gpu_tests" ] ||
    { echo "no $build/sparse24 or $build/tests/sparse24_gpu_tests: carry both"; exit 1; }
  export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib:${cusparselt:+$cusparselt/lib:}${LD_LIBRARY_PATH:-}"
else
  step "configure + build"
  cmake -S . -B "$build" -G Ninja -DSPARSE24_CUDA=ON "${native[@]}" -DSPARSE24_GTEST_SOURCE="${GTEST_SOURCE:-$PWD/.deps/googletest}" \
    ${cusparselt:+-DSPARSE24_CUSPARSELT_DIR=$cusparselt} -DSPARSE24_SM90_EXPLORE=$explore \
    -DSPARSE24_SM90_EXPLORE_ONLY="${SM90_EXPLORE_ONLY:-}" \
    >"$OUT_DIR/configure.log" 2>&1 || { tail -30 "$OUT_DIR/configure.log"; exit 1; }
  cmake --build "$build" -j"$nproc_" >"$OUT_DIR/build.log" 2>&1 || { grep -E "error" -A5 "$OUT_DIR/build.log" | head -60; exit 1; }
fi
$build/sparse24 info
if [ "$cpu_tests" = 1 ]; then
  step "CPU tests"
  $build/tests/sparse24_tests >"$OUT_DIR/cpu_tests.log" 2>&1; tail -3 "$OUT_DIR/cpu_tests.log"
fi
step "GPU tests"
$build/tests/sparse24_gpu_tests --gtest_filter="$filter" 2>&1 | tee "$OUT_DIR/gpu_tests.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error" | head -40
if [ "$sanitizer" = 1 ]; then
  step "GPU tests under compute-sanitizer (memcheck)"
  SPARSE24_NO_CUDA_CACHE=1 compute-sanitizer --tool memcheck --error-exitcode 3 $build/tests/sparse24_gpu_tests \
    --gtest_filter='Cuda.NonTransposableMaskIsRejected:Cuda.InvalidGroupCodesAreNamedLikeTheCpu:Cuda.TallTilesOfAGivenMaskMatchTheCpu:Cuda.NonFiniteInputs:Cuda.LargeColumnMajorGradientMvue:Cuda.SmallTransformsMatchTheCpu:CudaGemm.AllocatingCallsRunOnTheGpu:CudaGemm.UnsupportedCallsSayWhy:CudaGemm.*BiasesOfOneShape:CudaGemm.CusparseltPlanObjectMatchesTheCpu:CudaGemm.AutoFallsBackToTheExpandedProduct:CudaOptim.*:CudaLayers.*:CudaNn.*:CudaCast.*' \
    >"$OUT_DIR/sanitizer.log" 2>&1; echo "compute-sanitizer exit code $?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT_DIR/sanitizer.log" | head
fi
if [ "$bench" = transforms ] || [ "$bench" = all ]; then
  step "bench transforms"
  $build/sparse24 bench transforms "$@" 2>&1 | tee "$OUT_DIR/bench_transforms.md"
  step "PyTorch baselines"
  python3 bench/torch_baselines.py "$@" 2>&1 | tee "$OUT_DIR/bench_torch.md"
fi
if [ "$bench" = gemm ] || [ "$bench" = all ]; then
  step "bench gemm"
  $build/sparse24 bench gemm "$@" 2>&1 | tee "$OUT_DIR/bench_gemm.md"
fi
if [ "$bench" = ffn ] || [ "$bench" = all ]; then
  step "bench ffn"
  $build/sparse24 bench ffn "$@" 2>&1 | tee "$OUT_DIR/bench_ffn.md"
  step "PyTorch dense FFN"
  python3 bench/torch_ffn.py "$@" 2>&1 | tee "$OUT_DIR/bench_torch_ffn.md"
fi
