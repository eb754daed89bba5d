"""Back-propagated gradients against centred finite differences (float64)."""

import numpy as np
import pytest

from training.engine.activations import ACTIVATIONS
from training.engine.layout import layer_views as _layer_views
from training.engine.network import Network

OUTPUT_LOSS = [(act, "quadratic") for act in ACTIVATIONS] + [
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
]
ARCHITECTURES = [[4, 5, 3], [3, 6, 5, 4, 3]]  # one and three hidden layers


def numeric_gradient(net: Network, x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.empty_like(net.params)
    for i in range(net.params.size):
        orig = net.params[i]
        net.params[i] = orig + eps
        up = net.loss_value(x, y)
        net.params[i] = orig - eps
        down = net.loss_value(x, y)
        net.params[i] = orig
        grad[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("sizes", ARCHITECTURES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("output,loss", OUTPUT_LOSS)
@pytest.mark.parametrize("hidden", sorted(ACTIVATIONS))
def test_backprop_matches_finite_differences(sizes, hidden, output, loss):
    rng = np.random.default_rng(7)
    net = Network(sizes, hidden, output, loss, dtype="float64", seed=3)
    # Random biases too: with zero biases a dead ReLU unit sits exactly on its kink,
    # where no finite difference is defined.
    net.params[:] = rng.normal(scale=0.7, size=net.params.size)
    x = rng.normal(size=(7, sizes[0]))
    y = rng.random((7, sizes[-1]))
    if loss == "cross_entropy":
        y /= y.sum(axis=1, keepdims=True)
    before = net.params.copy()
    analytic = net.gradients(x, y)
    assert np.array_equal(net.params, before), "backward must not change the model"
    numeric = numeric_gradient(net, x, y)
    rel = np.linalg.norm(analytic.flat - numeric) / (
        np.linalg.norm(analytic.flat) + np.linalg.norm(numeric)
    )
    assert rel < 1e-6, f"relative error {rel:.2e}"
    # and per layer: an error in a layer with small gradients cannot hide in the total
    numeric_w, numeric_b = _layer_views(numeric, net.sizes)
    for layer, pairs in enumerate(zip(analytic.weights + analytic.biases, numeric_w + numeric_b)):
        a, n = pairs
        err = np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n) + 1e-30)
        assert err < 1e-6, f"block {layer}: relative error {err:.2e}"


def test_softmax_and_sigmoid_do_not_overflow():
    from training.engine.activations import get_activation

    z = np.array([[1000.0, -1000.0, 0.0]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = get_activation("softmax").forward(z)
        g = get_activation("sigmoid").forward(z)
    assert np.allclose(s, [[1, 0, 0]]) and np.allclose(g, [[1, 0, 0.5]])
