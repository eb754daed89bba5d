"""The network's parameter layout and its input checks.

All parameters live in one flat array; each layer's weight matrix W (n_in, n_out) and
bias vector b are views into it, b stored right after W, so that the two together are
one (n_in + 1, n_out) matrix [W; b] (training/engine/network.py says why).  ``Cache``
is what the forward pass keeps for the backward pass, ``Gradients`` what the backward
pass returns, both in that layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

Array = np.ndarray


@dataclass
class Cache:
    """What the forward pass keeps for the backward pass: z^l and a^l for every layer.

    ``inputs[l]`` is layer l's input with a column of ones appended, ``zs[l]`` its
    weighted input, ``output`` the last layer's activations.
    """

    zs: list[Array]
    inputs: list[Array]
    output: Array

    @property
    def activations(self) -> list[Array]:
        """a^0 (the input batch) to a^L, without the ones columns."""
        return [a[:, :-1] for a in self.inputs] + [self.output]


@dataclass
class Gradients:
    """dC/dparams in the network's flat layout, with per-layer views for reading."""

    flat: Array
    weights: list[Array]
    biases: list[Array]


def augmented_views(flat: Array, sizes: list[int]) -> list[Array]:
    """Each layer's [W; b] as one (n_in + 1, n_out) matrix."""
    views, at = [], 0
    for n_in, n_out in pairwise(sizes):
        views.append(flat[at : at + (n_in + 1) * n_out].reshape(n_in + 1, n_out))
        at += (n_in + 1) * n_out
    return views


def with_ones(x: Array) -> Array:
    """``x`` with a column of ones appended: the input a layer's [W; b] product needs."""
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=x.dtype)
    out[:, :-1] = x
    out[:, -1] = 1
    return out


def layer_views(flat: Array, sizes: list[int]) -> tuple[list[Array], list[Array]]:
    weights, biases, at = [], [], 0
    for n_in, n_out in pairwise(sizes):
        weights.append(flat[at : at + n_in * n_out].reshape(n_in, n_out))
        at += n_in * n_out
        biases.append(flat[at : at + n_out])
        at += n_out
    return weights, biases


def n_parameters(sizes: list[int]) -> int:
    return sum(n_out * (n_in + 1) for n_in, n_out in pairwise(sizes))


def check_sizes(sizes: object) -> list[int]:
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output size, got {sizes!r}")
    out = []
    for i, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"layer size {i} must be an integer, got {s!r}")
        if s < 1:
            raise ValueError(f"layer size {i} must be at least 1, got {s}")
        out.append(int(s))
    return out


def check_matrix(x: object, n_cols: int, dtype: np.dtype, what: str) -> Array:
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"{what} must be a rectangular matrix of numbers: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (batch x {n_cols}), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{what} is an empty batch")
    if arr.shape[1] != n_cols:
        raise ValueError(f"{what} must have {n_cols} columns, got {arr.shape[1]}")
    arr = arr.astype(dtype, copy=False)
    if not np.isfinite(arr).all():
        r, c = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{what} contain NaN or Inf (first at row {r}, column {c})")
    return arr
