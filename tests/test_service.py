"""The service over real HTTP: gunicorn on a free loopback port, a temporary store.

Health, readiness, OpenAPI and metrics, predictions, and starting and stopping; the
rest is in tests/test_service_*.py, the fixtures in tests/conftest.py."""

from __future__ import annotations

import numpy as np

from tests.server import Server
from training.store import ModelStore


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
