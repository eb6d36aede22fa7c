#!/usr/bin/env bash
# One device call: build, then the GLA GPU tests, the kernel benchmark (bench/gla_gpu.sh) or the
# training benchmark (bench/train_gla_gpu.sh). Logs under $OUT.
# MODE=test (tests only), bench (kernel bench only), all (tests + kernel bench, default), train
# (training bench only), everything (tests, kernel bench, training bench).
# CROSSCHECK=1: bench/gla_crosscheck.py (linnet op vs fla vs the CPU float64 reference); NCU=1: ncu
# per kernel; MEMCHECK=SECONDS: compute-sanitizer on test_gpu_gla; SAVE_TRITON=1: keep fla's kernels.
# Installs the fla wheels from .whl/ when fla is not importable. Every step's time limit is cut to
# what is left before DEADLINE (seconds, default 570: the device's 600 s less the copy back), so
# the Triton cache is saved even when fla's cold compile (minutes) eats the call; rerun on the warm
# machine, or carry the saved cache, to finish. The device returns at most 8 files: past that the
# logs go into one logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gla_out}
mkdir -p "$OUT"
MODE=${MODE:-all}
DEADLINE=${DEADLINE:-570}
# limit STEP_SECONDS: the step's own limit, cut to what is left before the deadline (30 s kept back)
limit() { local left=$((DEADLINE - SECONDS - 30)); echo $(( $1 < left ? $1 : (left > 1 ? left : 1) )); }
has() { case " $MODE " in *" $1 "*) return 0 ;; esac; [ "$MODE" = everything ]; }
case "$MODE" in all) MODE="test bench" ;; esac
. scripts/device-deps.sh # the carried .debs
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$PWD/build/triton-cache
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
targets=""
has test && targets="$targets test_gpu_gla"
has bench && targets="$targets bench_gla"
{ has train || [ -n "${CROSSCHECK:-}" ]; } && targets="$targets linnet"
[ -n "${NCU:-}" ] && targets="$targets bench_gla"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > "$OUT/cmake.txt" 2>&1 || { tail -20 "$OUT/cmake.txt"; exit 1; }
cmake --build build -j 16 --target $targets > "$OUT/build.txt" 2>&1 || { grep -B2 -A8 error "$OUT/build.txt" | head -60; exit 1; }
if has test; then
  timeout "$(limit 150)" build/tests/test_gpu_gla > "$OUT/test_gpu_gla.txt" 2>&1
  echo "test_gpu_gla rc=$?"
  grep -E "rel. error .* > |FAIL|PASSED|rror:" "$OUT/test_gpu_gla.txt" | head -60
  if [ -n "${MEMCHECK:-}" ]; then
    timeout "$(limit "$MEMCHECK")" compute-sanitizer --tool memcheck --leak-check no build/tests/test_gpu_gla > "$OUT/memcheck-gla.txt" 2>&1
    echo "memcheck test_gpu_gla rc=$?: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck-gla.txt")"
  fi
fi
if [ -n "${CROSSCHECK:-}" ]; then # linnet op gla (CUDA) and fla chunk_gla against the float64 CPU recurrence
  timeout "$(limit 300)" python3 bench/gla_crosscheck.py > "$OUT/crosscheck.txt" 2>&1; echo "crosscheck rc=$?"; cat "$OUT/crosscheck.txt" | tail -12
fi
if [ -n "${NCU:-}" ]; then # per-kernel times and throughput at T = 4096: the forward's three kernels, the backward's
  for k in "chunk_state|scan_kernel|fwd_kernel 3" "bwd_kernel 1"; do
    set -- $k
    timeout "$(limit 120)" ncu --clock-control none --launch-count "$2" --kernel-name regex:"$1" \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
      build/bench/bench_gla 16 128 32768 4096 >> "$OUT/ncu.txt" 2>&1
  done
  grep -E "^  [a-z_(]|Duration|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|Eligible Warps|No Eligible|estimated speedup|Stall" "$OUT/ncu.txt" | head -120
fi
if has bench; then
  peer=$(limit 480)
  OUT_DIR="$OUT" PEER_TIMEOUT=$((peer > 40 ? peer - 30 : 10)) timeout "$peer" bench/gla_gpu.sh > "$OUT/bench.txt" 2>&1
  echo "bench rc=$?"
  tail -30 "$OUT/bench.txt"
fi
if has train; then
  OUT_DIR="$OUT" timeout "$(limit 560)" bench/train_gla_gpu.sh > "$OUT/train.txt" 2>&1
  echo "train rc=$?"
  tail -30 "$OUT/train.txt"
fi
# keep fla's compiled kernels for the next call: copy $OUT/triton-cache.tgz.part-* to .carry-triton/ and carry it
if [ -d build/triton-cache ] && [ -n "${SAVE_TRITON:-}" ]; then
  tar -czf - -C build triton-cache | split -b 15M - "$OUT/triton-cache.tgz.part-" && ls -la "$OUT"/triton-cache.tgz.part-*
fi
if [ "$(find "$OUT" -type f | wc -l)" -gt 8 ]; then
  (cd "$OUT" && find . -type f ! -name 'triton-cache.tgz.part-*' -print0 | tar -czf /tmp/logs.tgz --null -T - &&
    find . -mindepth 1 ! -name 'triton-cache.tgz.part-*' -delete && mv /tmp/logs.tgz .)
fi
