"""What every importer produces: a list of dense layers, and how it becomes a ``Model``.

An ONNX graph, an ``nn.Sequential`` and a fitted ``MLPClassifier`` all reduce to the same
sequence of steps, a dense step (weights, bias) or an activation step.  ``assemble``
pairs them into layers the way bpserve's network has them (every dense step followed by
exactly one activation; two dense steps in a row mean an identity activation between
them), and ``build_model`` makes the network, with its parameters copied bit for bit, the
preprocessing, the class labels and a fresh optimizer state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data import Standardizer
from training.engine.network import Network
from training.engine.optimizers import SGD
from training.model import Model

Array = np.ndarray

# The online optimizer an imported model starts with, unless told otherwise: bptrain's
# own defaults.
DEFAULT_LR, DEFAULT_MOMENTUM = 0.05, 0.9
DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
# The loss an output activation is trained with when no one says.
DEFAULT_LOSS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy"}


class InteropError(ValueError):
    """A model that cannot be brought in (or out): says which node, module or tensor."""


@dataclass
class Layer:
    """One dense layer in bpserve's layout: ``a_out = f(a_in @ weight + bias)``."""

    weight: Array  # (n_in, n_out)
    bias: Array  # (n_out,)
    activation: str  # a bpserve activation name


@dataclass
class Dense:
    weight: Array
    bias: Array
    where: str  # the node or module it came from, for messages


@dataclass
class Act:
    name: str
    where: str


def assemble(steps: list[Dense | Act]) -> list[Layer]:
    """Layers from dense and activation steps, or an InteropError naming the step."""
    layers: list[Layer] = []
    pending: Dense | None = None
    for step in steps:
        if isinstance(step, Dense):
            if pending is not None:
                layers.append(Layer(pending.weight, pending.bias, "identity"))
            pending = step
        elif pending is None:
            before = "the first layer" if not layers else "another activation"
            raise InteropError(f"{step.where}: activation {step.name!r} follows {before}")
        else:
            layers.append(Layer(pending.weight, pending.bias, step.name))
            pending = None
    if pending is not None:
        layers.append(Layer(pending.weight, pending.bias, "identity"))
    if not layers:
        raise InteropError("no dense layer (Gemm, MatMul, Linear) found")
    return layers


def binary_to_softmax(layer: Layer) -> Layer:
    """A one-unit sigmoid output as two-class softmax: softmax([0, z]) = [1 - s(z), s(z)].

    scikit-learn's binary MLPClassifier (and skl2onnx's graph of it) has one logistic
    unit; bpserve gives every class an output, so class labels and ``/train-step`` with
    labels work as for any classifier.
    """
    w = np.concatenate([np.zeros_like(layer.weight), layer.weight], axis=1)
    b = np.concatenate([np.zeros_like(layer.bias), layer.bias])
    return Layer(w, b, "softmax")


def build_model(
    layers: list[Layer],
    *,
    standardizer: Standardizer | None = None,
    labels: list[str] | None = None,
    loss: str | None = None,
    learning_rate: float | None = None,
    momentum: float | None = None,
    feature_names: list[str] | None = None,
) -> Model:
    """A servable, trainable ``Model`` from layers; the weights are copied unchanged.

    The loss defaults to what the output activation is trained with (softmax:
    cross-entropy, sigmoid: binary cross-entropy, otherwise quadratic); a softmax
    classifier without labels gets "0", "1", ... so that label targets work.
    """
    dtype = np.result_type(*(x.dtype for layer in layers for x in (layer.weight, layer.bias)))
    if dtype not in DTYPES:
        raise InteropError(f"weights are {dtype}; bpserve takes float32 or float64")
    sizes = [layers[0].weight.shape[0]]
    flat = []
    for i, layer in enumerate(layers):
        w, b = np.asarray(layer.weight), np.asarray(layer.bias).reshape(-1)
        if w.ndim != 2 or w.shape[0] != sizes[-1] or b.shape != (w.shape[1],):
            raise InteropError(
                f"layer {i}: weight {w.shape} and bias {b.shape} do not follow a "
                f"layer of {sizes[-1]} units"
            )
        sizes.append(w.shape[1])
        flat += [w.astype(dtype, copy=False).ravel(), b.astype(dtype, copy=False)]
    acts = [layer.activation for layer in layers]
    loss = loss or DEFAULT_LOSS.get(acts[-1], "quadratic")
    try:
        net = Network(
            sizes, acts[:-1], acts[-1], loss, dtype=DTYPES[dtype], params=np.concatenate(flat)
        )
    except (ValueError, TypeError) as exc:
        raise InteropError(str(exc)) from None
    if labels is None and acts[-1] == "softmax":
        labels = [str(i) for i in range(sizes[-1])]
    opt = SGD(
        DEFAULT_LR if learning_rate is None else learning_rate,
        DEFAULT_MOMENTUM if momentum is None else momentum,
    )
    try:
        return Model(
            net,
            standardizer or Standardizer.identity(sizes[0]),
            [str(x) for x in labels] if labels is not None else None,
            feature_names,
            opt,
        )
    except ValueError as exc:
        raise InteropError(str(exc)) from None
