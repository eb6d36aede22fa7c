"""The peers of bench_gla: flash-linear-attention's chunk_gla (Triton) and PyTorch SDPA with the
cuDNN backend (softmax attention, causal), bf16, forward and forward + backward, same shapes.
Median of repeats after warm-up (CUDA events). Each kernel runs inside its own try, so one that
fla refuses (Triton < 3.7.1 on Hopper for some gated backward kernels) is reported, not fatal.
Prints `T <T> impl <name> fwd_ms <ms> ms <ms>` or `T <T> impl <name> failed: <reason>`."""
import statistics
import sys
import traceback

import torch
import torch.nn.functional as F

H = int(sys.argv[1]) if len(sys.argv) > 1 else 16
D = int(sys.argv[2]) if len(sys.argv) > 2 else 128
tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 32768
lengths = [int(a) for a in sys.argv[4:]] or [4096, 16384, 65536]


def median_ms(fn, reps=11, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


try:
    from fla.ops.gla import chunk_gla
    import fla
    print(f"fla {getattr(fla, '__version__', '?')} triton {__import__('triton').__version__} torch {torch.__version__}")
except Exception as e:  # noqa: BLE001
    chunk_gla = None
    print(f"fla import failed: {e}")

for T in lengths:
    B = max(1, tokens // T)
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    g = (F.logsigmoid(torch.randn(B, T, H, D, device="cuda")) / 16).to(torch.bfloat16).requires_grad_()
    do = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
    if chunk_gla is not None:
        res = {}
        for part in ("fwd", "fwd+bwd"):
            try:
                if part == "fwd":
                    def run():
                        with torch.no_grad():
                            chunk_gla(q, k, v, g)
                else:
                    def run():
                        o, _ = chunk_gla(q, k, v, g)
                        o.backward(do)
                res[part] = median_ms(run)
            except Exception as e:  # noqa: BLE001
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                print(f"T {T} impl fla_chunk_gla {part} failed: {msg}", flush=True)
                traceback.print_exc(limit=2, file=sys.stderr)
        if "fwd+bwd" in res:
            print(f"T {T} impl fla_chunk_gla fwd_ms {res.get('fwd', float('nan')):.3f} ms {res['fwd+bwd']:.3f}", flush=True)
        elif "fwd" in res:
            print(f"T {T} impl fla_chunk_gla_fwd_only fwd_ms {res['fwd']:.3f} ms nan", flush=True)
    # softmax attention through cuDNN, [B, H, T, D]
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        qt, kt, vt = (x.detach().transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
        dot = do.transpose(1, 2).contiguous()
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            def fwd():
                with torch.no_grad():
                    F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)

            def both():
                F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).backward(dot)
            f_ms, b_ms = median_ms(fwd), median_ms(both)
        print(f"T {T} impl sdpa_cudnn fwd_ms {f_ms:.3f} ms {b_ms:.3f}", flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"T {T} impl sdpa_cudnn failed: {str(e).splitlines()[0]}", flush=True)
    del q, k, v, g, do
    torch.cuda.empty_cache()
