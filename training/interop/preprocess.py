"""Preprocessing to and from ONNX nodes, one mapping per preprocessing kind.

Export: ``EXPORTERS`` maps each kind of the model's preprocessing to a function that writes
its ONNX nodes.  A kind without an entry cannot go into the graph; ``export_onnx`` then
refuses, or (asked to) leaves it out and records in the graph's metadata what its input
expects.  A new kind gets a new entry here, nothing else changes.

Import: the nodes between the graph's input and its first dense layer are read as a
per-feature ``(x - mean) * inv_scale``, which is bpserve's standardisation: ``Sub`` and
then ``Mul`` or ``Div`` by constants (as ``export_onnx`` writes them), or the ``Scaler`` of
ai.onnx.ml (what skl2onnx writes for a ``StandardScaler``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from training.data import Standardizer
from training.interop.layers import InteropError

Array = np.ndarray


@dataclass
class Pre:
    """Nodes and constants that turn the graph input into the network's input."""

    nodes: list[NodeProto] = field(default_factory=list)
    constants: list[TensorProto] = field(default_factory=list)
    output: str = "input"


def _standardizer(pre: Standardizer, name: str, dtype: np.dtype) -> Pre:
    if not pre.mean.any() and (pre.scale == 1).all():
        return Pre(output=name)  # the identity: no nodes
    # The same two float arrays, and the same two operations, as Model.standardize.
    mean = numpy_helper.from_array(pre.mean.astype(dtype), "preprocess.mean")
    inv = numpy_helper.from_array((1.0 / pre.scale).astype(dtype), "preprocess.inv_scale")
    nodes = [
        helper.make_node("Sub", [name, mean.name], ["preprocess.centred"], "preprocess/sub"),
        helper.make_node(
            "Mul", ["preprocess.centred", inv.name], ["preprocess.scaled"], "preprocess/mul"
        ),
    ]
    return Pre(nodes, [mean, inv], "preprocess.scaled")


EXPORTERS: dict[type, Callable[..., Pre]] = {Standardizer: _standardizer}


def export_nodes(pre: object, name: str, dtype: np.dtype) -> Pre:
    """The nodes for a preprocessing object, or an InteropError saying it has none."""
    fn = EXPORTERS.get(type(pre))
    if fn is None:
        raise InteropError(
            f"preprocessing {type(pre).__name__} has no ONNX form; export without it "
            "(--no-preprocessing) and apply it before the graph"
        )
    return fn(pre, name, dtype)


class Prefix:
    """Reads the nodes before the first dense layer into a standardisation."""

    OPS = ("Sub", "Mul", "Div", "Scaler")

    def __init__(self) -> None:
        self.mean: Array | None = None
        self.scale: Array | None = None  # what x is divided by

    def take(self, node: NodeProto, const: Array | None, attrs: dict) -> None:
        """Absorb one node whose other operand is ``const``; refuse what does not fit."""
        op = node.op_type
        if op == "Scaler":
            if self.mean is not None or self.scale is not None:
                raise InteropError(f"node {node.name!r} (Scaler): a second scaling step")
            self.mean = np.asarray(attrs.get("offset", [0.0]), dtype=np.float32)
            inv = np.asarray(attrs.get("scale", [1.0]), dtype=np.float32)
            self.scale = 1.0 / inv.astype(np.float64)
            return
        if const is None:
            raise InteropError(
                f"node {node.name!r} ({op}) before the first layer must take a constant"
            )
        if op == "Sub" and self.mean is None and self.scale is None:
            self.mean = const
        elif op == "Mul" and self.scale is None:
            self.scale = 1.0 / const.astype(np.float64)
        elif op == "Div" and self.scale is None:
            self.scale = const.astype(np.float64)
        else:
            raise InteropError(
                f"node {node.name!r} ({op}): preprocessing must be (x - mean) * scale"
            )

    def standardizer(self, n: int) -> Standardizer | None:
        if self.mean is None and self.scale is None:
            return None
        mean = np.broadcast_to(
            np.zeros(n) if self.mean is None else self.mean.astype(np.float64).reshape(-1), (n,)
        )
        scale = np.broadcast_to(np.ones(n) if self.scale is None else self.scale.reshape(-1), (n,))
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale != 0).all()):
            raise InteropError("preprocessing constants must be finite, with no zero scale")
        return Standardizer(mean.copy(), scale.copy())


def check_elem_type(elem: int) -> np.dtype:
    if elem == TensorProto.FLOAT:
        return np.dtype(np.float32)
    if elem == TensorProto.DOUBLE:
        return np.dtype(np.float64)
    raise InteropError(f"input element type {TensorProto.DataType.Name(elem)}; expected FLOAT")
