#!/usr/bin/env python3
"""Writes the tensors of tensor_trap.aii as .npy files, without NumPy.

    python3 tests/programs/make_tensor_trap.py
"""
import os

import npy

save = npy.saver(os.path.dirname(os.path.abspath(__file__)))


# An anisotropic trap: force = W @ position, W negative definite and not diagonal.
save("tensor_trap_w.npy", "<f4", (3, 3), [-2.0, 0.3, 0.0, 0.3, -1.0, 0.2, 0.0, 0.2, -0.5])
# A read-out of two features of the velocity, with f16 weights.
save("tensor_trap_m.npy", "<f2", (2, 3), [0.5, -0.25, 0.125, 1.0, 0.75, -0.5])
