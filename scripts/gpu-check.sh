#!/usr/bin/env bash
# On the lent GPU machine (device tool): unpack the carried .deps, build with CUDA, run the test
# suites, and train a few steps of the tiny recipe. Logs go to $OUT (or ./gpu-logs).
# Usage there: . .deps/unpack-debs.sh; bash scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-logs}
mkdir -p "$out"
# the carried .pc files say prefix=/usr; point them at where the .debs were unpacked
if [ -d /opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig ]; then
  sed -i 's|=/usr|=/opt/deps/usr|g' /opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
  export PKG_CONFIG_PATH=/opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nvcc --version | tail -1;
  for p in yaml-0.1 libzstd libcjson openblas hdf5 cmocka; do echo "$p: $(pkg-config --modversion $p 2>&1)"; done; } \
  2>&1 | tee "$out/env.txt"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > "$out/cmake.txt" 2>&1 || { tail -30 "$out/cmake.txt"; exit 1; }
cmake --build build -j 16 > "$out/build.txt" 2>&1 || { tail -30 "$out/build.txt"; exit 1; }
grep -E "CUDA backend" "$out/cmake.txt"
bash scripts/fetch-corpus.sh >/dev/null 2>&1 || echo "no bible-kjv here: skipping corpus steps"
(cd build && ctest --output-on-failure -j 8) 2>&1 | tee "$out/ctest.txt" | tail -15
if [ -f data/corpus/kjv.txt ]; then
  build/linnet prep --tokenizer bytes --out data/kjv data/corpus/kjv.txt
  build/linnet train recipes/tiny.yaml --out /tmp/gpu-run --set train.steps=20 --set train.log_every=10 --no-sample \
    2>&1 | tee "$out/train.txt"
fi
