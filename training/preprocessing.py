"""Preprocessing fitted on the training rows only: what turns a table into network inputs.

Two stages, so that the service, the trainer and ``bptrain evaluate`` share one path:

1. ``codes``: a row of cells (numbers, text, holes) becomes a float row in *column
   space*, one value per input column: a number for a numeric column, the category's
   index for a categorical one (``len(categories)`` for one not seen in training), NaN
   for a hole.  This is what the journal records and what ``apply_step`` receives.
2. ``transform``: column space to the network's inputs, vectorised: numeric columns
   imputed with the training median, mapped by ``(x - offset) * factor`` and clipped to
   ``[-CLIP, CLIP]`` (so no value, seen or not, can become huge); categorical columns
   one-hot with a last "unseen" slot; an indicator column (1 = the cell was missing)
   after every column that had holes in training.

Numeric scaling (chosen by bench/quality_bench.py, see BENCHMARKS.md): a column whose
training values are all >= 0 is min-max scaled by its maximum (``x / max``: sparse
pixel-like columns stay sparse and in [0, 1]); any other column is standardised with
its scale floored at a quarter of its range, so a column that is non-zero in a few
rows does not turn those into +-50.  A constant column gets factor 0 (always 0).

``Standardizer`` is the format-1 preprocessing (mean and scale per feature, no holes),
kept so that old manifests keep loading and serving bit for bit as before.
The manifest form of both is plain JSON lists (``to_manifest``/``from_manifest``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = np.ndarray
CLIP = 5.0  # every scaled numeric input lies in [-CLIP, CLIP]
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
# How numeric columns are scaled: "auto" (the default, above) or "standard" (plain
# standardisation, then the clip); bench/quality_bench.py --scaling compares them.
SCALING = "floor"
FLOOR = 4.0


def is_missing(cell: object) -> bool:
    """A hole: None, NaN, or one of the usual empty-cell spellings."""
    if cell is None:
        return True
    if isinstance(cell, float):
        return cell != cell
    return isinstance(cell, str) and cell.strip().lower() in MISSING_TOKENS


def category_key(cell: object) -> str:
    """The name a categorical cell is looked up by: integer-valued numbers as integers
    ("3" for 3, 3.0 and "3.0"), other numbers as Python writes them, text stripped."""
    if isinstance(cell, bool):
        return str(cell)
    if isinstance(cell, str):
        s = cell.strip()
        try:
            cell = float(s)
        except ValueError:
            return s
    v = float(cell)  # type: ignore[arg-type]
    if math.isfinite(v) and v == int(v):
        return str(int(v))
    return repr(v)


@dataclass
class Standardizer:
    """Format 1: per-feature (x - mean) / scale, fitted on training rows only."""

    mean: Array
    scale: Array

    @classmethod
    def fit(cls, x: Array) -> Standardizer:
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > 1e-12, std, 1.0))

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
class Column:
    """One input column as fitted: what it is and the numbers that encode it."""

    name: str
    kind: str  # "numeric", "categorical" or "dropped" (empty in every training row)
    offset: float = 0.0
    factor: float = 1.0
    fill: float = 0.0  # numeric: the training median; categorical: most frequent index
    indicator: bool = False
    categories: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        if self.kind == "dropped":
            return 0
        body = len(self.categories) + 1 if self.kind == "categorical" else 1
        return body + int(self.indicator)

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "numeric":
            out.update(offset=self.offset, factor=self.factor, fill=self.fill)
        elif self.kind == "categorical":
            out.update(categories=self.categories, fill=int(self.fill))
        if self.kind != "dropped":
            out["indicator"] = self.indicator
        return out


def fit_column(
    name: str, values: Array | None, keys: list[str | None] | None
) -> tuple[Column, str | None]:
    """Fit one column on its training cells: ``values`` (float, NaN = hole) for a numeric
    column, ``keys`` (category names, None = hole) for a categorical one.  Returns the
    column and a warning, if any."""
    if keys is not None:
        present = [k for k in keys if k is not None]
        if not present:
            return Column(name, "dropped"), f"column {name!r} is empty in every training row"
        categories = sorted(set(present), key=_category_order)
        counts = {c: 0 for c in categories}
        for k in present:
            counts[k] += 1
        fill = categories.index(max(categories, key=lambda c: counts[c]))
        indicator = len(present) < len(keys)
        col = Column(name, "categorical", fill=fill, indicator=indicator, categories=categories)
        return col, None
    assert values is not None
    seen = values[~np.isnan(values)]
    if seen.size == 0:
        return Column(name, "dropped"), f"column {name!r} is empty in every training row"
    lo, hi = float(seen.min()), float(seen.max())
    indicator = seen.size < values.size
    fill = float(np.median(seen))
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return Column(name, "numeric", lo, 0.0, fill, indicator), None
    if lo >= 0 and SCALING in ("auto", "minmax"):
        if SCALING == "auto":
            return Column(name, "numeric", 0.0, 1.0 / hi, fill, indicator), None
        return Column(name, "numeric", lo, 1.0 / (hi - lo), fill, indicator), None
    std = float(seen.std())
    scale = std if SCALING == "standard" else max(std, (hi - lo) / FLOOR)
    return Column(name, "numeric", float(seen.mean()), 1.0 / scale, fill, indicator), None


def _category_order(c: str) -> tuple[int, float, str]:
    try:
        return (0, float(c), c)
    except ValueError:
        return (1, 0.0, c)


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


@dataclass
class TargetScaler:
    """Regression targets: trained on (y - offset) / scale, mapped back on the way out."""

    offset: Array
    scale: Array

    @classmethod
    def fit(cls, y: Array) -> TargetScaler:
        std = y.std(axis=0)
        return cls(y.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def forward(self, y: Array) -> Array:
        return ((y - self.offset) / self.scale).astype(y.dtype, copy=False)

    def back(self, out: Array) -> Array:
        """Outputs in the targets' own units (in place, in the outputs' dtype)."""
        out *= self.scale.astype(out.dtype)
        out += self.offset.astype(out.dtype)
        return out

    def to_manifest(self) -> dict[str, list[float]]:
        return {"offset": self.offset.tolist(), "scale": self.scale.tolist()}


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
