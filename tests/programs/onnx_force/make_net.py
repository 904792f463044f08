"""Writes net.onnx: the learned-force MLP of examples/learned_force (32 -> 64 -> 64 -> 3, tanh)
as an ONNX graph in three spellings of a dense layer: Gemm with transB = 1 (as torch.onnx.export
writes Linear), MatMul then Add of a Constant node, and Gemm with B as [in, out].

    python3 tests/programs/onnx_force/make_net.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
weights = os.path.join(here, "../../../examples/learned_force")
w = [np.load(os.path.join(weights, f"l{i}_w.npy")).astype(np.float32) for i in (1, 2, 3)]
b = [np.load(os.path.join(weights, f"l{i}_b.npy")).astype(np.float32) for i in (1, 2, 3)]
nodes = [
    helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], transB=1),
    helper.make_node("Tanh", ["h1"], ["a1"]),
    helper.make_node("Constant", [], ["b2"], value=numpy_helper.from_array(b[1], "b2")),
    helper.make_node("MatMul", ["a1", "w2t"], ["m2"]),
    helper.make_node("Add", ["m2", "b2"], ["h2"]),
    helper.make_node("Tanh", ["h2"], ["a2"]),
    helper.make_node("Gemm", ["a2", "w3t", "b3"], ["y"]),
]
inits = [
    numpy_helper.from_array(w[0], "w1"),
    numpy_helper.from_array(b[0], "b1"),
    numpy_helper.from_array(np.ascontiguousarray(w[1].T), "w2t"),
    numpy_helper.from_array(np.ascontiguousarray(w[2].T), "w3t"),
    numpy_helper.from_array(b[2], "b3"),
]
graph = helper.make_graph(
    nodes, "learned_force", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_net.py")
onnx.checker.check_model(model, full_check=True)
onnx.save(model, os.path.join(here, "net.onnx"))
