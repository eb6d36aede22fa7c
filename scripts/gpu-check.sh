#!/usr/bin/env bash
# On the lent GPU machine (device tool): unpack the carried .deps, build with CUDA, run every test
# suite (the GPU ones compare each kernel with the CPU path), compute-sanitizer memcheck on the
# kernel suites, and the benchmarks. Logs go to $OUT (or ./gpu-logs).
# Carry .deps and data/corpus. Usage there: . .deps/unpack-debs.sh; bash scripts/gpu-check.sh [--bench | --bench-attention | --bench-train]
# SKIP_CPU=1 leaves out the CPU suites (CI runs them); SKIP_MEMCHECK=1 the memcheck; MEMCHECK="test_gpu_attention
# test_gpu_gla" memchecks only the suites named.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-logs}
mkdir -p "$out"
# the carried .pc files say prefix=/usr; point them at where the .debs were unpacked
. scripts/device-deps.sh # the carried .debs
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/env.txt"
[ -f data/corpus/kjv.txt ] || echo "gpu-check: data/corpus/kjv.txt is missing (carry data/corpus): test_gpu_train needs it"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > "$out/cmake.txt" 2>&1 || { tail -30 "$out/cmake.txt"; exit 1; }
cmake --build build -j 16 > "$out/build.txt" 2>&1 || { grep -E "error" "$out/build.txt" | head -30; exit 1; }
[ -n "${SKIP_CPU:-}" ] || { (cd build && ctest --output-on-failure -j 4 -LE gpu) > "$out/ctest-cpu.txt" 2>&1; tail -3 "$out/ctest-cpu.txt"; }
# suites that start the binary find it as ctest would tell them
export LINNET_BIN=$PWD/build/linnet LINNET_SOURCE_DIR=$PWD
for t in build/tests/test_gpu_*; do
  t0=$SECONDS; echo "== $t"
  timeout 300 "$t" 2>&1 | grep -vE '^\[ (RUN|      OK) ' | tee -a "$out/gpu-tests.txt" | grep -E "rel. error .* > |FAILED|PASSED|ERROR|skip" | head -40
  echo "   ($((SECONDS - t0)) s, rc ${PIPESTATUS[0]})"
done
if [ -z "${SKIP_MEMCHECK:-}" ] && command -v compute-sanitizer >/dev/null; then
  # every kernel suite (the training suite is left out: it runs whole models, too slow under memcheck)
  for t in build/tests/test_gpu_*; do
    case "$t" in *test_gpu_train*) continue ;; esac
    [ -z "${MEMCHECK:-}" ] || case " $MEMCHECK " in *" $(basename "$t") "*) ;; *) continue ;; esac
    timeout 300 compute-sanitizer --tool memcheck --leak-check no "$t" > "$out/memcheck-$(basename "$t").txt" 2>&1
    echo "memcheck $(basename "$t"): $(grep -E 'ERROR SUMMARY' "$out/memcheck-$(basename "$t").txt")"
  done
fi
case "${1:-}" in
  --bench) # attention at every length and the GPT-2 shape, then GPT-2-small training, each against PyTorch
    LENGTHS=${LENGTHS:-"4096 16384 65536"} bash bench/attention_gpu.sh 2>&1 | tee "$out/bench-attention.txt"
    H=12 D=64 TOKENS=32768 LENGTHS=1024 bash bench/attention_gpu.sh 2>&1 | tee -a "$out/bench-attention.txt"
    bash bench/train_gpu.sh 2>&1 | tee "$out/bench-train.txt" ;;
  --bench-attention)
    LENGTHS=${LENGTHS:-"4096 16384 65536"} bash bench/attention_gpu.sh 2>&1 | tee "$out/bench-attention.txt" ;;
  --bench-train)
    bash bench/train_gpu.sh 2>&1 | tee "$out/bench-train.txt" ;;
esac
