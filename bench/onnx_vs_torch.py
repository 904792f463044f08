"""The learned force's ONNX graph as aiic writes it against the same MLP exported by PyTorch.

    python3 bench/onnx_vs_torch.py AIIC_BINARY [--torch-onnx FILE] [N ...]

Writes aiic's graphs (`aiic emit examples/learned_force.aii --target onnx`), exports the same
MLP (32 -> 64 -> 64 -> 3, tanh, the example's weights) with `torch.onnx.export`, and times both
in ONNX Runtime (CPU provider) and OpenVINO (CPU), whichever are installed, at each agent count:
the median of repeated runs after two warm-up runs, inputs already in memory. With
`--torch-onnx FILE`, FILE is the PyTorch export (made here, and kept there, where torch is
installed; read from there where it is not).

Two of aiic's graphs are timed: the model as aiic writes it (its `model/` nodes, from the
features stacked as a `[32, N]` matrix to the `[3, N]` forces: the same work as PyTorch's graph
on a prepared `[N, 32]` array), and the whole `learned` kernel, which also stacks the agents' 32
columns and adds the force into its 3 columns with a compensated sum.
"""

import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def torch_model():
    import torch

    w = lambda n: torch.from_numpy(np.load(os.path.join(ROOT, "examples/learned_force", n)).astype(np.float32))
    layers = []
    for i, act in [(1, True), (2, True), (3, False)]:
        wi, bi = w(f"l{i}_w.npy"), w(f"l{i}_b.npy")
        lin = torch.nn.Linear(wi.shape[1], wi.shape[0])
        with torch.no_grad():
            lin.weight.copy_(wi)
            lin.bias.copy_(bi)
        layers.append(lin)
        if act:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers).eval()


def export_torch(path):
    import torch

    x = torch.zeros(16, 32)
    torch.onnx.export(
        torch_model(), (x,), path, input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17, dynamo=False,
    )


def model_only(kernel_path, out_path):
    """The model of aiic's kernel graph as a graph of its own: from the input of its first
    product to the output of its `model/` region."""
    import onnx
    from onnx.utils import Extractor

    m = onnx.shape_inference.infer_shapes(onnx.load(kernel_path))
    region = [n for n in m.graph.node if n.name.startswith("model/")]
    consts = {i.name for i in m.graph.initializer}
    first = next(n for n in region if n.op_type in ("MatMul", "Gemm"))
    x = next(i for i in first.input if i not in consts)
    onnx.save(Extractor(m).extract_model([x], [region[-1].output[0]]), out_path)


def feeds(inputs, n, rng):
    """Random f32 values for each graph input: `N` dimensions are the agents."""
    out = {}
    for name, shape in inputs:
        dims = [n if (d is None or isinstance(d, str)) else d for d in shape]
        if name.startswith("params"):
            dims = [max(1, d if isinstance(d, int) else 8) for d in shape]
        out[name] = rng.standard_normal(dims).astype(np.float32)
    return out


def median_time(run, budget=1.0):
    run()
    run()
    times = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget and len(times) < 200):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def engines():
    found = []
    try:
        import onnxruntime as ort

        def ort_runner(path):
            s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            inputs = [(i.name, i.shape) for i in s.get_inputs()]
            return inputs, lambda f: s.run(None, f)

        found.append((f"onnxruntime {ort.__version__} CPU", ort_runner))
    except ImportError:
        pass
    try:
        import openvino as ov

        core = ov.Core()

        def ov_runner(path):
            m = core.read_model(path)
            inputs = [(i.get_any_name(), [d.get_length() if d.is_static else None for d in i.get_partial_shape()]) for i in m.inputs]
            c = core.compile_model(m, "CPU")
            req = c.create_infer_request()
            return inputs, lambda f: req.infer(f)

        found.append((f"openvino {ov.__version__} CPU", ov_runner))
    except ImportError:
        pass
    return found


def main():
    args = sys.argv[1:]
    aiic = args.pop(0)
    keep = None
    if args and args[0] == "--torch-onnx":
        keep = args[1]
        args = args[2:]
    counts = [int(float(a)) for a in args] or [10_000, 100_000, 1_000_000]
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([aiic, "emit", os.path.join(ROOT, "examples/learned_force.aii"), "--target", "onnx", "-o", d],
                       check=True, capture_output=True)
        (ours,) = glob.glob(os.path.join(d, "*_learned.onnx"))
        model = os.path.join(d, "model.onnx")
        model_only(ours, model)
        theirs = keep or os.path.join(d, "torch.onnx")
        try:
            import torch  # noqa: F401

            export_torch(theirs)
        except ImportError:
            if not (keep and os.path.isfile(keep)):
                sys.exit("torch is not installed: give the export made elsewhere with --torch-onnx FILE")
        print(f"{'engine':<28} {'agents':>9} {'model ms':>9} {'kernel ms':>9} {'torch ms':>9} {'model/torch':>11} {'kernel/torch':>12}")
        for name, runner in engines():
            m_in, m_run = runner(model)
            a_in, a_run = runner(ours)
            t_in, t_run = runner(theirs)
            for n in counts:
                fm, fa, ft = feeds(m_in, n, rng), feeds(a_in, n, rng), feeds(t_in, n, rng)
                tm = median_time(lambda: m_run(fm))
                ta = median_time(lambda: a_run(fa))
                tt = median_time(lambda: t_run(ft))
                print(
                    f"{name:<28} {n:>9} {tm * 1e3:>9.3f} {ta * 1e3:>9.3f} {tt * 1e3:>9.3f} {tm / tt:>11.2f} {ta / tt:>12.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
