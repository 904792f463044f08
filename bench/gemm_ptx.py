#!/usr/bin/env python3
"""Check and time a GEMM kernel written by aiic's `backend/gpu/gemm.rs` against torch (cuBLAS).

Usage:
    python3 bench/gemm_ptx.py KERNEL.ptx [--n N ...] [--iters 20] [overrides]

The kernel's geometry comes from the JSON sidecar next to it (KERNEL.json, written by the Rust
test `gemm::tests::bench_kernels` with AIIC_GEMM_OUT=DIR):
    {"entry", "rows", "cols", "accumulate", "block", "tile_m", "tile_n", "tile_k",
     "dyn_shared", "bench_n": [...]}
Without a sidecar, or to override it, pass --entry --rows --cols --block --tile-m --tile-n
--tile-k --dyn-shared [--accumulate]. Agent counts: each --n, else the sidecar's bench_n.

What it does per agent count n: S = n rounded up to 128; x f16 [cols][S], W f16 [Mp][Kp]
zero-padded, bias f32 [Mp] zero-padded, y f32 [Mp+1][S] (random when accumulating, else NaN
so that a missing store shows; rows past `rows` and lanes past n must come back unchanged); launches the kernel on grid (ceil(n/tile_n), Mp/tile_m, 1), checks
y[:rows,:n] against (W[:rows,:cols] @ x[:cols,:n]) in f32 + bias (+ y0), prints max |err| /
max |ref| and whether anything past n (or in the padding lanes) was written, then times `iters`
launches with CUDA events against torch.matmul (f16 out, and f32 out where torch.mm takes
out_dtype) on the same GEMM, printing TFLOP/s (2*rows*cols*n / t) and the ratio.

Needs torch with CUDA and the driver (libcuda.so.1); no nvcc. Driver errors are reported by name
(cuGetErrorName) with the JIT log, and the script exits with status 1.
"""

import argparse
import ctypes
import json
import math
import os
import sys


class DriverError(Exception):
    pass


CU_JIT_INFO_LOG_BUFFER = 3
CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4
CU_JIT_ERROR_LOG_BUFFER = 5
CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6
CU_JIT_LOG_VERBOSE = 12
CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0
CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3
CU_FUNC_ATTRIBUTE_NUM_REGS = 4
CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8


