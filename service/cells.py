"""Rows as people write them: objects keyed by column name, text categories, holes.

The schemas parse numeric list-of-lists rows as before (``schemas.to_matrix``, the
fast path); any other row shape (an object, a string, a null) lands in ``CellRows``
and is turned into the same column-space matrix here, cell by cell, with the model's
fitted preprocessing (training/preprocessing.py): a missing key or a null is a hole,
filled as a missing cell is in training; an unknown key is a 422 naming it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import RootModel

from service.errors import ApiError
from training.model import Model
from training.preprocessing import Preprocessor, is_missing


class CellRows(RootModel[list[dict[str, Any] | list[Any]]]):
    """Rows that are not all numbers: objects keyed by column name, or lists of cells."""


def model_rows(rows: Any, field: str, model: Model, max_rows: int, to_matrix: Any) -> np.ndarray:
    """Column-space rows for ``model`` from parsed request rows, in the network's dtype."""
    if not isinstance(rows, CellRows):
        x = to_matrix(rows, field, model.n_features, max_rows, model.network.dtype)
        return column_space(model, x)
    return cells_matrix(rows.root, field, model, max_rows)


def column_space(model: Model, x: np.ndarray) -> np.ndarray:
    """A checked numeric matrix (the fast path's, a V2 tensor) in column space: the
    numbers of integer-coded category columns become their category indices."""
    pre = model.preprocessing
    if isinstance(pre, Preprocessor) and pre.has_categories:
        return pre.codes(x).astype(x.dtype)
    return x


def cells_matrix(rows: list, field: str, model: Model, max_rows: int) -> np.ndarray:
    if not rows:
        raise ApiError(422, "empty_batch", f"{field} is empty: send at least one row")
    if len(rows) > max_rows:
        raise ApiError(
            422, "too_many_rows", f"{field} has {len(rows)} rows; the limit is {max_rows}"
        )
    pre = model.preprocessing
    names = model.feature_names or [f"x{i}" for i in range(model.n_features)]
    index = {n: j for j, n in enumerate(names)}
    n = model.n_features
    out = np.empty((len(rows), n), dtype=np.float64)
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            unknown = [k for k in row if k not in index]
            if unknown:
                raise ApiError(
                    422,
                    "unknown_column",
                    f"{field}[{i}] has unknown column {unknown[0]!r}; the model's columns "
                    f"are {names}",
                    {"unknown": unknown},
                )
            cells = [row.get(name) for name in names]
        else:
            if len(row) != n:
                raise ApiError(
                    422,
                    "wrong_feature_count",
                    f"{field}[{i}] has {len(row)} values; the model expects {n}",
                    {"expected": n, "got": len(row)},
                )
            cells = row
        for j, cell in enumerate(cells):
            out[i, j] = _cell(pre, j, cell, f"{field}[{i}].{names[j]}")
    x = out.astype(model.network.dtype)
    if np.isinf(x).any():
        raise ApiError(422, "non_finite_input", f"{field} holds values out of range for {x.dtype}")
    return x


def _cell(pre: Any, j: int, cell: object, where: str) -> float:
    if isinstance(pre, Preprocessor):
        try:
            return pre.code(j, cell)
        except ValueError as exc:
            raise ApiError(422, "invalid_cell", f"{where}: {exc}") from None
    # Format-1 models know numbers only and cannot fill holes.
    if is_missing(cell):
        raise ApiError(
            422, "missing_value", f"{where}: this model (manifest format 1) cannot fill holes"
        )
    if isinstance(cell, bool) or not isinstance(cell, int | float):
        raise ApiError(422, "invalid_cell", f"{where}: takes a number, got {cell!r}")
    if not math.isfinite(float(cell)):
        raise ApiError(422, "non_finite_input", f"{where}: {cell!r} is not finite")
    return float(cell)
