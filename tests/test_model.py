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


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "relu", "identity"])
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity", "tanh", "relu"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_prediction_in_place_equals_the_training_forward_pass(hidden, output, dtype):
    # Network.output lets each activation overwrite its own z; forward() keeps every z
    # and activation apart for backprop.  Overwriting must change no bit of the plain
    # computation (x @ w + b, then the activation into a new array), and both must agree
    # with the training forward pass, which folds the bias into the product through a
    # ones column: how closely depends on the BLAS kernel's summation order (the same
    # bits on some CPUs, a few ulp apart on others), not on the overwriting.
    from training.engine.network import Network

    net = Network([7, 9, 8, 5], hidden, output, dtype=dtype, seed=3)
    x = np.random.default_rng(1).normal(0, 3, size=(33, 7)).astype(dtype)
    plain = x
    for w, b, act in zip(net.weights, net.biases, net.layers):
        plain = act.forward(plain @ w + b)
    got = net.predict(x)
    assert got.dtype == plain.dtype
    assert np.array_equal(got, plain)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, net.forward(x).output, rtol=tol, atol=tol)


def test_standardize_is_the_standardizer_formula():
    model = make_model()
    x = np.random.default_rng(2).uniform(0, 16, size=(11, model.n_features))
    x = x.astype(model.network.dtype)
    s = model.standardizer
    expected = (x - s.mean.astype(x.dtype)) * (1 / s.scale).astype(x.dtype)
    assert np.array_equal(model.standardize(x), expected)
    assert not np.shares_memory(model.standardize(x), x)
