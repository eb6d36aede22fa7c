#!/usr/bin/env bash
# The main job on a fresh machine: install, build, prepare the bundled corpus (the King James
# Bible, from Debian's bible-kjv), train the tiny default model, then print a sample from it.
# Running it again continues from the newest checkpoint in runs/tiny.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
corpus=$(bash scripts/fetch-corpus.sh)
[ -f data/kjv/val-00000.lnshard ] || build/linnet prep --tokenizer bytes --out data/kjv "$corpus"
build/linnet train recipes/tiny.yaml --out runs/tiny --resume auto "$@"
