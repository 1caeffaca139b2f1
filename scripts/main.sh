#!/usr/bin/env bash
# The main job, on its embedded default: pre-train a small GPT-2 on an English corpus with FST
# (2:4 sparse FFN linears: forward, input gradient and weight gradient all 2:4), then its dense
# twin with the same data, seed and schedule; print both validation losses side by side and plot
# the two loss curves. Everything runs on the CPU (2 cores: about 10 minutes in all).
#
# The corpus is the text of Debian's `fortunes` package (about 2.5 MB of quotations, jokes and
# literature), concatenated in file-name order into out/corpus/fortunes.txt; the model reads it as
# bytes (vocabulary 256), the last 10% being the validation split.
#
# Options are passed to both runs, e.g. scripts/main.sh --steps 100 for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
if [ ! -d /usr/share/games/fortunes ]; then
  echo "main: installing Debian's fortunes package (the corpus)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
    echo "main: the corpus needs Debian's fortunes package; as root, run: apt-get install -y fortunes" >&2
    exit 1
  fi
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes >/dev/null
fi
scripts/build.sh

mkdir -p out/corpus
CORPUS=out/corpus/fortunes.txt
if [ ! -s "$CORPUS" ]; then
  (cd /usr/share/games/fortunes && for f in $(ls | grep -v -e '\.dat$' -e '\.u8$' -e '^ascii-art$' | sort); do
     [ -f "$f" ] && cat "$f"; done) > "$CORPUS.tmp"
  mv "$CORPUS.tmp" "$CORPUS"
fi
echo "corpus: $CORPUS ($(wc -c < "$CORPUS") bytes)"

S=build/sparse24
COMMON=(--data "$CORPUS" --layers 4 --heads 4 --channels 128 --seq 64 --batch 8 --steps 2000 --lr 2e-3
        --min-lr 2e-4 --warmup 100 --eval-every 200 --eval-batches 16 --seed 1)
rm -rf out/main/fst out/main/dense
echo
echo "== FST: 2:4 sparse FFN linears (mask every 40 steps, masked decay, last 1/6 dense)"
$S train "${COMMON[@]}" --mode fst --sparse-wgrad --dense-fraction 0.1667 --out out/main/fst --label fst "$@" | tee out/main-fst.txt
echo
echo "== dense twin"
$S train "${COMMON[@]}" --mode dense --out out/main/dense --label dense "$@" | tee out/main-dense.txt
echo
$S plot out/main/loss.png out/main/fst/metrics.jsonl out/main/dense/metrics.jsonl --y val_loss \
  --labels fst,dense --title "GPT-2 (4 layers, 128 wide) on fortunes: validation loss, FST vs dense"
$S plot out/main/train_loss.png out/main/fst/metrics.jsonl out/main/dense/metrics.jsonl --y train_loss \
  --labels fst,dense --title "GPT-2 (4 layers, 128 wide) on fortunes: training loss, FST vs dense"
echo
echo "== validation loss (bytes, lower is better)"
printf '  %-8s %s\n' "FST" "$(grep -o 'final val loss [0-9.]*' out/main-fst.txt | awk '{print $4}')"
printf '  %-8s %s\n' "dense" "$(grep -o 'final val loss [0-9.]*' out/main-dense.txt | awk '{print $4}')"
echo "plots: out/main/loss.png (validation), out/main/train_loss.png; logs: out/main/*/metrics.jsonl"
echo "sample: $S sample --checkpoint out/main/fst/checkpoint.bin --prompt 'The '"
