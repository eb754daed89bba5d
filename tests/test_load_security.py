"""A bounded load run against two workers, and the security rules."""

from __future__ import annotations

import http.client
import json
import threading
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


def client(port: int, path: str, bodies, first: int, count: int, results: list, token=None):
    """Send bodies(first) .. bodies(first + count - 1), each on a fresh connection (so the
    kernel spreads them over the workers); record (status, body bytes, worker) or, on a
    connection error, (0, error, None).  The test's thread judges them after join."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for i in range(first, first + count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", path, body=bodies(i), headers=headers)
            resp = conn.getresponse()
            results.append((resp.status, resp.read(), resp.getheader("X-Bpserve-Worker")))
        except (OSError, http.client.HTTPException) as exc:
            results.append((0, repr(exc), None))
        finally:
            conn.close()


PHASES = [(100, 40), (600, 200)]  # (predictions per client, steps): warm-up, then the run


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
        predictions: list = []
        steps: list = []
        rss = []
        done = [0, 0]
        for n_predict, n_steps in PHASES:  # 3 predicting clients and 1 training one
            threads = [
                threading.Thread(
                    target=client,
                    args=(s.port, "/predict", lambda i: probe, 0, n_predict, predictions),
                )
                for _ in range(3)
            ]
            threads.append(
                threading.Thread(
                    target=client,
                    args=(s.port, "/train-step", step_body, done[1], n_steps, steps, TOKEN),
                )
            )
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=600)
            assert not any(t.is_alive() for t in threads)
            done = [done[0] + n_predict, done[1] + n_steps]
            rss.append(worker_rss_mb(s.proc.pid))
        workers = set(rss[-1])
        described = s.from_every_worker("GET", "/models/digits")

    errors = [r[:2] for r in predictions + steps if r[0] != 200]
    assert errors == [], errors[:3]
    assert len(predictions) == 3 * done[0] and len(steps) == done[1]
    replies = [(json.loads(body), int(pid)) for _, body, pid in predictions + steps]
    # both workers answered, and both end on the same weights
    assert {pid for _, pid in replies} == workers and len(workers) == 2
    assert set(described) == workers
    infos = [info for rs in described.values() for _, info in rs]
    assert {(i["online_steps"], i["weights_sha256"]) for i in infos} == {
        (len(steps), infos[0]["weights_sha256"])
    }
    step_numbers = [reply["step"] for reply, _ in replies[len(predictions) :]]
    assert step_numbers == list(range(1, len(steps) + 1))  # no gaps, no repeats
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
    seen = {json.dumps(reply["outputs"]) for reply, _ in replies[: len(predictions)]}
    assert seen <= valid, f"{len(seen - valid)} predictions match no state of the model"
    assert len(seen) > 1  # predictions did follow the training
    warm, end = rss
    for pid, mb in end.items():
        assert mb - warm.get(pid, mb) < RSS_GROWTH_BOUND_MB, (warm, end)


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
        # The body cap holds before the body is read: a huge Content-Length is refused
        # with one byte of its body sent (were the server waiting for the rest, no reply
        # would come and raw_request's timeout would end the test).
        status, _ = raw_request(
            s.port,
            "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000000000\r\n\r\n",
            b"{",
        )
        assert status == 413
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
