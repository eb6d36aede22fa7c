#!/usr/bin/env bash
# The main job on a fresh machine: install, build, prepare the bundled corpus (the King James
# Bible, from Debian's bible-kjv), train the tiny default model, print a sample from it, then draw
# its training curves to runs/tiny/plot.png.
# Running it again continues from the newest checkpoint in runs/tiny.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
corpus=$(bash scripts/fetch-corpus.sh)
[ -f data/kjv/val-00000.lnshard ] || build/linnet prep --tokenizer bytes --out data/kjv "$corpus"
build/linnet train recipes/tiny.yaml --out runs/tiny --resume auto "$@"
if command -v gnuplot >/dev/null; then
  build/linnet plot runs/tiny --out runs/tiny/plot.png --title "recipes/tiny.yaml (runs/tiny)"
  echo "quickstart: training curves in runs/tiny/plot.png"
else
  echo "quickstart: gnuplot not found, plot skipped (apt-get install gnuplot-nox, then: build/linnet plot runs/tiny --out runs/tiny/plot.png)"
fi
