"""Data readers and the stratified split (the CSV reader is training/tables.py).

Readers return a ``Dataset`` of float64 features and targets.  Classification targets
are kept as class indices plus class names, so the split can stratify and the manifest
can carry the names; ``Dataset.target_matrix`` turns them into the one-hot matrix the
network trains on.  Every problem in a file is a ``DataError`` naming the file and line.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.preprocessing import Standardizer  # re-exported: format-1 manifests

Array = np.ndarray
FORMATS = ("csv", "npz", "code-recognizer", "digits")
__all__ = ["FORMATS", "DataError", "Dataset", "Standardizer", "load", "stratified_split"]


class DataError(ValueError):
    """Bad training data: names the file and, where it can, the line."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = str(path), line, problem


@dataclass
class Dataset:
    x: Array  # (n, features) float64
    y: Array  # class indices (n,) int64 for classification, (n, k) float64 for regression
    classes: list[str] | None  # class names; None for regression
    feature_names: list[str] | None = None
    fingerprint: str = ""  # sha256 of the source file(s)
    # Text columns' cells (column index -> object array, None for a hole); their
    # columns in ``x`` are NaN.  Features in ``x`` may be NaN (holes) unless strict.
    text: dict[int, Array] = field(default_factory=dict)

    @property
    def is_classification(self) -> bool:
        return self.classes is not None

    def target_matrix(self, dtype: np.dtype | str = np.float64) -> Array:
        if self.classes is None:
            return self.y.astype(dtype)
        return np.eye(len(self.classes), dtype=dtype)[self.y]

    def subset(self, idx: Array) -> Dataset:
        text = {j: v[idx] for j, v in self.text.items()}
        return Dataset(
            self.x[idx], self.y[idx], self.classes, self.feature_names, self.fingerprint, text
        )


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def infer_format(path: str | Path) -> str | None:
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".npz": "npz", ".200": "code-recognizer"}.get(suffix)


def load(
    path: str | Path | None,
    fmt: str | None = None,
    label_column: str | None = None,
    missing: str = "impute",
) -> Dataset:
    """Read a data set in one of FORMATS (inferred from the extension when not given).

    ``missing="error"`` refuses holes and text cells (the strict format-1 behaviour).
    """
    from training.tables import read_csv  # it builds on this module

    fmt = fmt or (infer_format(path) if path else None)
    if fmt == "digits":
        return load_digits()
    if path is None:
        raise DataError("-", "no data file given")
    if fmt is None:
        raise DataError(path, "cannot tell the format from the extension; pass --format")
    if fmt not in FORMATS:
        raise DataError(path, f"unknown format {fmt!r}; expected one of {list(FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    reader = {
        "csv": lambda: read_csv(path, label_column, missing),
        "npz": lambda: read_npz(path),
        "code-recognizer": lambda: read_code_recognizer(path),
    }[fmt]
    try:
        ds = reader()
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    ds.fingerprint = sha256_file(path)
    _check_dataset(ds, path, allow_holes=missing != "error")
    return ds


