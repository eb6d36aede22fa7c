#!/usr/bin/env bash
# GPU training throughput of recipes/gla-small.yaml (GLA, 12 layers, d 768, T 1024, B 32, vocab
# 50304): linnet vs PyTorch + flash-linear-attention training the same model and batch
# (bench/train_gla_torch.py), same GPU, one run; prints tokens/s of each and linnet / peer
# (target >= 1.5). Needs build/linnet, data/kjv and fla on PYTHONPATH. The peer's first step
# compiles + autotunes fla's Triton kernels (minutes on a cold cache), hence its own time limit.
set -uo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-30}
out=${OUT_DIR:-$(mktemp -d)}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# autotune results (fla sets cache_results) and compiled kernels survive a cut-off run on a warm machine
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$PWD/build/triton-cache}
nvidia-smi --query-gpu=name --format=csv,noheader
LINNET_LOG="$out/linnet.txt" LINNET_TIMEOUT=${LINNET_TIMEOUT:-120} bench/linnet_tps.sh recipes/gla-small.yaml "$steps" \
  ${LINNET_SET:-} | tee "$out/linnet-tps.txt"
linnet_tps=$(awk '/^linnet tokens_per_s/ { print $3 }' "$out/linnet-tps.txt")
peer="--steps $steps --warmup 5"
# eager first: it also warms the Triton cache for the compiled run (limits: 120 + 300 + 120 s)
for flags in "" "--compile"; do
  limit=$([ -z "$flags" ] && echo "${PEER_TIMEOUT:-300}" || echo "${PEER_COMPILE_TIMEOUT:-120}")
  timeout "$limit" python3 bench/train_gla_torch.py $peer $flags > "$out/peer$flags.txt" 2>&1
  echo "peer $flags rc=$?"; grep -v "^tokens_per_s" "$out/peer$flags.txt" | tail -3
  grep "^tokens_per_s" "$out/peer$flags.txt" | sed "s/^/peer$flags /"
done
# best peer against linnet
python3 - "$linnet_tps" "$out"/peer*.txt <<'PY'
import re, sys
ours = float(sys.argv[1])
best = max((float(m[1]) for f in sys.argv[2:] for m in re.finditer(r"^tokens_per_s (\S+)", open(f).read(), re.M)),
           default=float("nan"))
print(f"linnet {ours:.0f} tok/s, best torch+fla {best:.0f} tok/s, linnet/peer {ours / best:.2f} (target >= 1.5)")
PY
