#!/usr/bin/env bash
# linnet's training throughput on one recipe: `linnet train RECIPE` for STEPS steps (default 30),
# its log's last lines, then `linnet tokens_per_s N` and `RECIPE N tok/s`: the median of the
# steps' tokens/s after the first (which holds start-up). Extra arguments go to linnet train
# (e.g. --set train.dtype=fp32). The run's checkpoint (GiBs) goes to a temporary directory.
# Usage: bench/linnet_tps.sh RECIPE [STEPS] [ARGS...]   (LINNET_LOG=FILE keeps the whole log;
# LINNET_LAUNCH="mpirun -np 2 ..." runs it under that launcher)
set -uo pipefail
cd "$(dirname "$0")/.."
recipe=$1 steps=${2:-30}
shift $(($# < 2 ? $# : 2))
run=$(mktemp -d)
log=${LINNET_LOG:-$run/train.txt}
# shellcheck disable=SC2086 # the launcher is a command line
timeout "${LINNET_TIMEOUT:-180}" ${LINNET_LAUNCH:-} build/linnet train "$recipe" --out "$run/out" --no-sample --set train.steps="$steps" \
  "$@" > "$log" 2>&1
echo "linnet rc=$?"; grep -m1 "parameters" "$log"; tail -3 "$log"
tps=$(python3 -c "
import json
rows = [json.loads(l) for l in open('$run/out/metrics.jsonl') if 'tokens_per_s' in l]
v = sorted(r['tokens_per_s'] for r in rows[1:]) or [float('nan')]
print(f'{v[len(v) // 2]:.0f}')" 2>/dev/null || echo nan)
echo "linnet tokens_per_s $tps"
echo "$(basename "$recipe" .yaml) $tps tok/s"
rm -rf "$run"
