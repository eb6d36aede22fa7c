#!/usr/bin/env bash
# On a lent machine with 2 GPUs (device tool, nvidia-h200-x2): NCCL data parallel against one GPU.
# Builds with CUDA and NCCL, trains recipes/tiny.yaml in bf16 for 20 steps on one GPU, then with
# mpirun on two at the same global batch (small buckets, so several all-reduces overlap the
# backward; then once more with two micro-steps and the default bucket size), and compares the
# per-step losses (relative 2e-2): a table, tokens/s of each run, then PASS or FAIL.
# SCALING=RECIPE then times that recipe on one GPU and on two with the same sequences per GPU
# (SCALING_BATCH of them, default 32): tokens/s of each and the scaling efficiency.
# Logs go to $OUT (or ./multi-gpu-logs).
# Usage there: bash scripts/multi-gpu-check.sh   (unpacks .deps itself when it was carried)
# DEVICE=cpu runs the same comparison on the CPU (MPI path): a dry run of the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-multi-gpu-logs}
build=${BUILD:-build}
steps=20
device=${DEVICE:-cuda}
tol=${TOL:-2e-2}
mkdir -p "$out"
# the same prelude as gpu-check.sh: unpack the carried .debs, point their .pc files at them
if [ -f .deps/unpack-debs.sh ]; then . .deps/unpack-debs.sh; fi
. scripts/device-deps.sh # the carried .debs
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
if [ "$device" = cuda ]; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader | tee "$out/env.txt"
  gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
  if [ "$gpus" -lt 2 ]; then echo "FAIL: $gpus GPU(s) visible, 2 needed"; exit 1; fi
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > "$out/cmake.txt" 2>&1 || { tail -30 "$out/cmake.txt"; exit 1; }
grep -E "linnet: (CUDA|NCCL|no NCCL)" "$out/cmake.txt"
cmake --build "$build" -j 16 --target linnet > "$out/build.txt" 2>&1 || { grep -E "error" "$out/build.txt" | head -30; exit 1; }
bin=$build/linnet
if [ ! -f data/kjv/train-00000.lnshard ]; then "$bin" prep --tokenizer bytes --out data/kjv data/corpus/kjv.txt > "$out/prep.txt" 2>&1 || exit 1; fi

common=(train recipes/tiny.yaml --set train.device=$device --set train.dtype=bf16 --set train.steps=$steps
        --set train.log_every=1 --set eval.every=0 --set ckpt.every=0 --no-sample)
mpi=(mpirun --allow-run-as-root -np 2 --bind-to none -x NCCL_NVLS_ENABLE=0 -x LD_LIBRARY_PATH)
status=0
# run NAME COMMAND...: trains into $out/NAME (fresh), the log in $out/NAME.log
run() {
  local name=$1; shift
  rm -rf "${out:?}/$name"
  echo "== $name: $*" | sed "s|$PWD/||g"
  if ! "$@" --out "$out/$name" > "$out/$name.log" 2>&1; then
    echo "FAIL: $name exited non-zero"; tail -20 "$out/$name.log"; status=1
  fi
  grep -E "^(device|gradients):" "$out/$name.log" | sort -u
}
run one "$bin" "${common[@]}"
run two "${mpi[@]}" "$bin" "${common[@]}" --set train.bucket_mb=0.25
run two_accum "${mpi[@]}" "$bin" "${common[@]}" --set train.grad_accum=2
for name in two two_accum; do
  [ "$device" = cuda ] || break
  grep -q "^gradients: NCCL" "$out/$name.log" || { echo "FAIL: $name did not take the NCCL path"; status=1; }
done

# step loss tokens_per_s, one line per step, from rank 0's metrics.jsonl
metrics() {
  awk -F'[{}:,]' '{ s = l = t = ""
    for (i = 1; i < NF; i++) { if ($i == "\"step\"") s = $(i + 1); if ($i == "\"loss\"") l = $(i + 1); if ($i == "\"tokens_per_s\"") t = $(i + 1) }
    if (l != "") print s, l, t }' "$out/$1/metrics.jsonl" 2>/dev/null
}
metrics one > "$out/one.txt"; metrics two > "$out/two.txt"; metrics two_accum > "$out/two_accum.txt"
awk -v tol="$tol" -v steps="$steps" '
  function rel(a, b) { d = a - b; if (d < 0) d = -d; return d / (b < 0 ? -b : b) }
  FILENAME ~ /\/one.txt$/ { one[$1] = $2; next }
  FILENAME ~ /\/two.txt$/ { two[$1] = $2; next }
  { accum[$1] = $2 }
  END {
    printf "%5s %12s %12s %10s %14s %10s\n", "step", "1 GPU", "2 GPUs", "rel", "2 GPUs accum2", "rel"
    bad = 0
    for (s = 1; s <= steps; s++) {
      if (!(s in one) || !(s in two) || !(s in accum)) { printf "%5d missing\n", s; bad++; continue }
      r1 = rel(two[s], one[s]); r2 = rel(accum[s], one[s])
      over = !(r1 <= tol && r2 <= tol) # NaN fails too
      bad += over
      printf "%5d %12.6f %12.6f %10.2e %14.6f %10.2e%s\n", s, one[s], two[s], r1, accum[s], r2, over ? "  <-- over " tol : ""
    }
    exit bad > 0
  }' "$out/one.txt" "$out/two.txt" "$out/two_accum.txt" | tee "$out/compare.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# tokens/s: the mean over steps 3.. (the first steps pay for cuBLAS and NCCL set-up)
for name in one two two_accum; do
  awk -v name="$name" '$1 >= 3 { sum += $3; n++ } END { if (n) printf "tokens/s %-10s %10.0f (mean of steps 3-%d)\n", name, sum / n, $1 }' "$out/$name.txt"
done | tee "$out/throughput.txt"

if [ -n "${SCALING:-}" ]; then # weak scaling: the per-GPU batch fixed, the global one doubled
  per_gpu=${SCALING_BATCH:-32}
  dev=(--set train.device=$device --set eval.every=0 --set ckpt.every=0)
  t1=$(bench/linnet_tps.sh "$SCALING" 20 "${dev[@]}" --set train.batch_size="$per_gpu" | awk '/tok\/s$/ { print $2 }')
  t2=$(LINNET_LAUNCH="${mpi[*]}" bench/linnet_tps.sh "$SCALING" 20 "${dev[@]}" \
         --set train.batch_size=$((2 * per_gpu)) | awk '/tok\/s$/ { print $2 }')
  awk -v a="$t1" -v b="$t2" -v r="$SCALING" -v n="$per_gpu" 'BEGIN {
    printf "scaling %s, %d sequences a rank (one GPU each): 1 rank %s tokens/s, 2 ranks %s, efficiency %.2f\n", r, n, a, b, b / (2 * a) }' |
    tee "$out/scaling.txt"
fi

if [ $status -eq 0 ]; then echo "PASS: 2-GPU losses match 1 GPU within $tol"; else echo "FAIL (logs in $out)"; fi
exit $status
