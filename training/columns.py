"""One input column: what a cell is (a number, a category, a hole) and how a column
is fitted on its training cells.

Numeric scaling (chosen by bench/quality_bench.py, BENCHMARKS.md): ``SCALING`` below.
Every scaled numeric value is clipped to ``[-CLIP, CLIP]`` afterwards (in
``Preprocessor.transform``), so no value, seen in training or not, can become huge.
A constant column gets factor 0 (always 0); a column empty in every training row is
dropped.  Categories are the distinct non-empty cells, sorted (numbers as numbers); the
most frequent fills a hole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = np.ndarray
CLIP = 5.0  # every scaled numeric input lies in [-CLIP, CLIP]
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
# How numeric columns are scaled (bench/quality_bench.py --scaling compares them):
# "floor": standardised, the scale floored at range / FLOOR; "standard": plain
# standardisation; "minmax": (x - min) / (max - min); "auto": x / max for a column with
# no negative value, "floor" otherwise.
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
