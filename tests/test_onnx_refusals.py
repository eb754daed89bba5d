"""Graphs and modules bpserve cannot compute are refused, naming the node or module, and
nothing is published."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.server import ROOT
from training.interop import InteropError, from_torch, import_onnx
from training.store import ModelStore


def bptrain(*args):
    return subprocess.run(
        [sys.executable, "-m", "training", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_from_torch_refuses_other_modules():
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(), torch.nn.Linear(3, 2))
    with pytest.raises(InteropError, match=r"module 1 \(Dropout\) is not supported"):
        from_torch(module)
    with pytest.raises(InteropError, match="LogSoftmax"):
        from_torch(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LogSoftmax(dim=1)))


def _graph_file(tmp_path, nodes, inputs, inits, name):
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), path)
    return path


def test_unsupported_graphs_are_refused_naming_the_node(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    k = numpy_helper.from_array(np.ones((2, 1, 3), np.float32), "k")
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])
    conv = _graph_file(
        tmp_path,
        [
            helper.make_node("Conv", ["input", "k"], ["c"], "the_conv"),
            helper.make_node("MatMul", ["c", "w"], ["output"], "mm"),
        ],
        [x],
        [w, k],
        "conv",
    )
    x2 = helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["batch", 2])
    two = _graph_file(
        tmp_path,
        [
            helper.make_node("MatMul", ["input", "w"], ["z"], "mm"),
            helper.make_node("Add", ["z", "extra"], ["output"], "adds_second_input"),
        ],
        [x, x2],
        [w],
        "two",
    )
    store = tmp_path / "store"
    for path, message in [
        (conv, "node 'the_conv' (Conv) is not supported"),
        (
            two,
            "graph has 2 inputs ('input', 'extra'), bpserve takes one; "
            "node 'adds_second_input' (Add) reads 'extra'",
        ),
    ]:
        run = bptrain("import", path, "--name", "refused", "--models-dir", store)
        assert run.returncode == 3 and message in run.stderr, run.stderr
        with pytest.raises(InteropError, match=r"not supported|2 inputs"):
            import_onnx(path.read_bytes())
    assert ModelStore(store).versions("refused") == []


def test_a_layer_after_the_output_is_refused(tmp_path):
    """A Gemm chain followed by a value-changing op (here Mul) is not taken as a tail."""
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    two = numpy_helper.from_array(np.float32(2), "two")
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])
    path = _graph_file(
        tmp_path,
        [
            helper.make_node("Gemm", ["input", "w"], ["z"], "g0"),
            helper.make_node("Sigmoid", ["z"], ["a"], "s0"),
            helper.make_node("Mul", ["a", "two"], ["output"], "doubles"),
        ],
        [x],
        [w, two],
        "mul",
    )
    with pytest.raises(InteropError, match=r"node 'doubles' \(Mul\) is not supported"):
        import_onnx(path.read_bytes())


def test_not_onnx_and_external_data_outside_the_folder(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a protobuf at all\xff" * 3)
    run = bptrain("import", bad, "--name", "x", "--models-dir", tmp_path / "store")
    assert run.returncode == 3 and "not an ONNX model" in run.stderr, run.stderr
    # A weight whose data is said to live in ../secret: refused, not read.
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../secret")
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"], "mm")],
        "g",
        [x],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])],
        [w],
    )
    path = tmp_path / "ext.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    run = bptrain("import", path, "--name", "x", "--models-dir", tmp_path / "store")
    assert run.returncode == 3 and "is not a file beside it" in run.stderr, run.stderr
    assert ModelStore(tmp_path / "store").versions("x") == []
