"""The numeric fast path for JSON bodies: numbers straight to an array, arrays straight to text.

Why: a 1,000-row /predict body holds 64,000 numbers.  The strict path (pydantic from the
bytes, then ``np.asarray``) makes a Python float of each and then an array of those, and
the reply made 10,000 Python floats back into text; the profile in BENCHMARKS.md
(``bench/json_profile.py``) shows those steps, not the forward pass, are most of the
request.  Here simdjson parses the body and hands the numbers over as one buffer of
doubles (no Python object per value), and orjson writes numpy arrays directly.

This path only ever says yes to a body the strict path would accept with the same
values, or no (``None``): then the caller runs the strict path, which words every error
as before.  It says yes only to a plain list of equal-length lists of JSON numbers (or
one flat row) with nothing nested, no escapes anywhere in the body, and no duplicate
keys; anything else (object rows, strings, booleans, nulls, NaN literals, huge numbers)
goes the strict way.  The values are the same: simdjson and pydantic both round each
decimal to the nearest double, integers convert to doubles as Python's ``float`` does,
and the cast to the model's dtype is the same numpy cast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import simdjson

# Below this size the strict path is the quicker one: pysimdjson's per-document calls cost
# a few microseconds, pydantic's per value less than one (bench/json_profile.py, part 3).
MIN_BYTES = 1024
_PREDICT_KEYS = frozenset({"inputs", "model", "version"})
_FLOAT_TYPES = ("FP32", "FP64")  # V2 tensors whose JSON data the strict path reads as numbers


def dumps(body: dict[str, Any]) -> bytes:
    """JSON of a reply whose arrays are numpy (written directly, no Python float each)."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def reply_values(outputs: np.ndarray) -> np.ndarray:
    """Outputs as float64 for the reply: the text of each value is then the shortest one
    that reads back as the same double, as Python's ``tolist`` and ``json`` gave."""
    return outputs.astype(np.float64, copy=False)


def _parse(body: bytes) -> Any:
    """The parsed document, or None where the body is not for this path.

    A fresh parser per call: pysimdjson refuses to reuse a parser while proxies of its
    last document live, and a fresh one costs about as much as a lookup would.
    """
    # Escapes: a string could hide a key or a bracket from the checks below.
    if len(body) < MIN_BYTES or b"\\" in body:
        return None
    try:
        return simdjson.Parser().parse(body)
    except (ValueError, RuntimeError, TypeError):
        return None


def _numbers(arr: Any) -> np.ndarray | None:
    """Every number under ``arr`` (nested lists flattened) as float64, or None."""
    try:
        return np.frombuffer(arr.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def _rows(arr: Any, flat: np.ndarray, brackets: int) -> tuple[int, int] | None:
    """(rows, columns) of ``arr`` when it is one flat row or a list of equal-length rows of
    numbers.  ``brackets`` counts every "[" in the part of the text that ``arr`` is
    the only array of: one for a flat row, one more per row for rows, and more than that
    where anything is nested deeper (which flattening alone would not show)."""
    n = len(arr)
    if n == 0:
        return None
    if brackets == 1:
        return (1, n) if flat.size == n else None
    if brackets != n + 1 or flat.size % n:
        return None
    cols = flat.size // n
    for row in arr:
        if not isinstance(row, simdjson.Array) or len(row) != cols:
            return None
    return n, cols


@dataclass
class FastPredict:
    """A /predict body the strict path would accept: its numbers and its small fields."""

    values: np.ndarray  # float64, flat
    rows: int
    cols: int
    model: str | None
    version: int | None

    def matrix(self, n_cols: int, max_rows: int, dtype: np.dtype) -> np.ndarray | None:
        """The rows in ``dtype``, or None where the strict path would refuse them (it then
        says why)."""
        if self.cols != n_cols or self.rows > max_rows:
            return None
        x = self.values.reshape(self.rows, self.cols).astype(dtype, copy=False)
        return x if np.isfinite(x).all() else None


def predict_request(body: bytes) -> FastPredict | None:
    """A plain numeric /predict body, or None for the strict path."""
    doc = _parse(body)
    if not isinstance(doc, simdjson.Object):
        return None
    keys = list(doc.keys())
    if len(set(keys)) != len(keys) or not _PREDICT_KEYS.issuperset(keys) or "inputs" not in keys:
        return None
    model, version = doc.get("model"), doc.get("version")
    if not (model is None or isinstance(model, str)):
        return None
    if not (version is None or (type(version) is int and version >= 1)):
        return None
    inputs = doc["inputs"]
    if not isinstance(inputs, simdjson.Array):
        return None
    flat = _numbers(inputs)
    if flat is None:
        return None
    shape = _rows(inputs, flat, body.count(b"["))
    if shape is None:
        return None
    return FastPredict(flat, shape[0], shape[1], model, version)


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def infer_header(head: bytes) -> tuple[bytes, dict[int, np.ndarray]] | None:
    """A V2 JSON header split in two: the header without the input tensors' ``data`` (small,
    for the strict pydantic model) and each input's numbers by position, or None.

    Each ``data`` must be a flat list of numbers or a list of equal-length lists of them,
    in a tensor of datatype FP32 or FP64; anything else (BYTES labels, deeper nesting)
    takes the strict path whole.
    """
    doc = _parse(head)
    if not isinstance(doc, simdjson.Object):
        return None
    keys = list(doc.keys())
    inputs = doc.get("inputs")
    if len(set(keys)) != len(keys) or not isinstance(inputs, simdjson.Array):
        return None
    rest = {k: _plain(doc[k]) for k in keys if k != "inputs"}
    tensors, data, brackets = [], {}, 0
    for i, t in enumerate(inputs):
        if not isinstance(t, simdjson.Object):
            return None
        tkeys = list(t.keys())
        if len(set(tkeys)) != len(tkeys):
            return None
        tensors.append({k: _plain(t[k]) for k in tkeys if k != "data"})
        arr = t.get("data")
        if arr is None:
            continue
        if not isinstance(arr, simdjson.Array) or t.get("datatype") not in _FLOAT_TYPES:
            return None
        flat = _numbers(arr)
        if flat is None:
            return None
        n = len(arr)
        nested = n > 0 and isinstance(arr[0], simdjson.Array)
        brackets += n + 1 if nested else 1
        if nested and _rows(arr, flat, n + 1) is None:
            return None
        data[i] = flat
    small = orjson.dumps({**rest, "inputs": tensors})
    # Every "[" of the header is in the small part or in the data lists checked above:
    # so no data list hides a deeper level.
    if small.count(b"[") + brackets != head.count(b"["):
        return None
    return small, data
