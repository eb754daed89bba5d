"""The CSV reader: a header row, feature columns and one label column.

With ``missing="error"`` (today's strict behaviour) every feature cell must be a number.
Otherwise (``missing="impute"``, the default) a cell may be empty, ``NA`` or ``NaN``
(NaN in the feature matrix, filled by the fitted preprocessing), and a column holding
any other non-number is a text column: its cells are kept as strings in
``Dataset.text`` and become a one-hot category (training/preprocessing.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from training.data import DataError, Dataset, encode_labels, is_float, is_int
from training.preprocessing import is_missing


def read_csv(path: str | Path, label_column: str | None = None, missing: str = "impute") -> Dataset:
    """Labels that are all numbers but not all integers are regression targets; anything
    else (integers or strings) names a class."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(path, "empty file")
    header = [h.strip() for h in rows[0]]
    label_at = len(header) - 1
    if label_column is not None:
        if label_column not in header:
            raise DataError(path, f"no column named {label_column!r} in the header {header}", 1)
        label_at = header.index(label_column)
    if len(header) < 2:
        raise DataError(path, "need at least one feature column and a label column", 1)
    names = header[:label_at] + header[label_at + 1 :]
    cells, labels, lines = [], [], []
    for lineno, row in enumerate(rows[1:], 2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(
                path, f"ragged row: {len(row)} fields, header has {len(header)}", lineno
            )
        label = row[label_at].strip()
        if not label:
            raise DataError(path, f"missing label in column {header[label_at]!r}", lineno)
        cells.append(row[:label_at] + row[label_at + 1 :])
        labels.append(label)
        lines.append(lineno)
    if not cells:
        raise DataError(path, "no examples in the file")
    x, text = _features(path, names, cells, lines, strict=missing == "error")
    if all(is_float(v) for v in labels) and not all(is_int(v) for v in labels):
        return Dataset(x, np.array([[float(v)] for v in labels]), None, names, text=text)
    return Dataset(x, *encode_labels(labels), names, text=text)


def _features(
    path: str | Path, names: list[str], cells: list[list[str]], lines: list[int], strict: bool
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The numeric matrix (NaN for holes and text columns) and the text columns' cells."""
    if strict:
        try:
            return np.array([[float(v) for v in row] for row in cells]), {}
        except ValueError:
            for row, lineno in zip(cells, lines):
                for name, v in zip(names, row):
                    if not is_float(v):
                        raise DataError(
                            path, f"non-numeric value {v!r} in column {name!r}", lineno
                        ) from None
            raise
    x = np.full((len(cells), len(names)), np.nan)
    text: dict[int, np.ndarray] = {}
    for j in range(len(names)):
        column = [row[j].strip() for row in cells]
        values = []
        for v in column:
            if is_missing(v):
                values.append(np.nan)
                continue
            try:
                values.append(float(v))
            except ValueError:
                text[j] = np.array([None if is_missing(c) else c for c in column], dtype=object)
                break
        else:
            x[:, j] = values
    return x, text
