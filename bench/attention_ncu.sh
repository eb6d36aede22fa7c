#!/usr/bin/env bash
# Where the attention kernels stall: ncu (full set, SASS-level warp-stall sampling) of one forward
# and one backward launch of bench_attention at one shape (default T=16384, H=16, D=128, B·T=32768),
# then a summary: throughputs, stall reasons, and the SASS lines holding most stall samples.
# Needs build/bench/bench_attention; reports and logs in $OUT (or /tmp/attn-ncu).
set -uo pipefail
cd "$(dirname "$0")/.."
T=${T:-16384} H=${H:-16} D=${D:-128} TOKENS=${TOKENS:-32768}
out=${OUT:-/tmp/attn-ncu}
mkdir -p "$out"
for k in fa_fwd_kernel fa_bwd_kernel; do
  # skip the warm-up launches; one launch, replayed per metric pass
  ncu --set full --import-source no --kernel-name regex:"$k" --launch-skip "${SKIP:-2}" --launch-count 1 \
    -o "$out/$k" -f build/bench/bench_attention "$H" "$D" "$TOKENS" "$T" > "$out/$k.log" 2>&1 ||
    { echo "ncu $k failed:"; tail -5 "$out/$k.log"; continue; }
  ncu --import "$out/$k.ncu-rep" --page details > "$out/$k-details.txt" 2>&1
  ncu --import "$out/$k.ncu-rep" --page source --print-source sass --csv > "$out/$k-sass.csv" 2>&1
  echo "== $k (T $T, H $H, D $D)"
  grep -E "Duration|Registers Per Thread|Achieved Occupancy|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|L1/TEX Hit|L2 Hit|Local (Load|Store)|Bank Conflicts|est(imated)? ?speedup" "$out/$k-details.txt" | head -40
  python3 - "$out/$k-sass.csv" <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
head = next((i for i, r in enumerate(rows) if any("Source" == c for c in r)), None)
if head is None:
    sys.exit("no SASS table in " + sys.argv[1])
cols = rows[head]
def col(name):
    return next((i for i, c in enumerate(cols) if name in c), None)
src, samp = col("Source"), col("Warp Stall Sampling (All")
if samp is None:
    sys.exit("no stall-sampling column: " + ", ".join(cols[:20]))
def num(s):
    try: return float(s.replace(",", ""))
    except ValueError: return 0.0
lines = [(num(r[samp]), r[src]) for r in rows[head + 1:] if len(r) > max(src, samp)]
total = sum(s for s, _ in lines) or 1
ops = collections.Counter()
for s, text in lines:
    ops[text.split()[0].split(".")[0] if text.split() else "?"] += s
print(f"  stall samples {total:.0f}; by opcode: " + ", ".join(f"{o} {100 * s / total:.1f}%" for o, s in ops.most_common(10)))
for s, text in sorted(lines, reverse=True)[:25]:
    print(f"  {100 * s / total:5.1f}%  {text[:100]}")
PY
done
