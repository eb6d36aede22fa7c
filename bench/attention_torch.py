"""The peer of bench_attention: PyTorch SDPA (flash and cuDNN backends), causal, bf16, forward +
backward, same shapes. Prints `T <T> backend <name> ms <ms> tflops <TFLOP/s>` per line."""
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F

H = int(sys.argv[1]) if len(sys.argv) > 1 else 16
D = int(sys.argv[2]) if len(sys.argv) > 2 else 128
tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 32768
lengths = [int(a) for a in sys.argv[4:]] or [4096, 16384, 65536]

for T in lengths:
    B = max(1, tokens // T)
    q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    do = torch.randn_like(q)
    for name, backend in [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]:
        try:
            with sdpa_kernel(backend):
                def step():
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                    o.backward(do)
                step()
                torch.cuda.synchronize()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(5):
                    step()
                end.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(end) / 5
                flops = 2.5 * 4.0 * B * H * T * T * D / 2
                print(f"T {T} backend {name} ms {ms:.3f} tflops {flops / ms / 1e9:.1f}", flush=True)
        except RuntimeError as e:
            print(f"T {T} backend {name} unavailable: {str(e).splitlines()[0]}", flush=True)
