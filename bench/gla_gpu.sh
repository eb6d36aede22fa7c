#!/usr/bin/env bash
# GLA forward + backward, bf16, H=16, K=V=128, B·T = 32768 (B = 1 at T = 65536): linnet's chunkwise
# kernels vs flash-linear-attention's chunk_gla (Triton) and PyTorch SDPA cuDNN (softmax attention),
# same GPU, one run. Needs build/bench/bench_gla; fla on PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."
lengths=${LENGTHS:-"4096 16384 65536"}
out=${OUT_DIR:-/tmp}
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
python3 bench/gla_fla.py 16 128 32768 $lengths 2> "$out/gla_fla.err" | tee "$out/gla_peers.txt"
build/bench/bench_gla 16 128 32768 $lengths | tee "$out/gla_linnet.txt"
OUT_DIR="$out" python3 - <<'PY'
import os, re
out = os.environ["OUT_DIR"]
peer = {}
for line in open(f"{out}/gla_peers.txt"):
    m = re.match(r"T (\d+) impl (\w+) fwd_ms ([\d.na]+) ms ([\d.na]+)", line)
    if m: peer[(int(m[1]), m[2])] = (float(m[3]), float(m[4]))
rows = []
for line in open(f"{out}/gla_linnet.txt"):
    m = re.match(r"T (\d+) B (\d+) fwd_ms ([\d.]+) ms ([\d.]+) tok_per_s (\S+) ns_per_tok ([\d.]+) roof_pct ([\d.]+)", line)
    if m: rows.append((int(m[1]), int(m[2]), float(m[3]), float(m[4]), float(m[5]), float(m[6]), float(m[7])))
nan = float("nan")
print(f"{'T':>6} {'B':>2} {'ours fwd':>9} {'ours f+b':>9} {'fla fwd':>8} {'fla f+b':>8} {'ours/fla':>8} {'cudnn f+b':>9} {'Mtok/s':>8} {'ns/tok':>7} {'%roof':>6}")
for T, B, f, a, tps, ns, roof in rows:
    ff, fa = peer.get((T, "fla_chunk_gla"), (nan, nan))
    cf, ca = peer.get((T, "sdpa_cudnn"), (nan, nan))
    print(f"{T:>6} {B:>2} {f:>9.3f} {a:>9.3f} {ff:>8.3f} {fa:>8.3f} {a / fa if fa == fa else nan:>8.2f} {ca:>9.3f} {tps / 1e6:>8.1f} {ns:>7.2f} {roof:>6.1f}")
ns = {T: n for T, _, _, _, _, n, _ in rows}
if 4096 in ns and 65536 in ns:
    print(f"time per token, 64K over 4K: {ns[65536] / ns[4096]:.2f}")
PY