def _check_dataset(ds: Dataset, path: str | Path, allow_holes: bool = False) -> None:
    if ds.x.shape[0] == 0:
        raise DataError(path, "no examples in the file")
    bad = np.isinf(ds.x) if allow_holes else ~np.isfinite(ds.x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(path, f"NaN or Inf in the features of example {row + 1}")
    if ds.classes is None and not np.isfinite(ds.y).all():
        row = int(np.argwhere(~np.isfinite(ds.y))[0][0])
        raise DataError(path, f"NaN or Inf in the targets of example {row + 1}")


def check_learnable(ds: Dataset, path: str | Path) -> None:
    """Training needs two classes at least (scoring a stored model does not)."""
    if ds.classes is not None and len(np.unique(ds.y)) < 2:
        raise DataError(path, f"only one class ({ds.classes[int(ds.y[0])]!r}): nothing to learn")


def read_code_recognizer(path: str | Path) -> Dataset:
    """``f1 ... f20 > t1 t2 t3`` per line; lines end in ``\\r\\r\\n``, so blank-after-strip
    lines are skipped rather than taken for examples."""
    xs, ts = [], []
    # newline="\n": only \n ends a line, so "\r\r\n" counts once, as an editor shows it.
    with open(path, encoding="utf-8", newline="\n") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            if line.count(">") != 1:
                raise DataError(path, "expected 'features > targets'", lineno)
            left, right = line.split(">")
            try:
                x = [float(v) for v in left.split()]
                t = [float(v) for v in right.split()]
            except ValueError as exc:
                raise DataError(path, f"non-numeric value ({exc})", lineno) from None
            if xs and (len(x) != len(xs[0]) or len(t) != len(ts[0])):
                raise DataError(
                    path,
                    f"ragged row: {len(x)} features and {len(t)} targets, "
                    f"expected {len(xs[0])} and {len(ts[0])}",
                    lineno,
                )
            if not t:
                raise DataError(path, "missing targets", lineno)
            xs.append(x)
            ts.append(t)
    if not xs:
        raise DataError(path, "no examples in the file")
    targets = np.array(ts)
    return _from_target_matrix(np.array(xs), targets, path)


def _from_target_matrix(x: Array, targets: Array, path: str | Path) -> Dataset:
    """One-hot rows become class indices named "0".."k-1"; anything else is regression."""
    one_hot = (
        targets.shape[1] > 1
        and ((targets == 0) | (targets == 1)).all()
        and (targets.sum(1) == 1).all()
    )
    if one_hot:
        classes = [str(i) for i in range(targets.shape[1])]
        return Dataset(x, targets.argmax(1).astype(np.int64), classes)
    return Dataset(x, targets.astype(np.float64), None)


def _parses(kind: type, v: str) -> bool:
    try:
        kind(v)
    except ValueError:
        return False
    return True


def is_float(v: str) -> bool:
    return _parses(float, v)


def is_int(v: str) -> bool:
    return _parses(int, v)


def encode_labels(labels: list[str] | Array) -> tuple[Array, list[str]]:
    labels = [str(v) for v in labels]
    if all(is_int(v) for v in labels):  # sort "10" after "9"
        classes = sorted(set(labels), key=int)
    else:
        classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in labels], dtype=np.int64), classes


def read_npz(path: str | Path) -> Dataset:
    """Arrays ``X`` (n x features) and ``y``: labels (n,) or a target matrix (n x k)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z or "y" not in z:
                raise DataError(path, f"needs arrays 'X' and 'y', found {sorted(z.files)}")
            x, y = z["X"], z["y"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(path, f"not a readable npz file ({exc})") from None
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise DataError(path, f"X must be a 2-D numeric array, got {x.dtype} {x.shape}")
    if len(y) != len(x):
        raise DataError(path, f"X has {len(x)} rows but y has {len(y)}")
    x = x.astype(np.float64)
    if y.ndim == 2:
        return _from_target_matrix(x, y.astype(np.float64), path)
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        return Dataset(x, y.astype(np.float64)[:, None], None)
    return Dataset(x, *encode_labels(y.tolist() if y.dtype.kind in "OUS" else y.astype(np.int64)))


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images): an optional extra, not served."""
    try:
        from sklearn.datasets import load_digits as sk_load
    except ImportError:
        raise DataError("digits", "needs scikit-learn: pip install 'bpserve[digits]'") from None
    d = sk_load()
    x = d.data.astype(np.float64)
    fp = hashlib.sha256(np.ascontiguousarray(x).tobytes() + d.target.astype(np.int64).tobytes())
    return Dataset(
        x,
        d.target.astype(np.int64),
        [str(i) for i in range(10)],
        [f"pixel_{i}_{j}" for i in range(8) for j in range(8)],
        fp.hexdigest(),
    )


def stratified_split(
    ds: Dataset, val_fraction: float, test_fraction: float, seed: int
) -> tuple[Array, Array, Array]:
    """Shuffled train/validation/test row indices; each class is split in proportion."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("validation and test fractions must be in [0, 1) and sum below 1")
    rng = np.random.default_rng(seed)
    groups = (
        [np.flatnonzero(ds.y == c) for c in range(len(ds.classes))]
        if ds.classes
        else [np.arange(len(ds.x))]
    )
    parts: list[list[Array]] = [[], [], []]
    for g in groups:
        g = rng.permutation(g)
        n_test = round(len(g) * test_fraction)
        n_val = round(len(g) * val_fraction)
        parts[2].append(g[:n_test])
        parts[1].append(g[n_test : n_test + n_val])
        parts[0].append(g[n_test + n_val :])
    return tuple(rng.permutation(np.concatenate(p)).astype(np.int64) for p in parts)  # type: ignore[return-value]
