"""The peer of bench/train_cpu.sh and bench/train_gpu.sh: PyTorch training the same model as a
linnet recipe (Llama-style: RMSNorm, RoPE rotate_half, grouped-query SDPA, SwiGLU, tied
embeddings, AdamW with clipping), same batch and sequence length, on the CPU or the GPU (bf16
autocast, torch.compile, fused AdamW). Prints steady-state `tokens_per_s N` (median step)."""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads, kv_heads, hidden, theta, eps):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, d // heads
        self.attn_norm = nn.RMSNorm(d, eps=eps)
        self.mlp_norm = nn.RMSNorm(d, eps=eps)
        self.wq = nn.Linear(d, heads * self.hd, bias=False)
        self.wk = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.wv = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.wo = nn.Linear(heads * self.hd, d, bias=False)
        self.w_gate = nn.Linear(d, hidden, bias=False)
        self.w_up = nn.Linear(d, hidden, bias=False)
        self.w_down = nn.Linear(hidden, d, bias=False)
        self.theta = theta

    def rope(self, x):  # x [B, H, T, D]
        T, D = x.shape[-2], x.shape[-1]
        inv = self.theta ** (-torch.arange(0, D, 2, dtype=torch.float32, device=x.device) / D)
        ang = torch.arange(T, dtype=torch.float32, device=x.device)[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
        x1, x2 = x[..., : D // 2], x[..., D // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def forward(self, x):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.wk(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        v = self.wv(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        o = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True, enable_gqa=True)
        x = x + self.wo(o.transpose(1, 2).reshape(B, T, -1))
        h = self.mlp_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embedding = nn.Embedding(a.vocab, a.d_model)
        self.blocks = nn.ModuleList(
            Block(a.d_model, a.heads, a.kv_heads, a.hidden, 10000.0, 1e-5) for _ in range(a.layers))
        self.final_norm = nn.RMSNorm(a.d_model, eps=1e-5)

    def forward(self, ids, targets):
        x = self.embedding(ids)
        for b in self.blocks:
            x = b(x)
        logits = self.final_norm(x) @ self.embedding.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    p = argparse.ArgumentParser()
    for name, default in [("vocab", 256), ("d_model", 128), ("layers", 4), ("heads", 4), ("kv_heads", 2),
                          ("hidden", 384), ("batch", 16), ("seq", 128), ("steps", 30), ("warmup", 5), ("threads", 2)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    a = p.parse_args()
    torch.manual_seed(1)
    torch.set_num_threads(a.threads)
    cuda = a.device == "cuda"
    model = Model(a).to(a.device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=cuda)
    step_fn = torch.compile(model) if a.compile else model
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), device=a.device)
    targets = torch.randint(0, a.vocab, (a.batch, a.seq), device=a.device)
    times = []
    for step in range(a.steps):
        t0 = time.perf_counter()
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.bf16):
            loss = step_fn(ids, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0
    print(f"torch {torch.__version__} device {a.device} threads {a.threads} compile {a.compile} bf16 {a.bf16} peak_gib {peak:.1f}")
    print(f"tokens_per_s {a.batch * a.seq / median:.0f}")


if __name__ == "__main__":
    main()
