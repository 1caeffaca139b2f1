#!/usr/bin/env bash
# Installs what building and testing sparse24 needs, from Debian's packages, if it is missing:
# a C++17 compiler, CMake, Ninja, GoogleTest, OpenMP and ccache. A CUDA toolkit is optional
# (found on PATH or in /usr/local/cuda); without one the CPU-only library is built.
set -euo pipefail

need=()
command -v g++ >/dev/null || need+=(g++)
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v ccache >/dev/null || need+=(ccache)
[ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
echo '#include <omp.h>' | g++ -fopenmp -x c++ -fsyntax-only - 2>/dev/null || need+=(libgomp1)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA toolkit found in /usr/local/cuda (add /usr/local/cuda/bin to PATH to use it)"
fi
