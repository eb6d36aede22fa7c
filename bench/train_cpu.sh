#!/usr/bin/env bash
# CPU training throughput of the tiny recipe: linnet vs PyTorch (bench/train_torch.py) training
# the same model, batch and sequence length on the same cores, in one run. Prints one table.
# Usage: bench/train_cpu.sh [STEPS]   (needs build/linnet, data/kjv, and python3 with torch for the peer)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-30}
threads=${THREADS:-$(nproc)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
OPENBLAS_NUM_THREADS=$threads build/linnet train recipes/tiny.yaml --out "$out/run" --no-sample \
  --set train.steps="$steps" --set eval.every=0 --set ckpt.every=0 --set train.log_every=1000 >/dev/null
# median tokens/s over the steps after the first five (warm caches)
linnet_tps=$(python3 - "$out/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
v = sorted(r["tokens_per_s"] for r in rows[5:])
print(f"{v[len(v) // 2]:.0f}")
PY
)
# FLOPs per token: 6 x matmul parameters (forward + backward) + causal attention (3 x 2 x T x d per layer)
flops=$(python3 -c "d,L,h,kv,H,V,T=128,4,4,2,384,256,128; hd=d//h
mm = L*(d*d + 2*d*kv*hd + d*d + 3*d*H) + V*d
print(6*mm + L*3*2*T*d)")
if python3 -c "import torch" 2>/dev/null; then
  torch_tps=$(python3 bench/train_torch.py --steps "$steps" --threads "$threads" | awk '/tokens_per_s/ {print $2}')
else
  torch_tps=""
fi
printf '%-28s %12s %10s %12s\n' "tiny recipe, CPU ($threads threads)" "tokens/s" "GFLOP/s" "vs PyTorch"
gf() { python3 -c "print(f'{$1*$flops/1e9:.1f}')"; }
if [ -n "$torch_tps" ]; then
  printf '%-28s %12s %10s %12s\n' "linnet" "$linnet_tps" "$(gf "$linnet_tps")" "$(python3 -c "print(f'{$linnet_tps/$torch_tps:.2f}x')")"
  printf '%-28s %12s %10s %12s\n' "PyTorch (eager)" "$torch_tps" "$(gf "$torch_tps")" "1.00x"
else
  printf '%-28s %12s %10s %12s\n' "linnet" "$linnet_tps" "$(gf "$linnet_tps")" "(no torch)"
fi
echo "model FLOPs per token: $flops"
