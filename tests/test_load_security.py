"""A bounded load run against two workers, and the security rules."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from tests.server import ROOT, Server, make_store
from training.data import load_digits
from training.online import apply_step
from training.store import ModelStore

TOKEN = "load-token"
RSS_GROWTH_BOUND_MB = 40  # per worker, between warm-up and the end of the run


def worker_rss_mb(master_pid: int) -> dict[int, float]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    out = {}
    for pid in map(int, children):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out[pid] = int(line.split()[1]) / 1024
    return out


def client(port: int, path: str, bodies, results: list, stop: threading.Event, token=None) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    i = 0
    while not stop.is_set():
        body = bodies(i)
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            results.append((resp.status, json.loads(resp.read())))
        except (OSError, http.client.HTTPException) as exc:
            results.append((0, repr(exc)))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i += 1
    conn.close()


def test_bounded_load_two_workers_consistent_and_flat_memory(tmp_path):
    digits = load_digits()
    store_dir = make_store(tmp_path / "models")
    probe_rows = digits.x[500:504]
    probe = json.dumps({"inputs": probe_rows.tolist()}).encode()

    def step_body(k: int) -> bytes:
        idx = np.arange(k * 8, k * 8 + 8) % len(digits.x)
        return json.dumps(
            {"inputs": digits.x[idx].tolist(), "targets": [str(v) for v in digits.y[idx]]}
        ).encode()

    with Server(
        store_dir, train_token=TOKEN, workers=2, snapshot_every=0, log_requests="false"
    ) as s:
        stop = threading.Event()
        predictions: list = []
        steps: list = []
        threads = [
            threading.Thread(
                target=client, args=(s.port, "/predict", lambda i: probe, predictions, stop)
            )
            for _ in range(3)
        ]
        threads.append(
            threading.Thread(
                target=client, args=(s.port, "/train-step", step_body, steps, stop, TOKEN)
            )
        )
        for t in threads:
            t.start()
        time.sleep(8)
        warm = worker_rss_mb(s.proc.pid)
        time.sleep(40)
        end = worker_rss_mb(s.proc.pid)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        final = s.request("GET", "/models/digits")[1]

    errors = [r for r in predictions + steps if r[0] != 200]
    assert errors == [], errors[:3]
    assert len(predictions) > 500 and len(steps) > 100
    assert [r[1]["step"] for r in steps] == list(range(1, len(steps) + 1))  # no gaps, no repeats
    assert final["online_steps"] == len(steps)
    # Every prediction equals the engine's on one of the states the steps went through.
    model, _ = ModelStore(store_dir).load("digits", 1)
    valid = {json.dumps(model.predict(probe_rows).tolist())}
    with threadpool_limits(1, user_api="blas"):
        for k in range(len(steps)):
            idx = np.arange(k * 8, k * 8 + 8) % len(digits.x)
            y = model.targets_from_labels([str(v) for v in digits.y[idx]])
            model = apply_step(
                model,
                digits.x[idx].astype(np.float32),
                y,
                model.optimizer.learning_rate,
                model.optimizer.momentum,
            ).model
            valid.add(json.dumps(model.predict(probe_rows).tolist()))
    seen = {json.dumps(r[1]["outputs"]) for r in predictions}
    assert seen <= valid, f"{len(seen - valid)} predictions match no state of the model"
    assert len(seen) > 1  # predictions did follow the training
    for pid, rss in end.items():
        assert rss - warm.get(pid, rss) < RSS_GROWTH_BOUND_MB, (warm, end)


def raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.connect()
        conn.sock.sendall(head.encode() + body)
        resp = http.client.HTTPResponse(conn.sock)
        resp.begin()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_security_rules(tmp_path):
    store_dir = make_store(tmp_path / "models")
    (tmp_path / "secret.txt").write_text("do not serve")
    with Server(store_dir, train_token=TOKEN, max_body_bytes=4096) as s:
        row = {"inputs": [[0.0] * 64]}
        for path in [
            "/models/..%2Fsecret.txt/predict",
            "/models/%2e%2e/predict",
            "/models/..%2F..%2Fetc/predict",
            "/models/digits/versions/..%2F1/predict",
            "/models/.hidden/predict",
        ]:
            status, reply = s.request("POST", path, row)
            assert 400 <= status < 500, (path, status)
        assert s.request("POST", "/models/digits/versions/0/predict", row)[0] in (404, 422)
        assert s.request("POST", "/models/..%2Fdigits/load", {"version": 1}, token=TOKEN)[0] in (
            404,
            422,
        )
        # The body cap holds before the body is read: a huge Content-Length is refused at once.
        t0 = time.monotonic()
        status, _ = raw_request(
            s.port,
            "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000000000\r\n\r\n",
            b"{",
        )
        assert status == 413 and time.monotonic() - t0 < 5
        # Chunked bodies without a length are capped as they stream in.
        chunk = b'{"inputs": [' + b"0," * 4000 + b"0]}"
        status, _ = raw_request(
            s.port,
            "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n",
        )
        assert status == 413
        # No debug mode: an error reply carries no trace or source.
        status, reply = s.request("POST", "/predict", raw=b"{bad")
        assert (
            status == 400
            and "Traceback" not in json.dumps(reply)
            and "File " not in json.dumps(reply)
        )
        status, _ = s.request("GET", "/console")
        assert status == 404
    # Tokens are compared in constant time.
    assert "hmac.compare_digest" in (ROOT / "service" / "auth.py").read_text()
