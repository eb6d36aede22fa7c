#!/usr/bin/env python3
"""Why the GLA tensor-core path keeps dA's diagonal apart and limits the sub-chunk span
(autograd/ops/linear_attention/gla_mma.cuh, docs/gla-kernel.md): a numpy emulation of one 64-row
chunk's intra-chunk dq, dk and dg = reverse cumsum(q dq - k dk) as the kernel computes them (gated
operands rounded to bf16, products in fp32 and up), against the exact float64 values. Intra-chunk
terms only: the worst case, since the inter-chunk terms do not cancel. Prints the worst relative
error of dg over a few random chunks, per-key and per-head gates, at constant log decays g (times
0.5 .. 1.5 at random).
Usage: python3 bench/gla_dg_precision.py   (needs numpy)"""
import numpy as np

C, K, V = 64, 64, 64


def bf16(x):
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


def emulate(q, k, dAb, G, exact_diag, span_limit):
    """dq, dk of the kernel: per 16-row sub-chunk, factors relative to its first (dq) / last (dk) row."""
    dq, dk = np.zeros((C, K)), np.zeros((C, K))
    for I in range(4):
        r, l, rows = 16 * I, 16 * I + 15, slice(16 * I, 16 * I + 16)
        fast = np.max(G[r] - G[l]) <= span_limit
        # dq rows of I: columns j up to the end of I (fast) or before I (pairwise inside I)
        jmax = 16 * (I + 1) if fast else 16 * I
        dA = dAb[rows, :jmax].copy()
        if exact_diag and fast:
            dA[np.arange(16), r + np.arange(16)] = 0
        acc = (dA @ bf16(k[:jmax] * np.exp(G[r] - G[:jmax]))) * np.exp(G[rows] - G[r])
        for ii in range(16):
            i = r + ii
            if not fast:
                acc[ii] += sum(dAb[i, j] * k[j] * np.exp(G[i] - G[j]) for j in range(r, i + 1))
            elif exact_diag:
                acc[ii] += dAb[i, i] * k[i]
        dq[rows] = acc
        # dk rows of I: rows i from the start of I (fast) or after it
        imin = r if fast else r + 16
        dA = dAb[imin:, rows].copy()
        if exact_diag and fast:
            dA[np.arange(16), np.arange(16)] = 0
        acc = (dA.T @ bf16(q[imin:] * np.exp(G[imin:] - G[l]))) * np.exp(G[l] - G[rows])
        for jj in range(16):
            j = r + jj
            if not fast:
                acc[jj] += sum(dAb[i, j] * q[i] * np.exp(G[i] - G[j]) for i in range(j, r + 16))
            elif exact_diag:
                acc[jj] += dAb[j, j] * q[j]
        dk[rows] = acc
    return dq, dk


def worst_error(g, per_head, exact_diag, span_limit, rng, trials=4):
    worst = 0.0
    for _ in range(trials):
        q, k = bf16(rng.standard_normal((C, K))), bf16(rng.standard_normal((C, K)))
        v, do = bf16(rng.standard_normal((C, V))), bf16(rng.standard_normal((C, V)))
        gate = g * (0.5 + rng.random((C, 1 if per_head else K)))
        G = np.cumsum(np.broadcast_to(gate, (C, K)), 0)
        dA = (do @ v.T) * np.tril(np.ones((C, C)))
        E = np.exp(G[:, None, :] - G[None, :, :]) * np.tril(np.ones((C, C)))[:, :, None]
        dq, dk = np.einsum("ij,jd,ijd->id", dA, k, E), np.einsum("ij,id,ijd->jd", dA, q, E)
        dqe, dke = emulate(q, k, bf16(dA), G, exact_diag, span_limit)
        dG, dGe = q * dq - k * dk, q * dqe - k * dke
        if per_head:
            dG, dGe = dG.sum(1, keepdims=True), dGe.sum(1, keepdims=True)
        ref, out = np.cumsum(dG[::-1], 0)[::-1], np.cumsum(dGe[::-1], 0)[::-1]
        worst = max(worst, np.linalg.norm(out - ref) / np.linalg.norm(ref))
    return worst


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    print("dg relative error, per key / per head gates")
    print(f"{'g':>6} {'diagonal in mma':>18} {'diagonal apart':>18} {'pairwise inside':>18}")
    for g in (-0.05, -0.3, -0.6, -1.0, -1.8):
        cols = [(False, 1e9), (True, 1e9), (True, -1.0)]
        cells = [f"{worst_error(g, False, d, s, rng):.4f} / {worst_error(g, True, d, s, rng):.4f}" for d, s in cols]
        print(f"{g:>6} " + " ".join(f"{c:>18}" for c in cells))
