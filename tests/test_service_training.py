"""The service over real HTTP (tests/server.py): online train steps, against the engine,
refused when bad, agreed on by every worker."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.server import Server
from tests.train_token import TOKEN
from training.store import ModelStore


def test_train_steps_change_predictions_like_the_engine(server, store_dir, digits):
    model, _ = ModelStore(store_dir).load("digits", 1)
    x, labels = digits.x[:32], [str(v) for v in digits.y[:32]]
    probe = digits.x[100:110]
    _, before = server.request("POST", "/predict", {"inputs": probe.tolist()})
    for i in range(3):
        status, reply = server.request(
            "POST",
            "/train-step",
            {"inputs": x.tolist(), "targets": labels, "learning_rate": 0.5},
            token=TOKEN,
        )
        assert status == 200, reply
        assert reply["model"] == "digits" and reply["version"] == 1 and reply["step"] == i + 1
        assert np.isfinite(reply["loss_before"]) and np.isfinite(reply["loss_after"])
    _, after = server.request("POST", "/predict", {"inputs": probe.tolist()})
    assert not np.allclose(before["outputs"], after["outputs"])
    # the same three steps in-process give the same predictions
    from training.online import apply_step

    y = model.targets_from_labels(labels)
    for _ in range(3):
        model = apply_step(model, x.astype(np.float32), y, 0.5, model.optimizer.momentum).model
    assert np.allclose(after["outputs"], model.predict(probe), rtol=1e-4, atol=1e-6)
    status, info = server.request("GET", "/models/digits")
    assert info["online_steps"] == 3 and info["online"]["rows"] == 96
    assert 0 <= info["online"]["accuracy"] <= 1


def test_bad_train_steps_leave_the_model_unchanged(server):
    probe = {"inputs": [[float(i % 16) for i in range(64)]]}
    _, before = server.request("POST", "/predict", probe)
    cases = [
        ({"inputs": [[0.0] * 64], "targets": ["eleven"]}, 422, "unknown_label"),
        ({"inputs": [[0.0] * 64] * 2, "targets": ["1"]}, 422, "row_mismatch"),
        ({"inputs": [[0.0] * 64], "targets": [[0.0] * 9]}, 422, "wrong_feature_count"),
        ({"inputs": [[0.0] * 64], "targets": ["1"], "momentum": 1.5}, 422, "invalid_request"),
        # Inputs are clipped by the preprocessing; target vectors are not.
        (
            {"inputs": [[16.0] * 64], "targets": [[1e30] * 10], "learning_rate": 100},
            422,
            "non_finite_step",
        ),
    ]
    for body, status, code in cases:
        got, reply = server.request("POST", "/train-step", body, token=TOKEN)
        assert (got, reply["error"]["code"]) == (status, code), reply
    _, after = server.request("POST", "/predict", probe)
    assert after == before
    _, info = server.request("GET", "/models/digits")
    assert info["online_steps"] == 0


def test_workers_agree_after_train_steps(store_dir, digits):
    """Two workers (the default); after K steps every worker answers identically, like
    the engine.  Each reply names its worker (X-Bpserve-Worker), so the test asks on
    fresh connections until both have answered.  The watcher polls only once a minute
    here, so it is not what makes them agree."""
    from training.online import apply_step

    with Server(store_dir, train_token=TOKEN, reload_interval=60) as s:
        x, labels = digits.x[:16], [str(v) for v in digits.y[:16]]
        for _ in range(5):
            assert (
                s.request(
                    "POST", "/train-step", {"inputs": x.tolist(), "targets": labels}, token=TOKEN
                )[0]
                == 200
            )
        probe = {"inputs": digits.x[300:310].tolist()}
        predictions = s.from_every_worker("POST", "/predict", probe)
        described = s.from_every_worker("GET", "/models/digits")
    assert len(predictions) == 2 and len(described) == 2, "not every worker answered"
    replies = [r for rs in predictions.values() for r in rs]
    assert {status for status, _ in replies} == {200}
    answers = {json.dumps(body["outputs"]) for _, body in replies}
    infos = [body for rs in described.values() for _, body in rs]
    assert {info["worker"] for info in infos} == set(described)  # the field names the header's pid
    assert {(info["online_steps"], info["weights_sha256"]) for info in infos} == {
        (5, infos[0]["weights_sha256"])
    }
    assert len(answers) == 1
    model, _ = ModelStore(store_dir).load("digits", 1)
    dt = model.network.dtype
    for _ in range(5):
        model = apply_step(
            model,
            x.astype(dt),
            model.targets_from_labels(labels),
            model.optimizer.learning_rate,
            model.optimizer.momentum,
        ).model
    assert json.loads(answers.pop()) == model.predict(digits.x[300:310]).tolist()


def test_a_step_prepared_for_another_shape_is_refused_not_crashed(store_dir):
    # The route checks a request against the served snapshot; if a reload swaps in a
    # different architecture before the step takes the lock, the registry refuses it.
    from service.errors import ModelChanged, answer
    from service.registry import Registry

    registry = Registry(ModelStore(store_dir))
    registry.refresh()
    with pytest.raises(ModelChanged) as err:
        registry.train_step(
            "digits", np.zeros((1, 63), np.float32), np.eye(10, dtype=np.float32)[:1], None, None
        )
    reply = answer(err.value)
    assert reply is not None and (reply.status, reply.code) == (409, "model_changed")
    assert registry.get("digits").online_steps == 0
