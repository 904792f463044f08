#!/usr/bin/env python3
"""Writes the operands of bench/gemm.aii without NumPy, from a fixed seed: gemm_w.npy (the
4096 x 4096 f16 matrix, 32 MB, not kept in the repository) and gemm_embed.npy (the projection
that gives each agent its 4096 features).

    python3 bench/make_gemm.py
"""
import math
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "programs"))
import npy  # noqa: E402

N = 4096
rng = random.Random(20261206)
path = os.path.join(HERE, "gemm_w.npy")
if not os.path.exists(path):
    # Row by row: sixteen million values through npy.save's one-at-a-time writer take minutes.
    tmp = path + ".partial"
    npy.save(tmp, "<f2", (N, N), [])
    bound = 1.0 / math.sqrt(N)
    with open(tmp, "ab") as f:
        for _ in range(N):
            f.write(struct.pack("<%de" % N, *[rng.uniform(-bound, bound) for _ in range(N)]))
    os.replace(tmp, path)
npy.save(os.path.join(HERE, "gemm_embed.npy"), "<f4", (N, 3), [rng.gauss(0, 1) for _ in range(N * 3)])
