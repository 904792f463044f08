#!/usr/bin/env python3
"""The PyTorch anchor of bench/mlp_small.aii: the same 3 -> 13 -> 3 tanh network over N agents,
eager, in f32 and f16, timed with CUDA events. Prints agents/s.

    python3 bench/torch_mlp.py 4194304
"""
import sys

import torch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4194304
net = torch.nn.Sequential(torch.nn.Linear(3, 13), torch.nn.Tanh(), torch.nn.Linear(13, 3)).cuda()
for dtype in (torch.float32, torch.float16):
    m = net.to(dtype)
    x = torch.randn(n, 3, device="cuda", dtype=dtype)
    with torch.no_grad():
        for _ in range(10):
            m(x)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        reps = 100
        start.record()
        for _ in range(reps):
            m(x)
        end.record()
        torch.cuda.synchronize()
    secs = start.elapsed_time(end) * 1e-3 / reps
    print(f"torch eager {str(dtype).split('.')[-1]:8} {n} agents: {secs * 1e3:.3f} ms per pass, {n / secs:.3e} agents/s")
