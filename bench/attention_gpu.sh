#!/usr/bin/env bash
# Attention forward + backward, bf16, causal, H=16, D=128, B·T = 32768 (B = 1 at T = 65536):
# linnet's kernel vs PyTorch SDPA (flash and cuDNN backends), same GPU, one run. Needs
# build/bench/bench_attention. LENGTHS="4096 16384 65536" picks the lengths; logs in $OUT (or /tmp).
set -uo pipefail
cd "$(dirname "$0")/.."
lengths=${LENGTHS:-"4096 16384 65536"}
logs=${OUT:-/tmp}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader
python3 bench/attention_torch.py 16 128 32768 $lengths | tee "$logs/attn_torch.txt"
build/bench/bench_attention 16 128 32768 $lengths | tee "$logs/attn_linnet.txt"
python3 - "$logs" <<'PY'
import re, sys
logs = sys.argv[1]
peer = {}
for line in open(f"{logs}/attn_torch.txt"):
    m = re.match(r"T (\d+) backend (\w+) ms ([\d.]+) tflops [\d.]+ fwd_ms ([\d.]+)", line)
    if m: peer[(int(m[1]), m[2])] = (float(m[3]), float(m[4]))
nan = (float("nan"), float("nan"))
print("fwd+bwd (ms, TFLOP/s counted 3.5 x 4BHT^2D/2); ratio = peer time / linnet time (>1: linnet faster)")
print(f"{'T':>6} {'linnet':>8} {'flash':>8} {'cudnn':>8} {'TFLOP/s':>8} {'/flash':>7} {'/cudnn':>7} | fwd: {'linnet':>7} {'flash':>7} {'cudnn':>7}")
for line in open(f"{logs}/attn_linnet.txt"):
    m = re.match(r"T (\d+) B \d+ ms ([\d.]+) tflops ([\d.]+) fwd_ms ([\d.]+)", line)
    if not m: continue
    T, ms, fms = int(m[1]), float(m[2]), float(m[4])
    f, c = peer.get((T, "flash"), nan), peer.get((T, "cudnn"), nan)
    print(f"{T:>6} {ms:>8.2f} {f[0]:>8.2f} {c[0]:>8.2f} {float(m[3]):>8.1f} {f[0] / ms:>6.2f}x {c[0] / ms:>6.2f}x |"
          f"      {fms:>7.2f} {f[1]:>7.2f} {c[1]:>7.2f}")
PY
