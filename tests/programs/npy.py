"""Writes little-endian `.npy` files (format 1.0, C order) without NumPy: the one writer of the
weight scripts of the tests, the examples and the benchmarks."""
import os
import struct


def save(path, dtype, shape, values):
    fmt = {"<f4": "<f", "<f2": "<e", "<f8": "<d"}[dtype]
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype,
        ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else ""),
    )
    # The magic, version, header length and header fill a multiple of 64 bytes, ending in '\n'.
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        for v in values:
            f.write(struct.pack(fmt, v))


def saver(directory):
    """`save` for files named relative to `directory`."""
    return lambda name, dtype, shape, values: save(os.path.join(directory, name), dtype, shape, values)
