"""The peer of bench_attention: PyTorch SDPA (flash and cuDNN backends), causal, bf16, same shapes
and the same memory layout as linnet ([B, T, H, D], passed to SDPA as a transposed view), forward +
backward and forward alone. Each repeat timed with CUDA events, median after 2 warm-ups; FLOPs
as bench_attention counts them (3.5 × 4·B·H·T²·D / 2 for forward + backward).
Prints `T <T> backend <name> ms <ms> tflops <TFLOP/s> fwd_ms <ms> fwd_tflops <TFLOP/s>`."""
import os
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

H = int(sys.argv[1]) if len(sys.argv) > 1 else 16
D = int(sys.argv[2]) if len(sys.argv) > 2 else 128
tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 32768
lengths = [int(a) for a in sys.argv[4:]] or [4096, 16384, 65536]


def median_ms(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


for T in lengths:
    B = max(1, tokens // T)
    reps = int(os.environ.get("BENCH_REPS", "5" if T > 16384 else "10"))
    q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    do = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
    fwd_flops = 4.0 * B * H * T * T * D / 2
    for name, backend in [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]:
        try:
            with sdpa_kernel(backend):
                def step():
                    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                       is_causal=True)
                    o.backward(do)

                def fwd():
                    with torch.no_grad():
                        F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                       is_causal=True)

                ms = median_ms(step, reps)
                fwd_ms = median_ms(fwd, reps)
                print(f"T {T} backend {name} ms {ms:.3f} tflops {3.5 * fwd_flops / ms / 1e9:.1f} "
                      f"fwd_ms {fwd_ms:.3f} fwd_tflops {fwd_flops / fwd_ms / 1e9:.1f}", flush=True)
        except RuntimeError as e:
            print(f"T {T} backend {name} unavailable: {str(e).splitlines()[0]}", flush=True)
    del q, k, v, do
    torch.cuda.empty_cache()
