#!/usr/bin/env python3
"""Writes the weights of tensor_cores.aii as .npy files, without NumPy, from a fixed seed.

    python3 tests/programs/make_tensor_cores.py
"""
import os
import random

import npy

save = npy.saver(os.path.dirname(os.path.abspath(__file__)))
rng = random.Random(20261203)


def uniform(n, scale):
    return [rng.uniform(-scale, scale) for _ in range(n)]


# A force 6 -> 20 -> 3 (silu) of position and velocity.
save("tc_w1.npy", "<f4", (20, 6), uniform(20 * 6, 0.8))
save("tc_b1.npy", "<f4", (20,), uniform(20, 0.3))
save("tc_w2.npy", "<f4", (3, 20), uniform(3 * 20, 0.4))
save("tc_b2.npy", "<f4", (3,), uniform(3, 0.1))
# A read-out W @ velocity, 2 x 3.
save("tc_r.npy", "<f4", (2, 3), uniform(2 * 3, 1.0))
