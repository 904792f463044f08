#!/usr/bin/env python3
"""Writes bench/mlp_tc_embed.npy, the projection that gives each agent of bench/mlp_tc.aii its
32 features, without NumPy, from a fixed seed.

    python3 bench/make_mlp_tc.py
"""
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(7)
values = [rng.gauss(0, 1) for _ in range(32 * 3)]
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (32, 3), }"
header = header + " " * (64 - (10 + len(header) + 1) % 64) + "\n"
with open(os.path.join(HERE, "mlp_tc_embed.npy"), "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
    for v in values:
        f.write(struct.pack("<f", v))
