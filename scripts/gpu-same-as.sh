#!/usr/bin/env bash
# On the GPU machine: the proof that this tree behaves as an older one (a refactor's proof). Builds
# linnet from both (BASE: a source tree, e.g. `git archive REV | tar -x -C .base`, carried), then
# compares every kernel's SASS (scripts/same-sass.py) and the per-step losses on the GPU of tiny,
# gla-tiny and hybrid-tiny (fp32) and gla-small and gpt2-small (bf16) (scripts/compare-losses.sh).
# Usage there: . .deps/unpack-debs.sh; bash scripts/gpu-same-as.sh .base   (logs in $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
base=$(cd "$1" && pwd)
out=${OUT:-gpu-logs}
mkdir -p "$out"
. scripts/device-deps.sh
for tree in "$base" "$PWD"; do
  (cd "$tree" && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > "$out/cmake-$(basename "$tree").txt" 2>&1 &&
    cmake --build build -j 16 --target linnet > "$out/build-$(basename "$tree").txt" 2>&1) ||
    { echo "gpu-same-as: building $tree failed"; tail -20 "$out/build-$(basename "$tree").txt"; exit 1; }
done
python3 scripts/same-sass.py "$base/build" build 2>&1 | tee "$out/same-sass.txt"
bash scripts/compare-losses.sh "$base/build/linnet" "$PWD/build/linnet" cuda 20 recipes/tiny.yaml \
  recipes/gla-tiny.yaml recipes/hybrid-tiny.yaml recipes/gla-small.yaml recipes/gpt2-small.yaml 2>&1 | tee "$out/losses.txt"
