#!/usr/bin/env python3
"""Writes the tensors of tensor_trap.aii as .npy files, without NumPy (format 1.0, C order).

    python3 tests/programs/make_tensor_trap.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def save(name, dtype, shape, values):
    fmt = {"<f4": "<f", "<f2": "<e", "<f8": "<d"}[dtype]
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype,
        ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else ""),
    )
    # The magic, version, header length and header fill a multiple of 64 bytes, ending in '\n'.
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        for v in values:
            f.write(struct.pack(fmt, v))


# An anisotropic trap: force = W @ position, W negative definite and not diagonal.
save("tensor_trap_w.npy", "<f4", (3, 3), [-2.0, 0.3, 0.0, 0.3, -1.0, 0.2, 0.0, 0.2, -0.5])
# A read-out of two features of the velocity, with f16 weights.
save("tensor_trap_m.npy", "<f2", (2, 3), [0.5, -0.25, 0.125, 1.0, 0.75, -0.5])
