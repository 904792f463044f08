#!/usr/bin/env python3
"""Writes the weights of examples/learned_force.aii as .npy files, without NumPy, from a fixed
seed: an MLP 32 -> 64 -> 64 -> 3 (tanh) and the projection that gives each agent its embedding.

    python3 examples/learned_force/make_weights.py
"""
import math
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "programs"))
import npy  # noqa: E402

save = npy.saver(HERE)
rng = random.Random(20261202)


def linear(name, rows, cols, gain):
    # PyTorch's default initialisation scale, times a gain that keeps tanh out of saturation.
    bound = gain / math.sqrt(cols)
    save(f"{name}_w.npy", "<f4", (rows, cols), [rng.uniform(-bound, bound) for _ in range(rows * cols)])
    save(f"{name}_b.npy", "<f4", (rows,), [rng.uniform(-bound, bound) for _ in range(rows)])


save("embed.npy", "<f4", (26, 3), [rng.gauss(0.0, 1.0) for _ in range(26 * 3)])
linear("l1", 64, 32, 1.5)
linear("l2", 64, 64, 1.5)
linear("l3", 3, 64, 1.0)
