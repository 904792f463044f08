#!/usr/bin/env python3
"""The cuBLAS anchor of bench/gemm.aii: the same product, a 4096 x 4096 f16 matrix times the
4096 f16 features of N agents, as `torch.matmul` (cuBLAS) with f16 and with f32 output, timed
with CUDA events. Prints TFLOP/s.

    python3 bench/torch_gemm.py 8192
"""
import sys

import torch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
k = m = 4096
w = torch.randn(m, k, device="cuda", dtype=torch.float16) / k**0.5
x = torch.randn(k, n, device="cuda", dtype=torch.float16)


def measure(label, f):
    for _ in range(10):
        f()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    reps = 50
    start.record()
    for _ in range(reps):
        f()
    end.record()
    torch.cuda.synchronize()
    t = start.elapsed_time(end) / 1e3 / reps
    print(f"{label}: {t * 1e3:.3f} ms, {2 * m * k * n / t / 1e12:.1f} TFLOP/s ({torch.cuda.get_device_name()}, N={n})")


y32 = torch.empty(m, n, device="cuda", dtype=torch.float32)
measure("torch.matmul f16 -> f16", lambda: torch.matmul(w, x))
measure("torch.matmul f16 -> f32 (f16 product, then a copy)", lambda: y32.copy_(torch.matmul(w, x)))
