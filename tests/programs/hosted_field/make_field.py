"""Writes field.onnx: a force of position and velocity that is not a chain of dense layers, so
aiic runs it as it is (a hosted model):

    force = -K * position - C * velocity + A * sin(W * position)

with K = 4, C = 0.5, A = 1.5, W = 2, on input rows [position, velocity] (6 values per agent).

    python3 tests/programs/hosted_field/make_field.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
c = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.float32), name)
i64 = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.int64), name)
nodes = [
    helper.make_node("Slice", ["x", "s0", "s3", "ax"], ["pos"]),
    helper.make_node("Slice", ["x", "s3", "s6", "ax"], ["vel"]),
    helper.make_node("Mul", ["pos", "W"], ["wp"]),
    helper.make_node("Sin", ["wp"], ["s"]),
    helper.make_node("Mul", ["s", "A"], ["as"]),
    helper.make_node("Mul", ["pos", "K"], ["kp"]),
    helper.make_node("Mul", ["vel", "C"], ["cv"]),
    helper.make_node("Sub", ["as", "kp"], ["t"]),
    helper.make_node("Sub", ["t", "cv"], ["y"]),
]
inits = [i64("s0", [0]), i64("s3", [3]), i64("s6", [6]), i64("ax", [1]),
         c("W", 2.0), c("A", 1.5), c("K", 4.0), c("C", 0.5)]
graph = helper.make_graph(
    nodes, "hosted_field", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_field.py")
# IR version 8, the one of opset 17: ONNX Runtime reads only the versions it knows.
model.ir_version = 8
onnx.checker.check_model(model, full_check=True)
onnx.save(model, os.path.join(here, "field.onnx"))
