#!/usr/bin/env python3
"""The PyTorch anchor of aiic's MLP benchmarks: an `nn.Sequential` MLP (tanh between layers) over
N agents, eager in f32 and f16, and `torch.compile` in f16, timed with CUDA events. Prints
agents/s.

    python3 bench/torch_mlp.py 4194304              # 3 -> 13 -> 3, bench/mlp_small.aii
    python3 bench/torch_mlp.py 4194304 32,64,64,3    # bench/mlp_tc.aii
"""
import sys

import torch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4194304
widths = [int(w) for w in (sys.argv[2] if len(sys.argv) > 2 else "3,13,3").split(",")]
layers = []
for i in range(len(widths) - 1):
    layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
    if i < len(widths) - 2:
        layers.append(torch.nn.Tanh())
net = torch.nn.Sequential(*layers).cuda()


def measure(label, m, x):
    with torch.no_grad():
        for _ in range(10):
            m(x)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        reps = 100
        start.record()
        for _ in range(reps):
            m(x)
        end.record()
        torch.cuda.synchronize()
    secs = start.elapsed_time(end) * 1e-3 / reps
    shape = "->".join(str(w) for w in widths)
    print(f"torch {label:14} {shape} {n} agents: {secs * 1e3:.3f} ms per pass, {n / secs:.3e} agents/s", flush=True)


for dtype in (torch.float32, torch.float16):
    m = net.to(dtype)
    x = torch.randn(n, widths[0], device="cuda", dtype=dtype)
    measure(f"eager {str(dtype).split('.')[-1]}", m, x)
    if dtype == torch.float16 and "--no-compile" not in sys.argv:
        measure("compile float16", torch.compile(m), x)
