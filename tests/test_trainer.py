import threading

import numpy as np
import pytest

from training import SGD, Network, Schedule, fit
from training.data import Standardizer, load, stratified_split
from training.engine import trainer
from training.engine.trainer import _gathered_ahead, gathers_ahead, train_epoch

CHUNK = 512  # rows per chunk in the tests below (AHEAD_BYTES is set to make it so)
ROW_BYTES = (5 + 1) * 8 + 3 * 8  # 5 float64 features, the ones column, 3 targets


def blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centers = np.array([[2, 0], [-2, 1], [0, -2]])
    return centers[labels] + rng.normal(scale=0.6, size=(n, 2)), np.eye(3)[labels]


def test_same_seed_same_data_bit_identical_weights():
    x, y = blobs()
    runs = []
    for _ in range(2):
        net = Network([2, 16, 3], "relu", loss="cross_entropy", seed=11)
        fit(net, SGD(0.05, 0.9), x, y, epochs=3, batch_size=16, seed=4)
        runs.append(net.params.tobytes())
    assert runs[0] == runs[1]
    other = Network([2, 16, 3], "relu", loss="cross_entropy", seed=12)
    fit(other, SGD(0.05, 0.9), x, y, epochs=3, batch_size=16, seed=4)
    assert other.params.tobytes() != runs[0]


@pytest.mark.parametrize(
    ("n", "batch"),
    [
        (300, 16),  # a short last batch, fewer rows than one chunk
        (4 * CHUNK, 32),  # whole chunks only
        (3 * CHUNK + 70, 32),  # a short last chunk and a short last batch
        (CHUNK + 300, CHUNK + 100),  # batches larger than a chunk
        (50, 64),  # fewer rows than one batch
    ],
)
def test_gathering_ahead_trains_on_the_same_batches(n, batch, monkeypatch):
    """The second thread changes when rows are copied, never which rows or in what order."""
    monkeypatch.setattr(trainer, "AHEAD_BYTES", CHUNK * ROW_BYTES)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 5))
    y = np.eye(3)[rng.integers(0, 3, n)]
    weights = []
    for ahead in (False, True):
        net = Network([5, 8, 3], "tanh", loss="cross_entropy", dtype="float64", seed=2)
        opt = SGD(0.05, 0.9)
        state = opt.init_state(net.params)
        for epoch in range(2):
            rng_e = np.random.default_rng(epoch)
            train_epoch(net, opt, state, x, y, batch, rng_e, gather_ahead=ahead)
        weights.append(net.params.tobytes())
    assert weights[0] == weights[1]


def test_gathering_ahead_is_only_chosen_when_a_core_is_idle():
    assert gathers_ahead([784, 128, 10], 32, threads=1, cores=2)
    assert not gathers_ahead([784, 128, 10], 32, threads=2, cores=2)
    assert not gathers_ahead([784, 128, 10], 32, threads=1, cores=1)
    assert not gathers_ahead([784, 30, 10], 10, threads=1, cores=2)  # too small a batch


def test_an_abandoned_epoch_stops_its_gathering_thread(monkeypatch):
    monkeypatch.setattr(trainer, "AHEAD_BYTES", CHUNK * ((4 + 1) * 8 + 2 * 8))
    x = np.random.default_rng(0).standard_normal((10 * CHUNK, 4))
    y = np.zeros((len(x), 2))
    batches = _gathered_ahead(x, y, np.arange(len(x)), 32)
    xb, _ = next(batches)
    assert np.array_equal(xb[:, :-1], x[:32]) and (xb[:, -1] == 1).all()
    assert any(t.name.startswith("gather") for t in threading.enumerate())
    batches.close()  # what an exception in the training loop does to the generator
    assert not any(t.name.startswith("gather") for t in threading.enumerate())


def test_schedules():
    assert Schedule("constant").rate(0.1, 50) == 0.1
    assert Schedule("step", step_size=10, gamma=0.5).rate(0.1, 25) == pytest.approx(0.025)
    assert Schedule("inverse_time", decay=0.5).rate(0.1, 2) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="schedule"):
        Schedule("cosine")


def test_early_stopping_restores_best_weights_and_calls_back():
    x, y = blobs()
    vx, vy = blobs(100, seed=1)
    seen = []
    net = Network([2, 32, 3], "relu", loss="cross_entropy", seed=0)
    # An absurd learning rate makes validation loss get worse after the first epochs.
    history, _ = fit(
        net,
        SGD(3.0, 0.9),
        x,
        y,
        epochs=40,
        batch_size=8,
        seed=0,
        validation=(vx, vy),
        patience=3,
        callback=seen.append,
    )
    assert history.stopped_early and len(history.epochs) < 40
    assert [r["epoch"] for r in seen] == list(range(1, len(seen) + 1))
    best = min(r["val_loss"] for r in history.epochs)
    restored = net.loss_value(vx, vy)
    assert restored == pytest.approx(best, rel=1e-5)


def test_code_recognizer_far_above_the_original_program(code_recognizer_path):
    """The original program scored 65.20 % (on an unshuffled split); we reach ~95 %."""
    ds = load(code_recognizer_path)
    train, _, test = stratified_split(ds, 0.0, 0.2, seed=0)
    scaler = Standardizer.fit(ds.x[train])
    net = Network([20, 32, 3], "tanh", loss="cross_entropy", seed=0)
    fit(
        net,
        SGD(0.05, 0.9),
        scaler.apply(ds.x[train]),
        ds.target_matrix()[train],
        epochs=40,
        batch_size=32,
        seed=0,
    )
    accuracy = (net.predict_classes(scaler.apply(ds.x[test])) == ds.y[test]).mean()
    print(f"code-recognizer test accuracy: {accuracy:.4f}")
    assert accuracy > 0.90
