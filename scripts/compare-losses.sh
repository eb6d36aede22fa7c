#!/usr/bin/env bash
# Proof that a change kept behaviour: trains the same recipes with two linnet binaries and compares
# the per-step losses and gradient norms bit for bit (metrics.jsonl less tokens/s).
#   scripts/compare-losses.sh BIN_BEFORE BIN_AFTER [DEVICE [STEPS [RECIPE...]]]
# DEVICE cpu (default) or cuda; STEPS 20; recipes: tiny and gla-tiny. Prints one line per recipe,
# "identical" or the first step that differs, and the median tokens/s of each binary's second half
# of steps (one run each: a guide, not a benchmark); exits 1 when any differs. On a GPU, BEFORE
# runs twice when they differ, so a difference the kernels' own nondeterminism explains shows so.
set -uo pipefail
before=$1 after=$2 device=${3:-cpu} steps=${4:-20}
shift $(($# < 4 ? $# : 4))
recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=(recipes/tiny.yaml recipes/gla-tiny.yaml)
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
losses() { # BIN RECIPE NAME: trains, prints the metrics file without the timings
  "$1" train "$2" --out "$work/$3" --no-sample --set train.steps="$steps" --set train.log_every="$steps" \
    --set train.device="$device" --set eval.every=0 --set ckpt.every=0 > "$work/$3.log" 2>&1 ||
    { echo "compare-losses: $1 $2 failed: $(tail -1 "$work/$3.log")" >&2; return 1; }
  sed 's/,"tokens_per_s":[^,}]*//' "$work/$3/metrics.jsonl" > "$work/$3.losses"
}
worst() { # A B: the largest relative difference of the losses step by step
  paste -d' ' <(sed -n 's/.*"loss":\([^,]*\).*/\1/p' "$work/$1.losses") <(sed -n 's/.*"loss":\([^,]*\).*/\1/p' "$work/$2.losses") |
    awk '{d = ($1 - $2) / ($1 != 0 ? $1 : 1); d = d < 0 ? -d : d; if (d > m) m = d} END {printf "%.2e", m}'
}
speed() { # NAME: median tokens/s over the second half of the steps
  sed -n 's/.*"tokens_per_s":\([0-9.]*\).*/\1/p' "$work/$1/metrics.jsonl" | tail -n $((steps / 2)) | sort -g |
    awk '{v[NR] = $1} END {printf "%.0f", NR ? v[int((NR + 1) / 2)] : 0}'
}
status=0
for r in "${recipes[@]}"; do
  name=$(basename "$r" .yaml)
  losses "$before" "$r" "$name-before" && losses "$after" "$r" "$name-after" || { status=1; continue; }
  rate="tokens/s $(speed "$name-before") before, $(speed "$name-after") after"
  if cmp -s "$work/$name-before.losses" "$work/$name-after.losses"; then
    echo "$name ($device, $steps steps): identical losses and gradient norms; $rate"
    continue
  fi
  status=1
  echo "$name ($device): differs, losses by up to $(worst "$name-before" "$name-after") relative ($rate); first lines:"
  diff "$work/$name-before.losses" "$work/$name-after.losses" | head -3
  if [ "$device" = cuda ] && losses "$before" "$r" "$name-again"; then
    cmp -s "$work/$name-before.losses" "$work/$name-again.losses" && echo "  (BEFORE twice: identical)" ||
      echo "  (BEFORE twice differs too, by up to $(worst "$name-before" "$name-again"): the kernels are not deterministic here)"
  fi
done
exit $status
