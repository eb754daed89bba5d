"""Regression on targets in the thousands: trained on scaled targets, every number that
leaves the model is in the targets' own units (``/predict``, the V2 output, ``bptrain
evaluate``), and ``/train-step`` takes targets in those units too."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.server import Server
from tests.test_cli import bptrain
from training.store import ModelStore

TOKEN = "t0ken"


def prices_csv(path, n=400, seed=3):
    rng = np.random.default_rng(seed)
    area = rng.uniform(30, 300, n)
    rooms = rng.integers(1, 8, n)
    price = 2000 + 15 * area + 300 * rooms + rng.normal(0, 100, n)
    lines = ["area,rooms,price"] + [f"{a:.2f},{r},{p:.2f}" for a, r, p in zip(area, rooms, price)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def prices(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prices")
    data = prices_csv(tmp / "prices.csv")
    models = tmp / "models"
    out = bptrain("--data", data, "--name", "prices", "--models-dir", models, "--quiet", "--json")
    assert out.returncode == 0, out.stderr
    with Server(models, default_model="prices", train_token=TOKEN) as server:
        yield data, models, server, json.loads(out.stdout)


def test_metrics_in_the_targets_units(prices):
    _, models, _, result = prices
    m = result["metrics"]
    assert m["test_r2"] > 0.95, m
    assert 0 < m["test_mae"] < m["test_rmse"] < 400  # noise sd 100; the targets ~2,000-8,000
    _, manifest = ModelStore(models).load("prices")
    assert {k: manifest.metrics[k] for k in ("test_r2", "test_mae", "test_rmse")} == {
        k: m[k] for k in ("test_r2", "test_mae", "test_rmse")
    }
    assert manifest.format_version == 2 and manifest.targets is not None
    assert manifest.targets["scale"][0] > 100  # the scaling is not the identity


def test_predict_v2_and_evaluate_answer_in_the_targets_units(prices, tmp_path):
    _, models, server, _ = prices
    rows = [[100.0, 3], [250.0, 6], [40.0, 1]]
    status, reply = server.request("POST", "/predict", {"inputs": rows})
    assert status == 200 and reply["labels"] is None
    got = np.array(reply["outputs"])[:, 0]
    expected = 2000 + 15 * np.array([100, 250, 40]) + 300 * np.array([3, 6, 1])
    assert np.all(np.abs(got - expected) < 300), (got, expected)
    body = {"inputs": [{"name": "input", "shape": [3, 2], "datatype": "FP32", "data": rows}]}
    status, v2 = server.request("POST", "/v2/models/prices/infer", body)
    assert status == 200, v2
    np.testing.assert_allclose(v2["outputs"][0]["data"], got, rtol=1e-6)
    path = tmp_path / "rows.csv"
    path.write_text(
        "area,rooms,price\n" + "".join(f"{a},{r},{e}.5\n" for (a, r), e in zip(rows, expected))
    )
    ev = bptrain("evaluate", "--name", "prices", "--data", path, "--models-dir", models,
                 "--json", "--outputs")  # fmt: skip
    assert ev.returncode == 0, ev.stderr
    out = json.loads(ev.stdout)
    np.testing.assert_allclose(np.array(out["outputs"])[:, 0], got, rtol=1e-6)
    rmse = float(np.sqrt(np.mean((got - (expected + 0.5)) ** 2)))
    assert out["scores"]["rmse"] == pytest.approx(rmse, rel=1e-4)


def test_train_step_takes_targets_in_their_own_units(prices):
    _, models, server, _ = prices
    _, manifest = ModelStore(models).load("prices")
    scale = manifest.targets["scale"][0]
    row = [[120.0, 2]]
    now = server.request("POST", "/predict", {"inputs": row})[1]["outputs"][0][0]
    # The target it predicts: nothing to learn (and with no momentum, nothing moves).
    # As a bare number or as a one-value vector.
    for targets in ([now], [[now]]):
        status, reply = server.request(
            "POST", "/train-step", {"inputs": row, "targets": targets, "momentum": 0},
            token=TOKEN,
        )  # fmt: skip
        assert status == 200, reply
        assert reply["loss_before"] < 1e-6, reply
    # 500 above it: the loss is that gap in the scaled units the network trains on
    # (quadratic loss 0.5 d^2), and a step moves the prediction up, in the same units.
    status, reply = server.request(
        "POST", "/train-step", {"inputs": row, "targets": [now + 500]}, token=TOKEN
    )
    assert status == 200, reply
    assert reply["loss_before"] == pytest.approx(0.5 * (500 / scale) ** 2, rel=1e-3)
    after = server.request("POST", "/predict", {"inputs": row})[1]["outputs"][0][0]
    assert now < after < now + 1000
    # The V2 extension takes a target tensor in the same units.
    v2 = {
        "inputs": [
            {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": row[0]},
            {"name": "target", "shape": [1, 1], "datatype": "FP32", "data": [after]},
        ]
    }
    status, reply = server.request("POST", "/v2/models/prices/train", v2, token=TOKEN)
    assert status == 200 and reply["loss_before"] < 1e-6, reply
