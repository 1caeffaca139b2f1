#!/usr/bin/env bash
# Configures and builds sparse24 into ./build (CUDA backend when nvcc is on PATH).
# Extra arguments go to CMake's configure step, e.g. scripts/build.sh -DSPARSE24_CUDA=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
cmake -S . -B build -G Ninja -DSPARSE24_WERROR=ON "$@" >/dev/null
cmake --build build -j"$(nproc)"
