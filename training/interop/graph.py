"""Walking an ONNX graph: one input, one chain of dense layers and activations, a tail.

The chain starts at the graph's single input: optional preprocessing (preprocess.py),
then ``Gemm`` or ``MatMul`` (+ ``Add``) layers with ``Relu``, ``Sigmoid``, ``Tanh``,
``Softmax`` or ``Identity`` between them; ``Cast`` to a float type and ``Identity`` pass
through.  That is what ``torch.onnx.export`` writes for an ``nn.Sequential`` of those
modules (both exporters) and what skl2onnx writes for ``MLPClassifier``/``MLPRegressor``.

What follows the chain may only pick labels out of its result (skl2onnx's ``ArgMax``,
``ArrayFeatureExtractor``, ``ZipMap``, ``Reshape``, ``Cast``), or be skl2onnx's binary
``[1 - p, p]`` (``Sub`` from 1, ``Concat``).  Every other node, a second input, or a
branch is refused with the node's name and op: serving a graph bpserve only half
understood would answer with numbers its author never computed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from onnx import GraphProto, NodeProto, helper, numpy_helper

from training.interop.layers import Act, Dense, InteropError
from training.interop.preprocess import Prefix, check_elem_type

ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}
TAIL = ("ArgMax", "ArrayFeatureExtractor", "ZipMap", "Reshape", "Cast", "Identity")
FLOATS = (1, 11)  # TensorProto.FLOAT, DOUBLE
DOMAINS = ("", "ai.onnx", "ai.onnx.ml")

Array = np.ndarray


@dataclass
class Walk:
    """What a graph holds, as bpserve reads it."""

    input_name: str
    n_features: int | None
    steps: list[Dense | Act] = field(default_factory=list)
    prefix: Prefix = field(default_factory=Prefix)
    labels: list[str] | None = None
    binary: bool = False  # the tail makes [1 - p, p] of a one-unit sigmoid


def _what(node: NodeProto) -> str:
    return f"node {node.name or '(unnamed)'!r} ({node.op_type})"


def _attrs(node: NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def constants(graph: GraphProto) -> dict[str, Array]:
    """Initializers and the values of Constant nodes, by tensor name."""
    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and "value" in _attrs(node):
            out[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
    return out


def walk(graph: GraphProto) -> Walk:
    consts = constants(graph)
    for node in graph.node:
        if node.domain not in DOMAINS:
            raise InteropError(f"{_what(node)}: operator domain {node.domain!r} not supported")
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        readers = [n for n in graph.node if any(i.name in n.input for i in inputs[1:])]
        named = ", ".join(repr(i.name) for i in inputs)
        extra = f"; {_what(readers[0])} reads {inputs[1].name!r}" if readers else ""
        raise InteropError(f"graph has {len(inputs)} inputs ({named}), bpserve takes one{extra}")
    inp = inputs[0]
    tt = inp.type.tensor_type
    check_elem_type(tt.elem_type)
    dims = list(tt.shape.dim)
    if tt.HasField("shape") and len(dims) != 2:
        raise InteropError(
            f"input {inp.name!r} has {len(dims)} dimensions; expected (batch, features)"
        )
    n_features = dims[1].dim_value if len(dims) == 2 and dims[1].dim_value else None

    readers: dict[str, list[NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    result = Walk(inp.name, n_features)
    used: set[int] = set()
    cur, started = inp.name, False
    while True:
        nexts = [n for n in readers[cur] if n.op_type != "Constant"]
        if not nexts:
            break
        if started and _is_tail(nexts) and not (len(nexts) == 1 and _passes(nexts[0])):
            break
        if len(nexts) != 1:
            raise InteropError(
                f"tensor {cur!r} feeds {len(nexts)} nodes ({', '.join(_what(n) for n in nexts)}); "
                "an MLP is one chain"
            )
        node = nexts[0]
        op = node.op_type
        if op in ("Gemm", "MatMul"):
            started = True
            cur = _dense(node, cur, consts, readers, result, used)
            continue
        if op in ACTIVATIONS and started:
            _check_softmax(node)
            result.steps.append(Act(ACTIVATIONS[op], _what(node)))
        elif _passes(node):
            pass
        elif not started and (op in Prefix.OPS):
            result.prefix.take(node, _operand(node, cur, consts), _attrs(node))
        else:
            raise InteropError(f"{_what(node)} is not supported in an MLP")
        used.add(id(node))
        cur = node.output[0]
    if not started:
        raise InteropError("no dense layer (Gemm or MatMul) after the input")
    _read_tail(graph, cur, consts, used, result)
    return result


def _passes(node: NodeProto) -> bool:
    """A node that leaves float values as they are."""
    return node.op_type == "Identity" or (
        node.op_type == "Cast" and _attrs(node).get("to") in FLOATS
    )


def _is_tail(nodes: list[NodeProto]) -> bool:
    return all(n.op_type in (*TAIL, "Sub", "Concat") for n in nodes)


def _operand(node: NodeProto, cur: str, consts: dict[str, Array]) -> Array | None:
    others = [x for x in node.input if x != cur]
    if node.input[0] != cur and node.op_type in ("Sub", "Div"):
        raise InteropError(f"{_what(node)}: the input must come first")
    return consts.get(others[0]) if len(others) == 1 else None


def _check_softmax(node: NodeProto) -> None:
    if node.op_type == "Softmax" and _attrs(node).get("axis", -1) not in (1, -1):
        raise InteropError(f"{_what(node)}: softmax over axis {_attrs(node)['axis']}, not classes")


def _dense(node, cur, consts, readers, result: Walk, used: set[int]) -> str:
    """Read a Gemm, or a MatMul and the Add that follows it, into a Dense step."""
    a = _attrs(node)
    if node.input[0] != cur or len(node.input) < 2 or node.input[1] not in consts:
        raise InteropError(f"{_what(node)}: expects the previous layer times a constant weight")
    w = consts[node.input[1]]
    if w.ndim != 2:
        raise InteropError(f"{_what(node)}: weight {node.input[1]!r} has shape {w.shape}")
    used.add(id(node))
    out = node.output[0]
    if node.op_type == "Gemm":
        if a.get("transA", 0):
            raise InteropError(f"{_what(node)}: transA is not supported")
        w = w.T if a.get("transB", 0) else w
        if a.get("alpha", 1.0) != 1.0:
            w = w * np.asarray(a["alpha"], dtype=w.dtype)
        bias = np.zeros(w.shape[1], dtype=w.dtype)
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in consts:
                raise InteropError(f"{_what(node)}: bias {node.input[2]!r} is not a constant")
            bias = _bias(consts[node.input[2]], w.shape[1], node)
            if a.get("beta", 1.0) != 1.0:
                bias = bias * np.asarray(a["beta"], dtype=bias.dtype)
    else:
        bias = np.zeros(w.shape[1], dtype=w.dtype)
        nxt = readers[out]
        if len(nxt) == 1 and nxt[0].op_type == "Add":
            add = nxt[0]
            other = [x for x in add.input if x != out]
            if len(other) == 1 and other[0] in consts:
                bias = _bias(consts[other[0]], w.shape[1], add)
                used.add(id(add))
                out = add.output[0]
    result.steps.append(Dense(np.ascontiguousarray(w), bias, _what(node)))
    return out


def _bias(b: Array, n_out: int, node: NodeProto) -> Array:
    if b.size == 1:
        return np.full(n_out, b.reshape(()), dtype=b.dtype)
    if b.size != n_out or (b.ndim == 2 and b.shape[0] != 1) or b.ndim > 2:
        raise InteropError(f"{_what(node)}: bias of shape {b.shape} for {n_out} outputs")
    return b.reshape(n_out).copy()


def _read_tail(graph, end: str, consts, used: set[int], result: Walk) -> None:
    """Check the nodes after the chain and pick up the class labels they hold."""
    sub_out = None
    for node in graph.node:
        if id(node) in used or node.op_type == "Constant":
            continue
        op, a = node.op_type, _attrs(node)
        if op == "Sub" and len(node.input) == 2 and node.input[1] == end:
            one = consts.get(node.input[0])
            if one is not None and one.size == 1 and float(one.reshape(())) == 1.0:
                sub_out = node.output[0]
                continue
        if op == "Concat" and sub_out is not None and list(node.input) == [sub_out, end]:
            result.binary = True
            continue
        if op not in TAIL:
            raise InteropError(f"{_what(node)} is not supported after the last layer")
        if op == "ZipMap":
            labels = a.get("classlabels_strings") or a.get("classlabels_int64s")
            result.labels = [x.decode() if isinstance(x, bytes) else str(x) for x in labels]
        elif op == "ArrayFeatureExtractor" and result.labels is None:
            classes = consts.get(node.input[0])
            if classes is not None and classes.ndim == 1:
                result.labels = [x.decode() if isinstance(x, bytes) else str(x) for x in classes]
