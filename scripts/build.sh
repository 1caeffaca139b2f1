#!/usr/bin/env bash
# Configures and builds sparse24 into ./build (CUDA backend when nvcc 12+ is on PATH). Warnings
# are errors in CI (CI=true), not for users, whose newer compilers may warn about more.
# Extra arguments go to CMake's configure step, e.g. scripts/build.sh -DSPARSE24_CUDA=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
werror=OFF
[ "${CI:-}" = true ] && werror=ON
cmake -S . -B build -G Ninja -DSPARSE24_WERROR=$werror "$@" >/dev/null
cmake --build build -j"$(nproc)"
