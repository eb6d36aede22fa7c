#!/usr/bin/env bash
# Attention forward + backward, bf16, causal (default H=16, D=128, B·T = 32768: B = 1 at T = 65536):
# linnet's own kernel (LN_ATTN_OWN) and linnet's op through cuDNN (LN_ATTN_CUDNN) vs PyTorch SDPA
# (flash and cuDNN backends), same GPU, one run. Needs build/bench/bench_attention.
# LENGTHS="4096 16384 65536" picks the lengths, H / D / TOKENS the shape (the GPT-2 small one:
# H=12 D=64 TOKENS=32768 LENGTHS=1024); logs in $OUT (or /tmp).
set -uo pipefail
cd "$(dirname "$0")/.."
lengths=${LENGTHS:-"4096 16384 65536"}
H=${H:-16} D=${D:-128} TOKENS=${TOKENS:-32768}
logs=${OUT:-/tmp}
tag="h${H}d${D}"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader
python3 bench/attention_torch.py $H $D $TOKENS $lengths | tee "$logs/attn_torch_$tag.txt"
build/bench/bench_attention $H $D $TOKENS $lengths | tee "$logs/attn_linnet_$tag.txt"
BENCH_IMPL=cudnn build/bench/bench_attention $H $D $TOKENS $lengths | tee -a "$logs/attn_linnet_$tag.txt"
python3 - "$logs" "$tag" <<'PY'
import re, sys
logs, tag = sys.argv[1], sys.argv[2]
peer, ours = {}, {}
for line in open(f"{logs}/attn_torch_{tag}.txt"):
    m = re.match(r"T (\d+) backend (\w+) ms ([\d.]+) tflops [\d.]+ fwd_ms ([\d.]+)", line)
    if m: peer[(int(m[1]), m[2])] = (float(m[3]), float(m[4]))
for line in open(f"{logs}/attn_linnet_{tag}.txt"):
    m = re.match(r"T (\d+) B \d+ ms ([\d.]+) tflops ([\d.]+) fwd_ms ([\d.]+) fwd_tflops [\d.]+ impl (\w+)", line)
    if m: ours[(int(m[1]), m[5])] = (float(m[2]), float(m[3]), float(m[4]))
nan = (float("nan"),) * 3
print("fwd+bwd ms (TFLOP/s counted 3.5 x 4BHT^2D/2 for ours); ratio = peer time / linnet time (>1: linnet faster)")
print(f"{'T':>6} {'ours':>8} {'TFLOP/s':>8} {'flash':>8} {'cudnn':>8} {'/flash':>7} {'/cudnn':>7} | {'ln-cudnn':>8} {'/cudnn':>7} |"
      f" fwd: {'ours':>7} {'flash':>7} {'/flash':>7} {'cudnn':>7} {'ln-cudnn':>8}")
for T in sorted({t for t, _ in ours}):
    o, c = ours.get((T, "own"), nan), ours.get((T, "cudnn"), nan)
    f, d = peer.get((T, "flash"), nan[:2]), peer.get((T, "cudnn"), nan[:2])
    print(f"{T:>6} {o[0]:>8.2f} {o[1]:>8.1f} {f[0]:>8.2f} {d[0]:>8.2f} {f[0] / o[0]:>6.2f}x {d[0] / o[0]:>6.2f}x |"
          f" {c[0]:>8.2f} {d[0] / c[0]:>6.2f}x |      {o[2]:>7.2f} {f[1]:>7.2f} {f[1] / o[2]:>6.2f}x {d[1]:>7.2f} {c[2]:>8.2f}")
PY
