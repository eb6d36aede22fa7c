"""The peer of bench/train_gla_gpu.sh: PyTorch + flash-linear-attention training the model of
recipes/gla-small.yaml, same batch and sequence length. Each block is
  x + GatedLinearAttention(RMSNorm(x)),  x + SwiGLU(RMSNorm(x))
with fla.layers.GatedLinearAttention configured as linnet's gla layer (layers/attention_gla.c):
mode 'chunk' (chunk_gla), expand_k 0.5, expand_v 1, n_heads heads, no short conv, gate low rank 16
(with bias on the up projection), log decay logsigmoid(.)/16, per-head RMSNorm then swish output
gate (fla's fused RMSNorm-gate, its default fuse_norm=True), no RoPE. Tied embeddings, bf16
autocast, fused AdamW, gradient clipping 1.0, as bench/train_torch.py. --compile compiles the
norms and SwiGLU MLP only (fla's Triton kernels run as they are). Prints the parameter count (compare
with linnet's "model: N parameters") and steady-state `tokens_per_s N` (median step)."""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from fla.layers import GatedLinearAttention


class Mlp(nn.Module):
    def __init__(self, d, hidden, eps):
        super().__init__()
        self.norm = nn.RMSNorm(d, eps=eps)
        self.w_gate = nn.Linear(d, hidden, bias=False)
        self.w_up = nn.Linear(d, hidden, bias=False)
        self.w_down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        h = self.norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Block(nn.Module):
    def __init__(self, a, eps=1e-5):
        super().__init__()
        self.attn_norm = nn.RMSNorm(a.d_model, eps=eps)
        self.attn = GatedLinearAttention(mode="chunk", hidden_size=a.d_model, expand_k=0.5, expand_v=1.0,
                                         num_heads=a.heads, use_short_conv=False, use_output_gate=True,
                                         gate_fn="swish", norm_eps=eps, gate_logit_normalizer=16,
                                         gate_low_rank_dim=16, fuse_norm=True)
        self.mlp = Mlp(a.d_model, a.hidden, eps)

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))[0]
        return self.mlp(x)


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embedding = nn.Embedding(a.vocab, a.d_model)
        self.blocks = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.final_norm = nn.RMSNorm(a.d_model, eps=1e-5)
        nn.init.normal_(self.embedding.weight, std=0.02)  # tied with the output: N(0, 1) starts at loss ~600

    def forward(self, ids, targets):
        x = self.embedding(ids)
        for b in self.blocks:
            x = b(x)
        logits = self.final_norm(x) @ self.embedding.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    p = argparse.ArgumentParser()
    for name, default in [("vocab", 50304), ("d_model", 768), ("layers", 12), ("heads", 12), ("hidden", 2048),
                          ("batch", 32), ("seq", 1024), ("steps", 30), ("warmup", 5)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--compile", action="store_true", help="torch.compile the norms and MLPs")
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    torch.manual_seed(1)
    cuda = a.device == "cuda"
    model = Model(a).to(a.device)
    if a.compile:
        for b in model.blocks:
            b.mlp.compile()
    n_params = sum(t.numel() for t in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=cuda)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), device=a.device)
    targets = torch.randint(0, a.vocab, (a.batch, a.seq), device=a.device)
    times = []
    for step in range(a.steps):
        t0 = time.perf_counter()
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=cuda):
            loss = model(ids, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if step == 0:  # fla's Triton compile + autotune land here
            print(f"first step {dt:.1f} s loss {loss.item():.3f}", flush=True)
        if step >= a.warmup:
            times.append(dt)
    times.sort()
    median = times[len(times) // 2]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0
    import fla
    print(f"torch {torch.__version__} fla {getattr(fla, '__version__', '?')} params {n_params} compile {a.compile} "
          f"loss {loss.item():.3f} peak_gib {peak:.1f}")
    print(f"tokens_per_s {a.batch * a.seq / median:.0f}", flush=True)


if __name__ == "__main__":
    main()
