"""The service over real HTTP: gunicorn on a free loopback port, a temporary store."""

from __future__ import annotations

import json
import re
import shutil
import time

import numpy as np
import pytest

from tests.server import Server, make_store
from training.data import load_digits
from training.store import ModelStore

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture
def store_dir(tmp_path):
    return make_store(tmp_path / "models")


@pytest.fixture
def server(store_dir):
    with Server(store_dir, train_token=TOKEN) as s:
        yield s


def wait_for(predicate, tries=300):
    """Ask up to ``tries`` times, 0.1 s apart: a count, only there to end a hung test."""
    for _ in range(tries):
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_health_ready_openapi_metrics(server):
    assert server.request("GET", "/healthz") == (200, {"status": "ok"})
    status, body = server.request("GET", "/readyz")
    assert status == 200 and body["model"] == "digits" and body["version"] == 1
    status, spec = server.request("GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.1")
    assert {"/predict", "/train-step", "/models/{name}/load"} <= set(spec["paths"])
    assert "PredictRequest" in spec["components"]["schemas"]
    server.request("POST", "/predict", {"inputs": [[0.0] * 64]})
    status, text = server.request("GET", "/metrics")
    assert status == 200
    assert 'bpserve_served_version{model="digits"} 1.0' in text
    assert 'bpserve_rows_predicted_total{model="digits",version="1"} 1.0' in text
    assert (
        'bpserve_requests_total{endpoint="/predict",model="digits",status="200",version="1"}'
        in text
    )


def test_predictions_equal_the_engine(server, store_dir, digits):
    model, _ = ModelStore(store_dir).load("digits", 1)
    x = digits.x[:50]
    status, body = server.request("POST", "/predict", {"inputs": x.tolist()})
    assert status == 200 and body["model"] == "digits" and body["version"] == 1
    expected = model.predict(x)
    assert np.allclose(body["outputs"], expected, rtol=1e-5, atol=1e-7)
    assert body["labels"] == [model.labels[i] for i in expected.argmax(1)]
    assert np.mean(np.array(body["labels"], dtype=int) == digits.y[:50]) > 0.9
    # one row as a flat list, and the named routes
    status, one = server.request("POST", "/models/digits/predict", {"inputs": x[0].tolist()})
    assert status == 200 and np.allclose(
        one["outputs"][0], body["outputs"][0], rtol=1e-5, atol=1e-7
    )
    status, v1 = server.request(
        "POST", "/models/digits/versions/1/predict", {"inputs": [x[0].tolist()]}
    )
    assert status == 200 and v1["version"] == 1


