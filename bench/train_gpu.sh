#!/usr/bin/env bash
# GPU training throughput of recipes/gpt2-small.yaml (12 layers, d 768, T 1024, B 32, vocab 50304):
# linnet vs PyTorch training the same model and batch (bench/train_torch.py: bf16 autocast,
# torch.compile, fused AdamW; and fp32 eager), same GPU, one run. Needs build/linnet and data/kjv.
set -uo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-30}
nvidia-smi --query-gpu=name --format=csv,noheader
model="--vocab 50304 --d_model 768 --layers 12 --heads 12 --kv_heads 12 --hidden 2048 --batch 32 --seq 1024 --steps $steps --warmup 5"
bench/linnet_tps.sh recipes/gpt2-small.yaml "$steps" ${LINNET_SET:-}
python3 bench/train_torch.py --device cuda --bf16 --compile $model 2>&1 | tail -2
[ -n "${SKIP_EAGER:-}" ] || python3 bench/train_torch.py --device cuda $model 2>&1 | tail -2 # SKIP_EAGER=1: no fp32 eager peer
