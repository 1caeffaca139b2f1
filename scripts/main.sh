#!/usr/bin/env bash
# The main job, on its embedded default: builds sparse24, then demonstrates the command-line tool
# on a generated GPT-2-small weight (3072 x 768): every pruning method, the mask and the checks.
# Outputs land in ./out/demo. (When the trainer lands, this runs `sparse24 train` instead.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
S=build/sparse24
D=out/demo
mkdir -p "$D"

echo "== sparse24 info"
$S info
echo
echo "== a random 3072 x 768 weight (the shape of GPT-2 small's first FFN linear)"
$S randn "$D/w.npy" --rows 3072 --cols 768 --seed 1
echo
echo "== pruning it with every method"
$S prune "$D/w.npy" "$D/w_magnitude.npy" --method magnitude
$S prune "$D/w.npy" "$D/w_mvue.npy" --method mvue --seed 7
$S prune "$D/w.npy" "$D/w_soft.npy" --method soft
$S prune "$D/w.npy" "$D/w_transposable.npy" --method transposable --mask-out "$D/mask_transposable.npy"
$S prune "$D/w.npy" "$D/w_mask_e4m3.npy" --method mask --mask "$D/mask_transposable.npy" \
  --dtype e4m3 --scale 0.01 --saturate
echo
echo "== checking the results"
$S check "$D/w_magnitude.npy" || true
$S check "$D/w_transposable.npy"
$S check "$D/w.npy" || echo "(the dense input is not 2:4: exit code 1, as expected)"
echo
echo "done: outputs in $D"
