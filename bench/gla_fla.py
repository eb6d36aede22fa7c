"""The peers of bench_gla: PyTorch SDPA with the cuDNN backend (softmax attention, causal) and
flash-linear-attention's chunk_gla (Triton), bf16, forward and forward + backward, same shapes.
Median of repeats after warm-up (CUDA events). Lengths run in increasing order and SDPA before fla
at each, every line flushed, so a run cut short still leaves what it measured. Each kernel runs
inside its own try and time budget (SIGALRM, checked between Triton's compiles and autotune
benchmarks), so one that fla refuses (some gated backward kernels with Triton < 3.7.1 on Hopper) or
that compiles too long is reported, not fatal. Prints
  `T <T> impl <name> fwd_ms <ms> ms <ms>`, `T <T> impl <name> first_call_s <s>` or
  `T <T> impl <name> failed: <reason>`.
Env: GLA_BUDGET_S (per length and kernel, default 120), GLA_BUDGET_FIRST_S (fla's first length,
which compiles and autotunes, default 420)."""
import os
import signal
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

H = int(sys.argv[1]) if len(sys.argv) > 1 else 16
# D (K = V = D) or KxV, as bench_gla; SDPA (softmax, one head width) only when K = V
K, V = (int(x) for x in (sys.argv[2].split("x") * 2)[:2]) if len(sys.argv) > 2 else (128, 128)
tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 32768
lengths = sorted(int(a) for a in sys.argv[4:]) or [4096, 16384, 65536]
budget = int(os.environ.get("GLA_BUDGET_S", 120))
budget_first = int(os.environ.get("GLA_BUDGET_FIRST_S", 420))


def say(*a):
    print(*a, flush=True)


class OverBudget(Exception):
    pass


def on_alarm(*_):
    raise OverBudget("time budget exceeded")


signal.signal(signal.SIGALRM, on_alarm)


def median_ms(fn, reps, warm):
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


def attempt(T, name, part, fn, seconds):
    """fn() under a time budget; on a raise or overrun, a `failed` line and the exception."""
    signal.alarm(seconds)
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        say(f"T {T} impl {name} {part} failed: {(str(e).splitlines() or [type(e).__name__])[0]}")
        traceback.print_exc(limit=3, file=sys.stderr)
        return e
    finally:
        signal.alarm(0)


def measure(T, name, fwd, both, seconds, reps, warm):
    """fwd+bwd first (its first call compiles both directions and is timed on its own), then fwd."""
    def first_then_median():
        t0 = time.perf_counter()
        both()
        torch.cuda.synchronize()
        say(f"T {T} impl {name} first_call_s {time.perf_counter() - t0:.1f}")
        return median_ms(both, reps, warm)
    b = attempt(T, name, "fwd+bwd", first_then_median, seconds)
    # a refused backward still leaves the forward to time; a run over budget does not
    f = None if isinstance(b, OverBudget) else attempt(T, name, "fwd", lambda: median_ms(fwd, reps, warm), seconds)
    ms = [x if isinstance(x, float) else float("nan") for x in (f, b)]
    if ms[0] == ms[0] or ms[1] == ms[1]:
        say(f"T {T} impl {name} fwd_ms {ms[0]:.3f} ms {ms[1]:.3f}")
    torch.cuda.empty_cache()


try:
    import fla
    import triton
    from fla.ops.gla import chunk_gla
    say(f"fla {getattr(fla, '__version__', '?')} triton {triton.__version__} torch {torch.__version__} "
        f"cudnn {torch.backends.cudnn.version()} {torch.cuda.get_device_name(0)}")
except Exception as e:  # noqa: BLE001
    chunk_gla = None
    say(f"fla import failed: {e}")

first_fla = True
for T in lengths:
    B = max(1, tokens // T)
    # fewer repeats where one fwd+bwd of SDPA is ~0.1 s (64K: attention is quadratic)
    reps, warm = (11, 3) if T < 65536 else (5, 1)
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, T, H, w, device="cuda", dtype=torch.bfloat16, requires_grad=True) for w in (K, K, V))
    g = (F.logsigmoid(torch.randn(B, T, H, K, device="cuda")) / 16).to(torch.bfloat16).requires_grad_()
    do = torch.randn(B, T, H, V, device="cuda", dtype=torch.bfloat16)

    # softmax attention through cuDNN, [B, H, T, D]
    from torch.nn.attention import SDPBackend, sdpa_kernel
    qt, kt, vt = (x.detach().transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
    dot = do.transpose(1, 2).contiguous()

    def sdpa_fwd():  # (not run when K != V)
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION), torch.no_grad():
            F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)

    def sdpa_both():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).backward(dot)
    if K == V:
        measure(T, "sdpa_cudnn", sdpa_fwd, sdpa_both, budget, reps, warm)
    del qt, kt, vt, dot

    if chunk_gla is not None:
        def fla_fwd():
            with torch.no_grad():
                chunk_gla(q, k, v, g)

        def fla_both():
            o, _ = chunk_gla(q, k, v, g)
            o.backward(do)
        # No tiny warm-up call: fla's autotune keys leave out T and B, so the configs would be
        # chosen for the tiny shape; the first real call is timed apart instead (first_call_s).
        measure(T, "fla_chunk_gla", fla_fwd, fla_both, budget_first if first_fla else budget, reps, warm)
        first_fla = False
    del q, k, v, g, do
    torch.cuda.empty_cache()
say("done")
