"""What the replica tests share (tests/test_replica*.py): their client, their rows, the
database's journal and its replay.

The reference is always the database's own journal, replayed here through
``apply_step``: every acknowledged step must be in it at its step number with the
rows that were sent, and every replica must serve exactly the replayed weights.
"""

from __future__ import annotations

import hashlib
import http.client
import json

import numpy as np
import psycopg
from threadpoolctl import threadpool_limits

from tests.server import ROOT
from training.data import load_digits
from training.journal import Record, scan
from training.online import apply_step
from training.store import ModelStore

TOKEN = "replicas"


DIGITS = load_digits()


PROBE = DIGITS.x[:3].tolist()


def batch(k: int) -> tuple[np.ndarray, list[str]]:
    """Request k sends its own rows, so the journal shows which request each step was."""
    idx = (np.arange(8) * 37 + k * 8) % len(DIGITS.x)
    return DIGITS.x[idx], [str(v) for v in DIGITS.y[idx]]


def call(port: int, method: str, path: str, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    hdrs.update(headers or {})
    try:
        data = json.dumps(body) if body is not None else None
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()), dict(resp.getheaders())
    finally:
        conn.close()


def train(port: int, k: int):
    x, labels = batch(k)
    return call(port, "POST", "/train-step", {"inputs": x.tolist(), "targets": labels})


def journal(url: str) -> tuple[int, list[Record]]:
    """The database's journal of digits: its head sequence and its step records."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT seq, record FROM bpserve_journal WHERE model = 'digits' ORDER BY seq"
        ).fetchall()
    records = [scan(bytes(blob))[0][0][1] for _, blob in rows]
    assert records[0].kind == "base" and all(r.kind == "step" for r in records[1:])
    return rows[-1][0], records[1:]


def replay(steps: list[Record], version: int = 1, store_dir=ROOT / "models") -> str:
    model, _ = ModelStore(store_dir).load("digits", version)
    with threadpool_limits(1, user_api="blas"):  # as in the workers
        for r in steps:
            model = apply_step(model, r.x, r.y, r.meta["learning_rate"], r.meta["momentum"]).model
    h = hashlib.sha256(model.network.params.tobytes())
    h.update(model.optimizer_state["velocity"].tobytes())
    return h.hexdigest()


def check_acked(steps: list[Record], acked: dict[int, int]) -> None:
    """Every acknowledged (step -> request) is in the journal at that step, as sent."""
    for step, k in acked.items():
        assert steps[step - 1].meta["step"] == step
        np.testing.assert_array_equal(steps[step - 1].x, batch(k)[0].astype(np.float32))


def agree(replicas, seq: int) -> dict:
    """Both replicas at (at least) journal position ``seq``: same weights, same outputs."""
    seen = []
    for r in replicas:
        head = {"X-Bpserve-Min-Step": str(seq)}
        status, info, _ = call(r.port, "GET", "/models/digits", headers=head)
        assert status == 200, info
        status, pred, hdrs = call(r.port, "POST", "/predict", {"inputs": PROBE}, head)
        assert status == 200, pred
        assert int(hdrs["X-Bpserve-Step"]) >= seq
        seen.append((info["weights_sha256"], info["online_steps"], pred["outputs"]))
    assert seen[0] == seen[1]
    return {"sha": seen[0][0], "online_steps": seen[0][1]}
