#!/usr/bin/env bash
# GLA forward + backward, bf16, H=16, K=V=128 (or H, D below), B·T = 32768 (B = 1 at T = 65536):
# linnet's chunkwise kernels vs flash-linear-attention's chunk_gla (Triton) and PyTorch SDPA cuDNN (softmax attention),
# same GPU, one run. Ours first (seconds), then the peers under their own limit (fla's first call
# compiles + autotunes for minutes on a cold Triton cache); the table uses whatever was printed.
# Needs build/bench/bench_gla; fla on PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."
lengths=${LENGTHS:-"4096 16384 65536"}
# H heads of width D (K = V) or KxV: H=12 D=32x64 LENGTHS=1024 is recipes/gla-small.yaml's layer
heads=${H:-16} width=${D:-128}
out=${OUT_DIR:-/tmp}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# compiled kernels and autotune results (fla sets cache_results) outlive a cut-off run on a warm machine
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$PWD/build/triton-cache}
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
build/bench/bench_gla "$heads" "$width" 32768 $lengths | tee "$out/gla_linnet.txt"
timeout "${PEER_TIMEOUT:-480}" python3 bench/gla_fla.py "$heads" "$width" 32768 $lengths 2> "$out/gla_fla.err" | tee "$out/gla_peers.txt"
echo "peers rc=${PIPESTATUS[0]}"
OUT_DIR="$out" python3 - <<'PY'
import os, re
out, nan = os.environ["OUT_DIR"], float("nan")
peer, ours = {}, {}
for line in open(f"{out}/gla_peers.txt"):
    m = re.match(r"T (\d+) impl (\w+) fwd_ms (\S+) ms (\S+)", line)
    if m: peer[(int(m[1]), m[2])] = (float(m[3]), float(m[4]))
for line in open(f"{out}/gla_linnet.txt"):
    m = re.match(r"T (\d+) B (\d+) fwd_ms (\S+) ms (\S+) tok_per_s \S+ ns_per_tok \S+ roof_pct (\S+)", line)
    if m: ours[int(m[1])] = (int(m[2]), float(m[3]), float(m[4]), float(m[5]))
tokens = 32768
ns = lambda ms, T: ms * 1e6 / (max(1, tokens // T) * T)  # fwd+bwd ns per token
print("fwd+bwd ms (fwd ms); ns/tok = fwd+bwd time per token; ratio = fla / ours (> 1: ours faster)")
print(f"{'T':>6} {'B':>2} {'ours':>16} {'fla':>16} {'fla/ours':>8} {'sdpa cudnn':>16} {'ours ns/tok':>11} {'fla ns/tok':>10} {'%roof':>6}")
for T in sorted(set(ours) | {t for t, _ in peer}):
    B, of, oa, roof = ours.get(T, (max(1, tokens // T), nan, nan, nan))
    ff, fa = peer.get((T, "fla_chunk_gla"), (nan, nan))
    sf, sa = peer.get((T, "sdpa_cudnn"), (nan, nan))
    print(f"{T:>6} {B:>2} {oa:>8.3f} ({of:>6.3f}) {fa:>8.3f} ({ff:>6.3f}) {fa / oa:>8.2f} {sa:>8.3f} ({sf:>6.3f})"
          f" {ns(oa, T):>11.2f} {ns(fa, T):>10.2f} {roof:>6.1f}")
for name, d in (("ours", {T: v[2] for T, v in ours.items()}), ("fla", {T: v[1] for (T, i), v in peer.items() if i == "fla_chunk_gla"})):
    if 4096 in d and 65536 in d:
        print(f"{name} time per token, 64K over 4K: {ns(d[65536], 65536) / ns(d[4096], 4096):.2f}")
PY
