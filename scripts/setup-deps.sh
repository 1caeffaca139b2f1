#!/usr/bin/env bash
# Installs what building and testing sparse24 needs, from Debian's packages, if it is missing:
# a C++17 compiler (with OpenMP), CMake, Ninja, GoogleTest and ccache. A CUDA toolkit (12 or
# newer) is optional: found on PATH, it adds the CUDA backend; without one the build is CPU-only.
set -euo pipefail

need=()
command -v g++ >/dev/null || need+=(g++)
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v ccache >/dev/null || need+=(ccache)
[ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null; then
    SUDO=(sudo)
  else
    echo "setup: missing ${need[*]}; as root, run: apt-get update && apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA toolkit found in /usr/local/cuda (add /usr/local/cuda/bin to PATH to use it)"
fi

# The sparse GEMM backends of a CUDA build, from PyPI into .deps/ (git-ignored): the CUTLASS
# headers (nvidia-cutlass, a pure-Python wheel that carries the C++ tree; 6 MB) and cuSPARSELt
# (nvidia-cusparselt-cu13, pinned to the version of our GPU machines; 170 MB). Without them the
# build still works and says which backend is off. SPARSE24_NO_FETCH=1 skips this.
fetch_wheel() {  # fetch_wheel <package==version> <dest> <member prefix>=<folder> ...
  local spec=$1 dest=$2
  shift 2
  [ "$(cat "$dest/.complete" 2>/dev/null)" = "$spec" ] && return 0  # this version is there
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "setup: no pip (python3 -m pip) to fetch $spec; its GEMM backend stays off" >&2
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  echo "setup: fetching $spec into $dest"
  if ! python3 -m pip download -q --no-deps --retries 1 --timeout 30 "$spec" -d "$tmp" >/dev/null ||
     ! python3 - "$tmp" "$dest.partial" "$@" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest, maps = sys.argv[1], sys.argv[2], [m.split("=", 1) for m in sys.argv[3:]]
wheels = glob.glob(os.path.join(tmp, "*.whl"))
if len(wheels) != 1:
    sys.exit("expected one wheel, found %d" % len(wheels))
shutil.rmtree(dest, ignore_errors=True)
with zipfile.ZipFile(wheels[0]) as z:
    for name in z.namelist():
        for prefix, folder in maps:
            if name.startswith(prefix) and not name.endswith("/"):
                out = os.path.join(dest, folder, name[len(prefix):])
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with z.open(name) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
PY
  then
    echo "setup: could not fetch $spec; its GEMM backend stays off" >&2
    rm -rf "$tmp" "$dest.partial"
    return 0
  fi
  rm -rf "$dest" "$tmp"
  mv "$dest.partial" "$dest"
  echo "$spec" >"$dest/.complete"
}
if command -v nvcc >/dev/null && [ "${SPARSE24_NO_FETCH:-}" != 1 ]; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  fetch_wheel nvidia-cutlass==4.2.0.0 "$root/.deps/cutlass" \
    cutlass_library/source/include/=include
  cuda_major=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
  if [ "$cuda_major" = 13 ]; then  # the wheel is built for CUDA 13
    fetch_wheel nvidia-cusparselt-cu13==0.8.0 "$root/.deps/cusparselt" \
      nvidia/cusparselt/include/=include nvidia/cusparselt/lib/=lib
  else
    echo "setup: nvcc is CUDA ${cuda_major:-?}, the pinned cuSPARSELt wheel is for CUDA 13: cuSPARSELt backend off" >&2
  fi
fi
