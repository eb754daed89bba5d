"""Preprocessing fitted on the training rows only: what turns a table into network inputs.

Two stages, so that the service, the trainer and ``bptrain evaluate`` share one path:

1. ``codes``: a row of cells (numbers, text, holes) becomes a float row in *column
   space*, one value per input column: a number for a numeric column, the category's
   index for a categorical one (``len(categories)`` for one not seen in training), NaN
   for a hole.  This is what the journal records and what ``apply_step`` receives.
2. ``transform``: column space to the network's inputs, vectorised: numeric columns
   imputed with the training median, mapped by ``(x - offset) * factor`` and clipped to
   ``[-CLIP, CLIP]``; categorical columns one-hot with a last "unseen" slot; an
   indicator column (1 = the cell was missing) after every column that had holes in
   training.

How one column is fitted is training/columns.py; format 1's ``Standardizer`` and the
regression ``TargetScaler`` are training/scaling.py.  The manifest form is plain JSON
(``prep_to_manifest`` / ``prep_from_manifest``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from training.columns import CLIP, Column, category_key, fit_column, is_missing
from training.scaling import Standardizer, TargetScaler

Array = np.ndarray
__all__ = [
    "CLIP",
    "Column",
    "Preprocessor",
    "Standardizer",
    "TargetScaler",
    "category_key",
    "is_missing",
    "prep_from_manifest",
    "prep_to_manifest",
]


class Preprocessor:
    """Format 2 preprocessing: the fitted columns, their codes and the vectorised transform."""

    allows_missing = True

    def __init__(self, columns: list[Column]) -> None:
        self.cols = columns
        self.n_columns = len(columns)
        self.width = sum(c.width for c in columns)
        self.has_categories = any(c.kind == "categorical" for c in columns)
        self._index = {
            i: {k: j for j, k in enumerate(c.categories)}
            for i, c in enumerate(columns)
            if c.kind == "categorical"
        }
        self._names = {c.name: i for i, c in enumerate(columns)}
        at, num_src, num_dst, ind_src, ind_dst, cats = 0, [], [], [], [], []
        for i, c in enumerate(columns):
            if c.kind == "numeric":
                num_src.append(i)
                num_dst.append(at)
            elif c.kind == "categorical":
                cats.append((i, at, len(c.categories)))
            if c.indicator:
                ind_src.append(i)
                ind_dst.append(at + c.width - 1)
            at += c.width
        self._num_src, self._num_dst = np.array(num_src, int), np.array(num_dst, int)
        self._ind_src, self._ind_dst = np.array(ind_src, int), np.array(ind_dst, int)
        self._cats = cats
        self._plain = num_src == list(range(self.n_columns)) and num_dst == num_src and not ind_src
        self._params: dict[np.dtype, tuple[Array, Array, Array]] = {}

    # -- fitting ----------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        x: Array,
        text: dict[int, Array],
        names: list[str],
        categorical: set[int] = frozenset(),  # type: ignore[assignment]
    ) -> tuple[Preprocessor, list[str]]:
        """Fit on training rows: ``x`` floats (NaN = hole), ``text`` the text columns' cells."""
        cols, warnings = [], []
        for j, name in enumerate(names):
            if j in text:
                keys = [None if is_missing(v) else category_key(v) for v in text[j]]
                col, warn = fit_column(name, None, keys)
            elif j in categorical:
                keys = [None if v != v else category_key(float(v)) for v in x[:, j]]
                col, warn = fit_column(name, None, keys)
            else:
                col, warn = fit_column(name, x[:, j], None)
            cols.append(col)
            if warn:
                warnings.append(warn)
        return cls(cols), warnings

    # -- stage 1: cells to column space --------------------------------------------------
    def codes(self, x: Array, text: dict[int, Array] | None = None) -> Array:
        """Column-space float rows from a numeric matrix (NaN = hole) and text cells."""
        out = np.array(x, dtype=np.float64)
        for i in self._index:
            if text and i in text:
                out[:, i] = [self.code(i, v) for v in text[i]]
            else:
                out[:, i] = [self.code(i, v) for v in x[:, i].tolist()]
        return out

    def code(self, i: int, cell: object) -> float:
        """One cell of column ``i`` in column space; raises ValueError for a bad cell."""
        if is_missing(cell):
            return math.nan
        c = self.cols[i]
        if c.kind == "categorical":
            return float(self._index[i].get(category_key(cell), len(c.categories)))
        if isinstance(cell, bool) or not isinstance(cell, int | float | str):
            raise ValueError(f"column {c.name!r} takes a number, got {cell!r}")
        try:
            v = float(cell)
        except ValueError:
            raise ValueError(f"column {c.name!r} takes a number, got {cell!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"column {c.name!r}: {cell!r} is not a finite number")
        return v

    def column_index(self, name: str) -> int | None:
        return self._names.get(name)

    # -- stage 2: column space to network inputs ------------------------------------------
    def transform(self, x: Array) -> Array:
        """Network inputs for column-space rows ``x`` (in the network's dtype)."""
        dt = x.dtype
        if dt not in self._params:
            num = [self.cols[i] for i in self._num_src]
            self._params[dt] = (
                np.array([c.offset for c in num], dtype=dt),
                np.array([c.factor for c in num], dtype=dt),
                np.array([c.fill for c in num], dtype=dt),
            )
        offset, factor, fill = self._params[dt]
        v = x.copy() if self._plain else x[:, self._num_src]
        holes = np.isnan(v)
        if holes.any():
            np.copyto(v, np.broadcast_to(fill, v.shape), where=holes)
        v -= offset
        v *= factor
        np.clip(v, -CLIP, CLIP, out=v)
        if self._plain:
            return v
        out = np.zeros((x.shape[0], self.width), dtype=dt)
        out[:, self._num_dst] = v
        rows = np.arange(x.shape[0])
        for i, at, k in self._cats:
            codes = x[:, i]
            codes = np.where(np.isnan(codes), self.cols[i].fill, codes)
            out[rows, at + np.clip(codes, 0, k).astype(np.int64)] = 1
        if len(self._ind_src):
            out[:, self._ind_dst] = np.isnan(x[:, self._ind_src])
        return out

    # -- description and the manifest ------------------------------------------------------
    def columns(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        out = []
        for c in self.cols:
            d: dict[str, Any] = {"name": c.name, "kind": c.kind}
            if c.kind == "categorical":
                d["categories"] = c.categories
            out.append(d)
        return out

    def to_manifest(self) -> dict[str, Any]:
        return {"clip": CLIP, "columns": [c.to_manifest() for c in self.cols]}

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> Preprocessor:
        cols = []
        for d in data["columns"]:
            d = dict(d)
            cols.append(Column(**d))
        return cls(cols)


def prep_to_manifest(pre: Standardizer | Preprocessor) -> dict[str, Any]:
    """The manifest's ``preprocessing``: format 1's mean/scale or format 2's columns."""
    if isinstance(pre, Standardizer):
        return {"mean": pre.mean.tolist(), "scale": pre.scale.tolist()}
    return pre.to_manifest()


def prep_from_manifest(
    data: dict[str, Any], targets: dict[str, list[float]] | None
) -> tuple[Standardizer | Preprocessor, TargetScaler | None]:
    """Both back from a manifest; ValueError, TypeError or KeyError say what is wrong."""
    scaler = None
    if targets is not None:
        scaler = TargetScaler(np.array(targets["offset"]), np.array(targets["scale"]))
        if scaler.offset.shape != scaler.scale.shape or not (scaler.scale > 0).all():
            raise ValueError("target scaling needs as many positive scales as offsets")
    if "columns" in data:
        if data.get("clip") != CLIP:
            raise ValueError(f"preprocessing clip {data.get('clip')} is not {CLIP}")
        return Preprocessor.from_manifest(data), scaler
    mean, scale = data.get("mean"), data.get("scale")
    if mean is None or scale is None or len(mean) != len(scale):
        raise ValueError("preprocessing needs as many means as scales (or columns)")
    return Standardizer(np.array(mean), np.array(scale)), scaler
