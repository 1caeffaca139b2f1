#!/usr/bin/env bash
# Builds sparse24 and runs every test (GPU tests report themselves skipped without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh "$@"
ctest --test-dir build --output-on-failure -j"$(nproc)"
