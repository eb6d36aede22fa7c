#!/usr/bin/env python3
"""Cross-check of `linnet op gla` (our CUDA kernels, bf16) against flash-linear-attention's chunk_gla
on the same inputs, both measured against `linnet op gla --device cpu` in float64 (the step-by-step
recurrence) as the neutral reference. Prints the relative error ||x - ref|| / ||ref|| of o, ht and
every gradient for linnet and for fla. Needs torch, fla, h5py and build/linnet (built with CUDA).
Usage: python3 bench/gla_crosscheck.py [B T H K V]   (default 2 1000 4 128 128: a partial chunk)"""
import os, subprocess, sys, tempfile, time

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from fla.ops.gla import chunk_gla

B, T, H, K, V = (int(x) for x in sys.argv[1:6]) if len(sys.argv) > 5 else (2, 1000, 4, 128, 128)
linnet = os.environ.get("LINNET_BIN", "build/linnet")
torch.manual_seed(0)
dev = "cuda"
bf = lambda *s: torch.randn(*s, device=dev).to(torch.bfloat16)
x = {"q": bf(B, T, H, K), "k": bf(B, T, H, K), "v": bf(B, T, H, V),
     "g": (F.logsigmoid(torch.randn(B, T, H, K, device=dev)) / 16).to(torch.bfloat16),
     "h0": (0.5 * torch.randn(B, H, K, V, device=dev)).to(torch.bfloat16)}
dy = {"do": bf(B, T, H, V), "dht": (0.1 * torch.randn(B, H, K, V, device=dev))}
tmp = tempfile.mkdtemp()
t0 = time.time()
stage = lambda what: print(f"[{time.time() - t0:6.1f} s] {what}", flush=True)  # a cut-off run says where


def write(path, tensors, as_bf16):
    with h5py.File(path, "w") as f:
        for name, t in tensors.items():
            if as_bf16 and t.dtype == torch.bfloat16:
                f.create_dataset(name, data=t.cpu().view(torch.int16).numpy().view(np.uint16))
                f[name].attrs["dtype"] = "bf16"
            else:
                f.create_dataset(name, data=t.cpu().double().numpy() if not as_bf16 else t.cpu().float().numpy())


def run_linnet(device, as_bf16):
    i, o, d = (os.path.join(tmp, f"{n}_{device}.h5") for n in ("in", "out", "dy"))
    write(i, x, as_bf16)
    write(d, dy if not as_bf16 else {"do": dy["do"], "dht": dy["dht"].float()}, as_bf16)
    subprocess.run([linnet, "op", "gla", "--in", i, "--out", o, "--grad-out", d, "--device", device], check=True)
    with h5py.File(o) as f:
        return {n: np.asarray(f[n], np.float64) for n in f}


stage("linnet cpu float64")
ref = run_linnet("cpu", False)  # float64, step by step
stage("linnet cuda bf16")
ours = run_linnet("cuda", True)  # bf16, the CUDA kernels
stage("fla chunk_gla (the first call compiles its Triton kernels)")

leaves = {n: t.clone().requires_grad_() for n, t in x.items()}
o, ht = chunk_gla(leaves["q"], leaves["k"], leaves["v"], leaves["g"], scale=K ** -0.5,
                  initial_state=leaves["h0"].float(), output_final_state=True)
torch.autograd.backward([o, ht], [dy["do"], dy["dht"].to(ht.dtype)])
fla = {"o": o, "ht": ht, **{"d" + n: t.grad for n, t in leaves.items()}}
fla = {n: t.detach().double().cpu().numpy() for n, t in fla.items()}
stage("done")

rel = lambda a, b: np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)
print(f"gla B={B} T={T} H={H} K={K} V={V}, bf16; relative error against linnet CPU float64")
print(f"{'tensor':>6} {'linnet cuda':>12} {'fla chunk_gla':>14} {'linnet vs fla':>14}")
worst = 0.0
for n in ("o", "ht", "dq", "dk", "dv", "dg", "dh0"):
    a, b = rel(ours[n], ref[n]), rel(fla[n], ref[n])
    worst = max(worst, a)
    print(f"{n:>6} {a:>12.2e} {b:>14.2e} {rel(ours[n], fla[n]):>14.2e}")
print("PASS" if worst <= 2e-2 else "FAIL", f"(linnet worst {worst:.2e}, bf16 tolerance 2e-2)")
sys.exit(0 if worst <= 2e-2 else 1)
