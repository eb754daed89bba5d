"""Activation functions, each paired with its backward rule, looked up by name.

The forward rule takes an optional ``out`` array so the network can write a hidden
layer's activations straight into the buffer the next layer's product reads.
The backward rule is a vector-Jacobian product ``(z, a, grad_a) -> grad_z`` rather
than a plain derivative, so that softmax (whose Jacobian is not diagonal) fits the
same slot as the element-wise activations.  Element-wise rules use the layer's
output ``a`` where they can: it is already in memory and saves recomputing f(z).
Backward rules may overwrite ``grad_a``: the engine never reuses it afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable[..., Array]  # (z, out=None) -> a
    backward: Callable[[Array, Array, Array], Array]
    default_init: str


def _sigmoid(z: Array, out: Array | None = None) -> Array:
    # 0.5 * (1 + tanh(z / 2)) is the logistic function without exp overflow at +-1000.
    a = np.multiply(z, 0.5, out=out)
    np.tanh(a, out=a)
    a += 1.0
    a *= 0.5
    return a


def _sigmoid_back(z: Array, a: Array, g: Array) -> Array:
    g *= a
    g *= 1.0 - a
    return g


def _tanh(z: Array, out: Array | None = None) -> Array:
    return np.tanh(z, out=out)


def _tanh_back(z: Array, a: Array, g: Array) -> Array:
    g *= 1.0 - a * a
    return g


def _relu(z: Array, out: Array | None = None) -> Array:
    return np.maximum(z, 0.0, out=out)


def _relu_back(z: Array, a: Array, g: Array) -> Array:
    g *= z > 0
    return g


def _identity(z: Array, out: Array | None = None) -> Array:
    if out is None:
        return z.copy()
    if out is not z:  # Network.output asks for z in place: nothing to do
        np.copyto(out, z)
    return out


def _identity_back(z: Array, a: Array, g: Array) -> Array:
    return g


def _softmax(z: Array, out: Array | None = None) -> Array:
    # Works on a transposed copy (classes x batch): numpy reduces along a short last
    # axis one row at a time, but across rows as a few whole-vector operations
    # (BENCHMARKS.md, Serving: the 1,000-row forward pass before and after).  Shifting by
    # each sample's maximum keeps exp() in range for any finite input.
    t = np.atleast_2d(z).T.copy()  # a copy always (ascontiguousarray may return a view)
    t -= t.max(axis=0)
    np.exp(t, out=t)
    t /= t.sum(axis=0)
    if out is None:
        return np.ascontiguousarray(t.T).reshape(z.shape)
    np.copyto(out, t.T.reshape(z.shape))
    return out


def _softmax_back(z: Array, a: Array, g: Array) -> Array:
    # J^T g for J = diag(a) - a a^T, row by row.
    dot = np.einsum("ij,ij->i", g, a)[:, None]
    g -= dot
    g *= a
    return g


ACTIVATIONS: dict[str, Activation] = {
    act.name: act
    for act in (
        Activation("sigmoid", _sigmoid, _sigmoid_back, "xavier"),
        Activation("tanh", _tanh, _tanh_back, "xavier"),
        Activation("relu", _relu, _relu_back, "he"),
        Activation("identity", _identity, _identity_back, "xavier"),
        Activation("softmax", _softmax, _softmax_back, "xavier"),
    )
}

# The ones a hidden layer may use: softmax couples a row's units, an output layer only.
HIDDEN_ACTIVATIONS = tuple(name for name in ACTIVATIONS if name != "softmax")


def get_activation(name: str) -> Activation:
    """Look an activation up by name; unknown names are a ValueError listing the known."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None
