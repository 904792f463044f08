#!/usr/bin/env python3
"""Writes bench/mlp_tc_embed.npy, the projection that gives each agent of bench/mlp_tc.aii its
32 features, without NumPy, from a fixed seed.

    python3 bench/make_mlp_tc.py
"""
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "programs"))
import npy  # noqa: E402

rng = random.Random(7)
npy.save(os.path.join(HERE, "mlp_tc_embed.npy"), "<f4", (32, 3), [rng.gauss(0, 1) for _ in range(32 * 3)])
