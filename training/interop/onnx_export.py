"""``Model`` -> one ONNX graph: preprocessing, Gemm layers, activations, softmax.

The graph computes what ``/predict`` computes, from raw feature rows: the preprocessing
(preprocess.py), then one ``Gemm`` per layer (weights in bpserve's (n_in, n_out) layout, so
the initializers are the stored arrays unchanged) and its activation.  Names suit V2
clients: one input ``input`` (batch x features, the batch dimension dynamic) and one
output ``output``, as bpserve's own V2 routes name them.  Class labels, the loss and the
optimizer settings go into ``metadata_props`` (JSON values under ``bpserve.``), which is
how onnxruntime shows them (``custom_metadata_map``) and how ``import_onnx`` restores them.

OPSET is fixed, not "the newest the installed onnx knows", so the same model always
gives the same file, and runtimes a release or two behind read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper, numpy_helper

from training.interop.layers import InteropError
from training.interop.preprocess import Pre, export_nodes
from training.model import Model

OPSET = 21  # ONNX 1.16 (2024); onnxruntime 1.18 and later run it
IR_VERSION = 10  # the IR that goes with opset 21
INPUT, OUTPUT = "input", "output"
ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}


def export_onnx(
    model: Model, *, source: str | None = None, preprocessing: bool = True
) -> ModelProto:
    """The model as a checked ONNX graph.

    With ``preprocessing=False`` the graph starts at the network's input and its metadata
    (``bpserve.input``) says so: for preprocessing that has no ONNX form, applied outside.
    """
    net = model.network
    dtype = net.dtype
    if preprocessing:
        pre = export_nodes(model.standardizer, INPUT, dtype)
        expects = "raw feature rows"
    else:
        pre = Pre(output=INPUT)
        expects = "rows after the manifest's preprocessing (not in this graph)"
    nodes, inits = list(pre.nodes), list(pre.constants)
    a = pre.output
    last = len(net.layers) - 1
    for i, (w, b, act) in enumerate(zip(net.weights, net.biases, net.layers)):
        wt = numpy_helper.from_array(np.ascontiguousarray(w), f"layer{i}.weight")
        bt = numpy_helper.from_array(np.ascontiguousarray(b), f"layer{i}.bias")
        inits += [wt, bt]
        z = OUTPUT if i == last and act.name == "identity" else f"layer{i}.z"
        nodes.append(helper.make_node("Gemm", [a, wt.name, bt.name], [z], f"layer{i}/gemm"))
        a = z
        if act.name != "identity":
            out = OUTPUT if i == last else f"layer{i}.a"
            attrs = {"axis": -1} if act.name == "softmax" else {}
            nodes.append(
                helper.make_node(OPS[act.name], [z], [out], f"layer{i}/{act.name}", **attrs)
            )
            a = out
    elem = ELEM[dtype]
    graph = helper.make_graph(
        nodes,
        "bpserve_mlp",
        [helper.make_tensor_value_info(INPUT, elem, ["batch", net.n_inputs])],
        [helper.make_tensor_value_info(OUTPUT, elem, ["batch", net.n_outputs])],
        inits,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="bpserve",
        producer_version="0.1.0",
        ir_version=IR_VERSION,
        doc_string=f"bpserve MLP{' ' + source if source else ''}; input: {expects}",
    )
    o = model.optimizer
    meta = {
        "labels": model.labels,
        "loss": net.loss.name,
        "activations": net.activation_names,
        "learning_rate": o.learning_rate,
        "momentum": o.momentum,
        "feature_names": model.feature_names,
        "input": expects,
        "source": source,
    }
    helper.set_model_props(
        proto, {f"bpserve.{k}": json.dumps(v) for k, v in meta.items() if v is not None}
    )
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:  # a bug here, not bad input
        raise InteropError(f"exported graph fails onnx.checker: {exc}") from None
    return proto


def save_onnx(proto: ModelProto, path: str | Path) -> Path:
    """Write the graph whole or not at all: a temporary file, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