BAD_REQUESTS = [
    # (method, path, body or raw, headers, status, code)
    ("POST", "/predict", b'{"inputs": [[1, 2,', None, 400, "malformed_json"),
    (
        "POST",
        "/predict",
        b'{"inputs": [[0]]}',
        {"Content-Type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    ("GET", "/predict", None, None, 405, "method_not_allowed"),
    ("GET", "/nowhere", None, None, 404, "not_found"),
    ("POST", "/predict", {"inputs": [[0.0] * 63]}, None, 422, "wrong_feature_count"),
    # Rows that are not all numbers take the cell path (service/cells.py), which names
    # the row and the column (holes are filled: tests/test_tables.py; a format-1 model
    # refuses them: tests/test_format1.py).
    ("POST", "/predict", {"inputs": [[None] * 63]}, None, 422, "wrong_feature_count"),
    ("POST", "/predict", {"inputs": [{"pixel_0_0": "x"}]}, None, 422, "invalid_cell"),
    ("POST", "/predict", {"inputs": [{"pixel_0_0": 1, "nope": 2}]}, None, 422, "unknown_column"),
    ("POST", "/predict", {"inputs": [[1e39] * 64]}, None, 422, "non_finite_input"),
    ("POST", "/predict", {"inputs": []}, None, 422, "empty_batch"),
    ("POST", "/predict", {"inputs": [[0.0] * 64, [0.0] * 3]}, None, 422, "ragged_rows"),
    ("POST", "/predict", {"inputs": [["a"] * 64]}, None, 422, "invalid_cell"),
    ("POST", "/predict", {"inputs": [[0.0] * 64], "extra": 1}, None, 422, "invalid_request"),
    ("POST", "/predict", {"inputs": [[0.0] * 64], "model": "nope"}, None, 404, "unknown_model"),
    (
        "POST",
        "/models/digits/versions/9/predict",
        {"inputs": [[0.0] * 64]},
        None,
        404,
        "unknown_version",
    ),
    ("POST", "/predict", {"inputs": [[0.0] * 64], "model": "../etc"}, None, 404, "unknown_model"),
    ("POST", "/predict", b"[1, 2]", None, 422, "invalid_request"),
]


@pytest.mark.parametrize(
    "method,path,body,headers,status,code",
    BAD_REQUESTS,
    ids=[f"{c[4]}-{c[5]}" for c in BAD_REQUESTS],
)
def test_bad_requests_get_a_clear_4xx(server, method, path, body, headers, status, code):
    raw = body if isinstance(body, bytes) else None
    got, reply, head = server.call(method, path, None if raw else body, raw=raw, headers=headers)
    assert got == status, reply
    assert int(head["X-Bpserve-Worker"]) > 0  # errors name their worker too
    assert reply["error"]["code"] == code and reply["error"]["message"]
    assert "Traceback" not in str(reply)


def test_limits_body_size_and_rows(store_dir):
    with Server(store_dir, max_body_bytes=2048, max_rows=3) as s:
        status, reply = s.request("POST", "/predict", {"inputs": [[0.0] * 64] * 40})
        assert status == 413 and reply["error"]["code"] in (
            "body_too_large",
            "request_entity_too_large",
        )
        status, reply = s.request("POST", "/predict", {"inputs": [[0] * 64] * 4})
        assert status == 422 and reply["error"]["code"] == "too_many_rows"


def test_token_rules(server, store_dir):
    step = {"inputs": [[0.0] * 64], "targets": ["3"]}
    assert server.request("POST", "/train-step", step)[0] == 401
    status, reply = server.request("POST", "/train-step", step, token="wrong")
    assert status == 401 and reply["error"]["message"] == "wrong token"
    assert (
        server.request("POST", "/train-step", step, headers={"Authorization": "Basic abc"})[0]
        == 401
    )
    assert server.request("POST", "/models/digits/load", {"version": 1})[0] == 401
    assert server.request("POST", "/models/digits/snapshot")[0] == 401
    assert server.request("POST", "/train-step", step, token=TOKEN)[0] == 200
    # no token configured: state-changing endpoints are off
    with Server(store_dir) as open_server:
        status, reply = open_server.request("POST", "/train-step", step, token=TOKEN)
        assert status == 403 and "online training disabled" in reply["error"]["message"]
    # a predict token, read from the environment
    with Server(store_dir, predict_token="p") as guarded:
        assert guarded.request("POST", "/predict", {"inputs": [[0.0] * 64]})[0] == 401
        assert guarded.request("POST", "/predict", {"inputs": [[0.0] * 64]}, token="p")[0] == 200


def test_token_from_file(store_dir, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    with Server(store_dir, train_token_file=secret) as s:
        step = {"inputs": [[0.0] * 64], "targets": ["1"]}
        assert s.request("POST", "/train-step", step, token="from-file")[0] == 200


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


def test_hot_reload_pin_rollback_and_failed_load(server, store_dir, digits):
    store = ModelStore(store_dir)
    model, _ = store.load("digits", 1)
    changed = model.copy()
    changed.network.params *= 0.5
    assert store.save("digits", changed) == 2
    assert wait_for(lambda: server.request("GET", "/readyz")[1]["version"] == 2)
    _, body = server.request("POST", "/predict", {"inputs": digits.x[:3].tolist()})
    assert body["version"] == 2 and np.allclose(
        body["outputs"], changed.predict(digits.x[:3]), rtol=1e-5
    )
    # rollback and pin
    status, reply = server.request("POST", "/models/digits/load", {"version": 1}, token=TOKEN)
    assert status == 200 and reply == {"model": "digits", "version": 1, "pinned": True}
    assert store.save("digits", changed) == 3
    # Not a sleep: evidence that each worker's watcher looked at the store since v3.
    looked = server.after_watchers_looked()
    assert {(i["served_version"], i["pinned"]) for i in looked.values()} == {(1, True)}
    # unknown version to load
    assert server.request("POST", "/models/digits/load", {"version": 99}, token=TOKEN)[0] == 404


def test_a_version_that_fails_to_load_keeps_the_old_one(server, store_dir):
    # Made aside and renamed into place, so that no poll sees it half made.
    bad = store_dir / "digits" / ".bad-2"
    shutil.copytree(store_dir / "digits" / "1", bad)
    weights = bad / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    (bad / "manifest.json").write_text(
        (bad / "manifest.json").read_text().replace('"version": 1', '"version": 2')
    )
    bad.rename(store_dir / "digits" / "2")

    # Each worker tries the new version on its own poll and keeps its own record of the
    # failure: look at the reply that shows it.
    seen = []

    def failed():
        info = server.request("GET", "/models/digits")[1]
        seen.append(info)
        return info["load_error"] is not None

    assert wait_for(failed)
    info = seen[-1]
    assert info["served_version"] == 1 and info["load_error"]["version"] == 2
    assert "sha256" in info["load_error"]["problem"]
    assert server.request("POST", "/predict", {"inputs": [[0.0] * 64]})[0] == 200
    _, text = server.request("GET", "/metrics")
    # each worker that tried counts its own failure
    failures = re.search(
        r'bpserve_model_load_failures_total\{model="digits",version="2"\} ([\d.]+)', text
    )
    assert failures and float(failures.group(1)) >= 1


def test_snapshot_then_restart_serves_the_snapshot(store_dir, digits):
    x, labels = digits.x[:16].tolist(), [str(v) for v in digits.y[:16]]
    probe = {"inputs": digits.x[200:205].tolist()}
    with Server(store_dir, train_token=TOKEN) as s:
        for _ in range(2):
            assert (
                s.request("POST", "/train-step", {"inputs": x, "targets": labels}, token=TOKEN)[0]
                == 200
            )
        _, trained = s.request("POST", "/predict", probe)
        status, snap = s.request("POST", "/models/digits/snapshot", token=TOKEN)
        assert status == 200 and snap == {
            "model": "digits",
            "version": 2,
            "parent_version": 1,
            "online_steps": 2,
        }
    manifest = ModelStore(store_dir).read_manifest("digits", 2)
    assert manifest.parent_version == 1 and manifest.online_steps == 2
    with Server(store_dir, train_token=TOKEN) as s:
        _, again = s.request("POST", "/predict", probe)
        assert again["version"] == 2 and again["outputs"] == trained["outputs"]
        _, listing = s.request("GET", "/models")
        assert listing["models"] == [
            {
                "name": "digits",
                "versions": [1, 2],
                "served_version": 2,
                "online_steps": 0,
                "pinned": False,
            }
        ]


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


def test_not_ready_without_the_default_model(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with Server(empty).start(ready=False) as s:
        status, body = s.request("GET", "/readyz")
        assert status == 503 and body["status"] == "not ready"
        assert s.request("GET", "/healthz")[0] == 200


def test_sigterm_stops_cleanly(store_dir):
    s = Server(store_dir).start()
    assert s.stop() == 0


def test_rollback_recovers_when_the_served_version_breaks(store_dir, digits):
    store = ModelStore(store_dir)
    model, _ = store.load("digits", 1)
    assert store.save("digits", model.copy()) == 2
    with Server(store_dir, train_token=TOKEN) as s:
        assert wait_for(lambda: s.request("GET", "/readyz")[1].get("version") == 2)
        # version 2 rots on disk; a restarted server cannot load what its journal names
        weights = store_dir / "digits" / "2" / "weights.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    with Server(store_dir, train_token=TOKEN).start(ready=False) as s:
        status, reply = s.request("POST", "/predict", {"inputs": [[0.0] * 64]})
        assert status in (404, 503) and "error" in reply
        status, reply = s.request("POST", "/models/digits/load", {"version": 1}, token=TOKEN)
        assert status == 200, reply
        assert wait_for(lambda: s.request("POST", "/predict", {"inputs": [[0.0] * 64]})[0] == 200)
        # A worker that served nothing picks the pin up on its next reload tick (2 s), so
        # /readyz may first reach one that has not yet: wait, as for /predict above.
        assert wait_for(lambda: s.request("GET", "/readyz")[1].get("version") == 1)


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