class Driver:
    def __init__(self):
        try:
            self.lib = ctypes.CDLL("libcuda.so.1")
        except OSError as e:
            raise DriverError(f"cannot load libcuda.so.1: {e}")
        self.check(self.lib.cuInit(0), "cuInit")

    def name(self, res):
        p = ctypes.c_char_p()
        if self.lib.cuGetErrorName(res, ctypes.byref(p)) == 0 and p.value:
            return p.value.decode()
        return f"CUresult {res}"

    def check(self, res, what, log=""):
        if res != 0:
            msg = f"{what} failed: {self.name(res)} ({res})"
            if log:
                msg += "\n" + log
            raise DriverError(msg)

    def current_context(self):
        ctx = ctypes.c_void_p()
        self.check(self.lib.cuCtxGetCurrent(ctypes.byref(ctx)), "cuCtxGetCurrent")
        if not ctx.value:
            # torch normally leaves its primary context current; fall back to retaining it.
            dev = ctypes.c_int()
            self.check(self.lib.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
            self.check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
            self.check(self.lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        return ctx

    def load(self, ptx_bytes, entry):
        size = 1 << 16
        info = ctypes.create_string_buffer(size)
        err = ctypes.create_string_buffer(size)
        opts = (ctypes.c_int * 5)(
            CU_JIT_INFO_LOG_BUFFER,
            CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
            CU_JIT_ERROR_LOG_BUFFER,
            CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
            CU_JIT_LOG_VERBOSE,
        )
        vals = (ctypes.c_void_p * 5)(
            ctypes.cast(info, ctypes.c_void_p), size, ctypes.cast(err, ctypes.c_void_p), size, 1
        )
        mod = ctypes.c_void_p()
        image = ctypes.create_string_buffer(ptx_bytes + b"\0")
        res = self.lib.cuModuleLoadDataEx(ctypes.byref(mod), image, 5, opts, vals)
        self.check(res, "cuModuleLoadDataEx (PTX JIT)", err.value.decode(errors="replace"))
        fn = ctypes.c_void_p()
        self.check(self.lib.cuModuleGetFunction(ctypes.byref(fn), mod, entry.encode()), f"cuModuleGetFunction({entry})")
        return mod, fn, info.value.decode(errors="replace")

    def attr(self, fn, a):
        v = ctypes.c_int()
        self.check(self.lib.cuFuncGetAttribute(ctypes.byref(v), a, fn), "cuFuncGetAttribute")
        return v.value

    def launch(self, fn, grid, block, shared, stream, args):
        ptrs = (ctypes.c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
        res = self.lib.cuLaunchKernel(
            fn, grid[0], grid[1], grid[2], block, 1, 1, shared, ctypes.c_void_p(stream), ptrs, None
        )
        self.check(res, "cuLaunchKernel")

    def sync(self):
        self.check(self.lib.cuCtxSynchronize(), "cuCtxSynchronize (kernel execution)")


def geometry(args):
    meta = {}
    side = os.path.splitext(args.ptx)[0] + ".json"
    if os.path.exists(side):
        with open(side) as f:
            meta = json.load(f)
    over = {
        "entry": args.entry,
        "rows": args.rows,
        "cols": args.cols,
        "block": args.block,
        "tile_m": args.tile_m,
        "tile_n": args.tile_n,
        "tile_k": args.tile_k,
        "dyn_shared": args.dyn_shared,
    }
    for k, v in over.items():
        if v is not None:
            meta[k] = v
    if args.accumulate:
        meta["accumulate"] = True
    meta.setdefault("accumulate", False)
    missing = [k for k in over if k not in meta]
    if missing:
        sys.exit(f"error: no sidecar {side} and missing --{' --'.join(m.replace('_', '-') for m in missing)}")
    ns = args.n or meta.get("bench_n") or []
    if not ns:
        sys.exit("error: no agent count: pass --n N (the sidecar has no bench_n)")
    return meta, ns


def time_ms(torch, fn, iters):
    for _ in range(3):
        fn()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def run(args):
    meta, ns = geometry(args)
    import torch

    if not torch.cuda.is_available():
        raise DriverError("torch sees no CUDA device")
    torch.cuda.init()
    torch.zeros(1, device="cuda").add_(1)  # makes torch's primary context current
    torch.cuda.synchronize()
    drv = Driver()
    drv.current_context()
    with open(args.ptx, "rb") as f:
        ptx = f.read()
    mod, fn, jit_log = drv.load(ptx, meta["entry"])
    rows, cols, acc = meta["rows"], meta["cols"], meta["accumulate"]
    tm, tn, tk, block, dyn = meta["tile_m"], meta["tile_n"], meta["tile_k"], meta["block"], meta["dyn_shared"]
    if dyn > 48 * 1024:
        drv.check(
            drv.lib.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, dyn),
            f"cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES={dyn})",
        )
    regs = drv.attr(fn, CU_FUNC_ATTRIBUTE_NUM_REGS)
    local = drv.attr(fn, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)
    maxt = drv.attr(fn, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)
    print(f"{os.path.basename(args.ptx)}: entry {meta['entry']} on {torch.cuda.get_device_name()}")
    print(f"  rows={rows} cols={cols} accumulate={acc} block={block} tile={tm}x{tn}x{tk} dyn_shared={dyn}")
    print(f"  driver JIT: {regs} registers, {local} bytes local, max {maxt} threads/block")
    if args.verbose and jit_log.strip():
        print("  JIT log: " + jit_log.strip().replace("\n", "\n    "))
    mp, kp = math.ceil(rows / tm) * tm, math.ceil(cols / tk) * tk
    stream = torch.cuda.current_stream().cuda_stream
    ok = True
    for n in ns:
        s = max(128, math.ceil(n / 128) * 128)
        g = torch.Generator(device="cuda").manual_seed(1234 + n)
        x = torch.randn(cols, s, device="cuda", dtype=torch.float16, generator=g)
        w = torch.zeros(mp, kp, device="cuda", dtype=torch.float16)
        w[:rows, :cols] = (torch.randn(rows, cols, device="cuda", generator=g) / math.sqrt(cols)).half()
        bias = torch.zeros(mp, device="cuda", dtype=torch.float32)
        bias[:rows] = torch.randn(rows, device="cuda", generator=g)
        # y gets Mp - rows + 1 extra rows, so that a store past `rows` shows (they must stay as set).
        ry = mp + 1
        if acc:
            y0 = torch.randn(ry, s, device="cuda", generator=g)
        else:
            y0 = torch.full((ry, s), float("nan"), device="cuda")
        y = y0.clone()
        grid = (max(1, math.ceil(n / tn)), mp // tm, 1)
        params = [
            ctypes.c_uint64(x.data_ptr()),
            ctypes.c_uint64(w.data_ptr()),
            ctypes.c_uint64(bias.data_ptr()),
            ctypes.c_uint64(y.data_ptr()),
            ctypes.c_uint32(n),
            ctypes.c_uint32(s),
        ]
        torch.cuda.synchronize()
        drv.launch(fn, grid, block, dyn, stream, params)
        drv.sync()
        ref = w[:rows, :cols].float() @ x[:, :n].float() + bias[:rows, None]
        if acc:
            ref = ref + y0[:rows, :n]
        got = y[:rows, :n]
        err = (got - ref).abs().max().item()
        scale = ref.abs().max().item()
        rel = err / scale if scale > 0 else err
        nan = torch.isnan(got).any().item()
        # Everything outside [:rows, :n] must be exactly as it was.
        keep = torch.ones_like(y, dtype=torch.bool)
        keep[:rows, :n] = False
        same = (y == y0) | (torch.isnan(y) & torch.isnan(y0))
        untouched = bool(same[keep].all().item())
        good = (not nan) and rel < 5e-3 and untouched
        ok &= good
        print(f"  n={n} S={s} grid={grid}: max|err|/max|ref| = {rel:.3e} (max|ref| {scale:.3g})"
              f"{'  NaN in output' if nan else ''}{'' if untouched else '  WROTE OUTSIDE [:rows, :n]'}"
              f"  -> {'ok' if good else 'FAIL'}")
        if args.no_time:
            continue
        flops = 2.0 * rows * cols * n
        t = time_ms(torch, lambda: drv.launch(fn, grid, block, dyn, stream, params), args.iters)
        drv.sync()
        a16 = w[:rows, :cols].contiguous()
        b16 = x[:, :n].contiguous()
        tc = time_ms(torch, lambda: torch.matmul(a16, b16), args.iters)
        line = (f"    kernel {t * 1e3:9.1f} us {flops / t / 1e9:7.1f} TFLOP/s | cuBLAS f16-out "
                f"{tc * 1e3:9.1f} us {flops / tc / 1e9:7.1f} TFLOP/s | kernel/cuBLAS {tc / t:.2f}")
        try:
            torch.mm(a16, b16, out_dtype=torch.float32)
            tf = time_ms(torch, lambda: torch.mm(a16, b16, out_dtype=torch.float32), args.iters)
            line += f" | cuBLAS f32-out {flops / tf / 1e9:7.1f} TFLOP/s, ratio {tf / t:.2f}"
        except (TypeError, RuntimeError) as e:
            line += f" | (no f32-out mm: {type(e).__name__})"
        print(line)
    drv.lib.cuModuleUnload(mod)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ptx")
    ap.add_argument("--n", type=int, action="append", help="agent count (repeatable)")
    ap.add_argument("--entry")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--cols", type=int)
    ap.add_argument("--block", type=int)
    ap.add_argument("--tile-m", type=int)
    ap.add_argument("--tile-n", type=int)
    ap.add_argument("--tile-k", type=int)
    ap.add_argument("--dyn-shared", type=int)
    ap.add_argument("--accumulate", action="store_true")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--no-time", action="store_true", help="check only")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the JIT info log")
    args = ap.parse_args()
    try:
        ok = run(args)
    except DriverError as e:
        print(f"error: {args.ptx}: {e}", file=sys.stderr)
        sys.exit(1)
    except RuntimeError as e:  # torch's own CUDA errors, e.g. after a faulting kernel
        print(f"error: {args.ptx}: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0 if ok else 2)


if __name__ == "__main__":
    main()
