"""Losses: the value of the cost and the output-layer error delta^L (BP1).

Every loss is a mean over the batch, so the delta carries the 1/B factor and the
gradients that back-propagation derives from it need no further scaling.
Cross-entropy with softmax and binary cross-entropy with sigmoid use the combined
delta (a - y) / B: the activation's Jacobian cancels against the loss's derivative,
which is both cheaper and better conditioned than multiplying them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.engine.activations import Activation

Array = np.ndarray


@dataclass(frozen=True)
class Loss:
    name: str
    # Output activations the loss is defined for; None means any.
    requires: str | None = None

    def value(self, a: Array, z: Array, y: Array) -> float:
        n = a.shape[0]
        if self.name == "quadratic":
            d = a - y
            return float(0.5 * np.einsum("ij,ij->", d, d) / n)
        if self.name == "cross_entropy":
            # -sum y log softmax(z), via log-sum-exp on z: finite for any finite z.
            m = z.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
            return float((lse * y.sum(axis=1) - np.einsum("ij,ij->i", y, z)).sum() / n)
        # binary cross-entropy on logits: max(z,0) - z y + log(1 + e^-|z|).
        val = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return float(val.sum() / n)

    def delta(self, a: Array, z: Array, y: Array, activation: Activation) -> Array:
        """BP1: dC/dz for the output layer, already divided by the batch size."""
        g = a - y
        g *= 1.0 / a.shape[0]
        if self.requires is None:
            g = activation.backward(z, a, g)
        return g


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("quadratic"),
        Loss("cross_entropy", requires="softmax"),
        Loss("binary_cross_entropy", requires="sigmoid"),
    )
}


def get_loss(name: str) -> Loss:
    """Look a loss up by name; unknown names are a ValueError listing the known."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None
