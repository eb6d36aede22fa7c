#!/usr/bin/env bash
# Attention forward + backward, bf16, causal, H=16, D=128, B·T = 32768: linnet's kernel vs PyTorch
# SDPA (flash and cuDNN backends), same GPU, one run. Needs build/bench/bench_attention.
set -uo pipefail
cd "$(dirname "$0")/.."
lengths=${LENGTHS:-"4096 16384 65536"}
nvidia-smi --query-gpu=name --format=csv,noheader
python3 bench/attention_torch.py 16 128 32768 $lengths | tee /tmp/attn_torch.txt
build/bench/bench_attention 16 128 32768 $lengths | tee /tmp/attn_linnet.txt
python3 - <<'PY'
import re
peer = {}
for line in open("/tmp/attn_torch.txt"):
    m = re.match(r"T (\d+) backend (\w+) ms ([\d.]+)", line)
    if m: peer[(int(m[1]), m[2])] = float(m[3])
print(f"{'T':>6} {'linnet ms':>10} {'flash ms':>9} {'cudnn ms':>9} {'vs flash':>9} {'TFLOP/s':>8}")
for line in open("/tmp/attn_linnet.txt"):
    m = re.match(r"T (\d+) B \d+ ms ([\d.]+) tflops ([\d.]+)", line)
    if not m: continue
    T, ms = int(m[1]), float(m[2])
    f, c = peer.get((T, "flash")), peer.get((T, "cudnn"))
    print(f"{T:>6} {ms:>10.2f} {f or float('nan'):>9.2f} {c or float('nan'):>9.2f} {(f / ms if f else float('nan')):>8.2f}x {float(m[3]):>8.1f}")
PY
