#!/usr/bin/env python3
"""Writes the weights of mlp_field.aii as .npy files, without NumPy, from a fixed seed.

    python3 tests/programs/make_mlp_field.py
"""
import os
import random

import npy

save = npy.saver(os.path.dirname(os.path.abspath(__file__)))
rng = random.Random(20261202)


def uniform(n, scale):
    return [rng.uniform(-scale, scale) for _ in range(n)]


# A force field 3 -> 13 -> 3 (13: not a multiple of any tile), f32.
save("mlp_w1.npy", "<f4", (13, 3), uniform(13 * 3, 1.0))
save("mlp_b1.npy", "<f4", (13,), uniform(13, 0.5))
save("mlp_w2.npy", "<f4", (3, 13), uniform(3 * 13, 0.3))
save("mlp_b2.npy", "<f4", (3,), uniform(3, 0.1))
# A read-out 6 -> 5 -> 1 of position and velocity, f16 weights.
save("mlp_r1.npy", "<f2", (5, 6), uniform(5 * 6, 1.0))
save("mlp_c1.npy", "<f2", (5,), uniform(5, 0.5))
save("mlp_r2.npy", "<f2", (1, 5), uniform(5, 1.0))
save("mlp_c2.npy", "<f2", (1,), uniform(1, 0.1))
