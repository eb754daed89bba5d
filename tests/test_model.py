"""Model.predict_labels: the plain-Python pick for a few rows agrees with numpy's argmax."""

import numpy as np
import pytest

from tests.test_store import make_model
from training.model import FEW_ROWS


def rows_with(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    out = rng.random((n, 3)).astype(np.float32)
    if kind == "ties":
        out[:, 1] = out[:, 2] = out.max(axis=1) + 1  # the first of two largest
        out[0] = 0.0
        out[1] = [-0.0, 0.0, 0.0]
    elif kind == "inf":
        out[0] = [np.inf, 1, np.inf]
        out[1] = [-np.inf, -np.inf, -np.inf]
        out[2] = [np.inf, -np.inf, 0]  # NaN row sum: numpy picks
    elif kind == "nan":
        out[0] = [0.5, np.nan, 0.9]  # max() alone would say 2; argmax says 1
        out[1] = [np.nan, np.nan, 1.0]
    return out


@pytest.mark.parametrize("kind", ["plain", "ties", "inf", "nan"])
@pytest.mark.parametrize("n", [3, FEW_ROWS, FEW_ROWS + 1])
def test_labels_agree_with_argmax(kind, n):
    model = make_model()
    outputs = rows_with(kind, n, np.random.default_rng(n))
    expected = [model.labels[i] for i in np.argmax(outputs, axis=1)]
    assert model.predict_labels(outputs, outputs.tolist()) == expected
    assert model.predict_labels(outputs) == expected


def test_no_labels_without_class_names():
    model = make_model()
    model.labels = None
    assert model.predict_labels(np.eye(3, dtype=np.float32), np.eye(3).tolist()) is None
