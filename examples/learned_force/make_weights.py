#!/usr/bin/env python3
"""Writes the weights of examples/learned_force.aii as .npy files, without NumPy, from a fixed
seed: an MLP 32 -> 64 -> 64 -> 3 (tanh) and the projection that gives each agent its embedding.

    python3 examples/learned_force/make_weights.py
"""
import math
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20261202)


def save(name, shape, values):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % (
        ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else ""),
    )
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        for v in values:
            f.write(struct.pack("<f", v))


def linear(name, rows, cols, gain):
    # PyTorch's default initialisation scale, times a gain that keeps tanh out of saturation.
    bound = gain / math.sqrt(cols)
    save(f"{name}_w.npy", (rows, cols), [rng.uniform(-bound, bound) for _ in range(rows * cols)])
    save(f"{name}_b.npy", (rows,), [rng.uniform(-bound, bound) for _ in range(rows)])


save("embed.npy", (26, 3), [rng.gauss(0.0, 1.0) for _ in range(26 * 3)])
linear("l1", 64, 32, 1.5)
linear("l2", 64, 64, 1.5)
linear("l3", 3, 64, 1.0)
