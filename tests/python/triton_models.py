"""The models of Triton's client examples, rebuilt as ONNX files with onnx.helper.

Triton's `simple_*` client examples talk to four models of Triton's own test repository:
`simple` (INT32 INPUT0 + INPUT1 -> OUTPUT0, INPUT0 - INPUT1 -> OUTPUT1, 16 per row, batches of
up to 8), `simple_int8` (the same on INT8), `simple_string` (the same on BYTES holding decimal
numbers) and `simple_identity` (BYTES in, the same out). `write_triton_models(folder)` writes them as a Lectern repository.
"""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper


def _save(folder: Path, name: str, graph, config: str):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (folder / name / "1").mkdir(parents=True, exist_ok=True)
    (folder / name / "1" / "model.onnx").write_bytes(model.SerializeToString())
    (folder / name / "config.toml").write_text(config)


def _io(names, kind):
    return [helper.make_tensor_value_info(n, kind, ["N", 16]) for n in names]


def simple(folder: Path, name: str = "simple", kind=TensorProto.INT32):
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    graph = helper.make_graph(nodes, name, _io(["INPUT0", "INPUT1"], kind), _io(["OUTPUT0", "OUTPUT1"], kind))
    _save(folder, name, graph, "max_batch_size = 8\n")


def simple_string(folder: Path):
    nodes = [
        helper.make_node("Cast", ["INPUT0"], ["a"], to=TensorProto.INT32),
        helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.INT32),
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Sub", ["a", "b"], ["diff"]),
        helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=TensorProto.STRING),
        helper.make_node("Cast", ["diff"], ["OUTPUT1"], to=TensorProto.STRING),
    ]
    graph = helper.make_graph(nodes, "simple_string", _io(["INPUT0", "INPUT1"], TensorProto.STRING),
                              _io(["OUTPUT0", "OUTPUT1"], TensorProto.STRING))
    _save(folder, "simple_string", graph, "max_batch_size = 8\n")


def simple_identity(folder: Path):
    graph = helper.make_graph([helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "simple_identity",
                              _io(["INPUT0"], TensorProto.STRING), _io(["OUTPUT0"], TensorProto.STRING))
    _save(folder, "simple_identity", graph, "max_batch_size = 8\n")


def write_triton_models(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    simple(folder)
    simple(folder, "simple_int8", TensorProto.INT8)
    simple_string(folder)
    simple_identity(folder)
    return folder
