"""Bad input to the public Python API: a ValueError or TypeError naming the problem."""

import numpy as np
import pytest

from training import SGD, Network, fit


@pytest.fixture
def net():
    return Network([3, 4, 2], "sigmoid")


@pytest.mark.parametrize(
    "x,error,match",
    [
        (np.zeros((2, 4)), ValueError, "3 columns"),
        (np.zeros((0, 3)), ValueError, "empty batch"),
        (np.array([[1.0, np.nan, 0.0]]), ValueError, "NaN or Inf"),
        (np.array([[1.0, np.inf, 0.0]]), ValueError, "row 0, column 1"),
        (np.array([["a", "b", "c"]]), TypeError, "numeric"),
        (np.zeros((2, 3, 1)), ValueError, "2-D"),
        ([[1, 2, 3], [1, 2]], ValueError, "rectangular"),
    ],
)
def test_bad_inputs(net, x, error, match):
    with pytest.raises(error, match=match):
        net.predict(x)


def test_bad_targets(net):
    with pytest.raises(ValueError, match="targets have 1 rows but inputs have 2"):
        net.gradients(np.zeros((2, 3)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="targets must have 2 columns"):
        fit(net, SGD(), np.zeros((2, 3)), np.zeros((2, 5)), epochs=1, batch_size=1)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"sizes": [3, 0, 2]}, ValueError, "layer size 1 must be at least 1"),
        ({"sizes": [3]}, ValueError, "at least an input and an output"),
        ({"sizes": [3, 2.5, 2]}, TypeError, "layer size 1 must be an integer"),
        (
            {"sizes": [3, 4, 2], "hidden_activation": "swish"},
            ValueError,
            "unknown activation 'swish'",
        ),
        ({"sizes": [3, 4, 2], "loss": "hinge"}, ValueError, "unknown loss 'hinge'"),
        (
            {"sizes": [3, 4, 2], "loss": "cross_entropy", "output_activation": "relu"},
            ValueError,
            "needs a 'softmax'",
        ),
        ({"sizes": [3, 4, 2], "dtype": "float16"}, ValueError, "unknown dtype"),
        ({"sizes": [3, 4, 2], "init": "orthogonal"}, ValueError, "unknown init"),
    ],
)
def test_bad_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        Network(**kwargs)


def test_divergence_is_reported_not_hidden():
    rng = np.random.default_rng(0)
    net = Network([2, 8, 1], "identity", "identity", "quadratic", dtype="float64")
    with pytest.raises(FloatingPointError, match="diverged"):
        fit(
            net,
            SGD(learning_rate=0.99, momentum=0.9),
            rng.normal(size=(50, 2)) * 1e3,
            rng.normal(size=(50, 1)),
            epochs=50,
            batch_size=50,
        )
