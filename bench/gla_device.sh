#!/usr/bin/env bash
# One device call: build the GLA test and bench, run the GPU comparison, then the benchmark.
# Logs under $OUT. MODE=test (tests only), bench (bench only), all (default).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gla_out}
mkdir -p "$OUT"
MODE=${MODE:-all}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > "$OUT/cmake.txt" 2>&1 || { tail -20 "$OUT/cmake.txt"; exit 1; }
cmake --build build -j 16 --target test_gpu_gla bench_gla > "$OUT/build.txt" 2>&1 || { grep -B2 -A8 error "$OUT/build.txt" | head -60; exit 1; }
if [ "$MODE" != bench ]; then
  timeout 150 build/tests/test_gpu_gla > "$OUT/test_gpu_gla.txt" 2>&1
  echo "test_gpu_gla rc=$?"
  grep -E "FAIL|failing|PASSED|FAILED|error" "$OUT/test_gpu_gla.txt" | head -60
fi
if [ "$MODE" != test ]; then
  OUT_DIR="$OUT" timeout 300 bench/gla_gpu.sh > "$OUT/bench.txt" 2>&1
  echo "bench rc=$?"
  tail -25 "$OUT/bench.txt"
fi
