#!/usr/bin/env bash
# One device call: build, then the GLA GPU tests, the kernel benchmark (bench/gla_gpu.sh) or the
# training benchmark (bench/train_gla_gpu.sh). Logs under $OUT.
# MODE=test (tests only), bench (kernel bench only), all (tests + kernel bench, default), train.
# CROSSCHECK=1: bench/gla_crosscheck.py (linnet op vs fla vs the CPU float64 reference); NCU=1: ncu
# per kernel; MEMCHECK=SECONDS: compute-sanitizer on test_gpu_gla; SAVE_TRITON=1: keep fla's kernels.
# Installs the fla wheels from .whl/ when fla is not importable. Limits keep a call under 600 s:
# build + bench ~ 60 + 540 at most; rerun on the warm machine if fla's autotune was cut off (the
# Triton cache in build/triton-cache keeps what was compiled and tuned).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gla_out}
mkdir -p "$OUT"
MODE=${MODE:-all}
if ! python3 -c "import fla" 2>/dev/null && ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import fla, triton, torch; print('fla', fla.__version__, 'triton', triton.__version__, 'torch', torch.__version__)"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
# fla's compiled Triton kernels from an earlier call (carried as .carry-triton/, see the end)
if ls .carry-triton/triton-cache.tgz.part-* > /dev/null 2>&1 && [ ! -d build/triton-cache ]; then
  mkdir -p build && cat .carry-triton/triton-cache.tgz.part-* | tar -xzf - -C build
fi
targets="test_gpu_gla bench_gla"; [ "$MODE" = train ] && targets=linnet
[ -n "${CROSSCHECK:-}" ] && targets="$targets linnet"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > "$OUT/cmake.txt" 2>&1 || { tail -20 "$OUT/cmake.txt"; exit 1; }
cmake --build build -j 16 --target $targets > "$OUT/build.txt" 2>&1 || { grep -B2 -A8 error "$OUT/build.txt" | head -60; exit 1; }
if [ "$MODE" = test ] || [ "$MODE" = all ]; then
  timeout 150 build/tests/test_gpu_gla > "$OUT/test_gpu_gla.txt" 2>&1
  echo "test_gpu_gla rc=$?"
  grep -E "FAIL|failing|PASSED|FAILED|error" "$OUT/test_gpu_gla.txt" | head -60
  if [ -n "${MEMCHECK:-}" ]; then
    timeout "${MEMCHECK}" compute-sanitizer --tool memcheck --leak-check no build/tests/test_gpu_gla > "$OUT/memcheck-gla.txt" 2>&1
    echo "memcheck test_gpu_gla rc=$?: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck-gla.txt")"
  fi
fi
if [ -n "${CROSSCHECK:-}" ]; then # linnet op gla (CUDA) and fla chunk_gla against the float64 CPU recurrence
  timeout 300 python3 bench/gla_crosscheck.py > "$OUT/crosscheck.txt" 2>&1; echo "crosscheck rc=$?"; cat "$OUT/crosscheck.txt" | tail -12
fi
if [ -n "${NCU:-}" ]; then # per-kernel times and throughput of one T = 4096 fwd + bwd
  timeout 240 ncu --clock-control none --launch-count 8 --kernel-name regex:"chunk_state|scan_kernel|fwd_kernel|bwd_kernel" \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
    build/bench/bench_gla 16 128 32768 4096 > "$OUT/ncu.txt" 2>&1
  grep -E "^  [a-z_(]|Duration|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|Eligible Warps|No Eligible|estimated speedup|Stall" "$OUT/ncu.txt" | head -120
fi
if [ "$MODE" = bench ] || [ "$MODE" = all ]; then
  # without the tests there is room for a cold fla autotune
  peer=$([ "$MODE" = bench ] && echo 480 || echo 330)
  OUT_DIR="$OUT" PEER_TIMEOUT=$peer timeout $((peer + 60)) bench/gla_gpu.sh > "$OUT/bench.txt" 2>&1
  echo "bench rc=$?"
  tail -30 "$OUT/bench.txt"
fi
if [ "$MODE" = train ]; then
  OUT_DIR="$OUT" timeout 560 bench/train_gla_gpu.sh > "$OUT/train.txt" 2>&1
  echo "train rc=$?"
  tail -30 "$OUT/train.txt"
fi
# keep fla's compiled kernels for the next call: copy $OUT/triton-cache.tgz.part-* to .carry-triton/ and carry it
if [ -d build/triton-cache ] && [ -n "${SAVE_TRITON:-}" ]; then
  tar -czf - -C build triton-cache | split -b 15M - "$OUT/triton-cache.tgz.part-" && ls -la "$OUT"/triton-cache.tgz.part-*
fi
