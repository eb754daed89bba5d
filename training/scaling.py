"""Per-feature scalings with no columns to know about: format 1's standardisation of the
features, and the regression targets' scaling.

``Standardizer`` is what format-1 manifests hold (a mean and a scale per feature, numbers
only), kept so that old versions keep loading and serving bit for bit as before.
``TargetScaler`` makes regression targets of any size train like unit-scale ones: the
network learns ``(y - offset) / scale`` and every output is mapped back (``back``)
before it leaves the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray


def _center_and_scale(a: Array) -> tuple[Array, Array]:
    """Each column's mean and standard deviation (1 where a column is constant)."""
    std = a.std(axis=0)
    return a.mean(axis=0), np.where(std > 1e-12, std, 1.0)


@dataclass
class Standardizer:
    """Format 1: per-feature (x - mean) / scale, fitted on training rows only."""

    mean: Array
    scale: Array

    @classmethod
    def fit(cls, x: Array) -> Standardizer:
        return cls(*_center_and_scale(x))

    @classmethod
    def identity(cls, n: int) -> Standardizer:
        return cls(np.zeros(n), np.ones(n))

    def apply(self, x: Array, dtype: np.dtype | str | None = None) -> Array:
        out = (x - self.mean) / self.scale
        return out.astype(dtype, copy=False) if dtype is not None else out

    @property
    def n_columns(self) -> int:
        return len(self.mean)

    @property
    def width(self) -> int:
        return len(self.mean)

    allows_missing = False
    has_categories = False

    def columns(self, names: list[str] | None) -> list[dict[str, Any]]:
        names = names or [f"x{i}" for i in range(self.n_columns)]
        return [{"name": n, "kind": "numeric"} for n in names]


@dataclass
class TargetScaler:
    """Regression targets: trained on (y - offset) / scale, mapped back on the way out."""

    offset: Array
    scale: Array

    @classmethod
    def fit(cls, y: Array) -> TargetScaler:
        return cls(*_center_and_scale(y))

    def forward(self, y: Array) -> Array:
        return ((y - self.offset) / self.scale).astype(y.dtype, copy=False)

    def back(self, out: Array) -> Array:
        """Outputs in the targets' own units (in place, in the outputs' dtype)."""
        out *= self.scale.astype(out.dtype)
        out += self.offset.astype(out.dtype)
        return out

    def to_manifest(self) -> dict[str, list[float]]:
        return {"offset": self.offset.tolist(), "scale": self.scale.tolist()}
