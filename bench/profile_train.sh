#!/usr/bin/env bash
# Where a training step's GPU time goes: ncu over `linnet train RECIPE`, the kernels ranked by total
# time (share, microseconds, calls). Run on the device after building
# linnet:  bash bench/profile_train.sh recipes/gla-small.yaml [STEPS]   (log: $OUT/profile-*.txt)
set -uo pipefail
cd "$(dirname "$0")/.."
recipe=$1 steps=${2:-8} out=${OUT:-/tmp/profile}
name=$(basename "$recipe" .yaml)
mkdir -p "$out"
run=$(mktemp -d)
# ncu, one metric, kernels SKIP .. SKIP+COUNT (past the first step's start-up): the GPU time per
# kernel without the profiler's replay overhead in it (nsys is not on the device machine)
skip=${SKIP:-1500} count=${COUNT:-1500}
ncu --clock-control none --metrics gpu__time_duration.sum --launch-skip "$skip" --launch-count "$count" --csv \
  build/linnet train "$recipe" --out "$run" --no-sample --set train.steps="$steps" > "$run/ncu.csv" 2> "$run/train.txt" ||
  { tail -5 "$run/train.txt" "$run/ncu.csv"; exit 1; }
python3 - "$run/ncu.csv" > "$out/profile-$name.txt" <<'PY'
import csv, sys, collections
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
t, n = collections.Counter(), collections.Counter()
for r in csv.DictReader(lines):
    if r.get("Metric Name") == "gpu__time_duration.sum":
        scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1, "us": 1, "msecond": 1e3, "ms": 1e3}[r["Metric Unit"]]
        v = float(r["Metric Value"].replace(",", "")) * scale  # microseconds
        k = r["Kernel Name"].split("(")[0][:100]
        t[k] += v; n[k] += 1
total = sum(t.values())
print(f"{'share':>6} {'us':>10} {'calls':>6}  kernel   ({sum(n.values())} kernels, {total / 1e3:.1f} ms)")
for k, v in t.most_common(40):
    print(f"{100 * v / total:5.1f}% {v:10.1f} {n[k]:>6}  {k}")
PY
tail -3 "$run/train.txt"; cat "$out/profile-$name.txt"
rm -rf "$run"
