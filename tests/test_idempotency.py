"""Idempotency-Key: a retried train-step (native or V2) or snapshot applies once, on
every worker, after a restart, and after the worker that wrote it was SIGKILLed
between the journal append and the reply."""

from __future__ import annotations

import http.client

import pytest

from tests.faults import need_strace, step_body, strace, workers
from tests.server import Server, make_store
from training.data import load_digits

TOKEN = "idem"


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture
def server(tmp_path):
    with Server(make_store(tmp_path / "models"), train_token=TOKEN, snapshot_every=0) as s:
        yield s


def keyed(server: Server, path: str, body, key: str):
    return server.request("POST", path, body, token=TOKEN, headers={"Idempotency-Key": key})


def steps_everywhere(server: Server, n: int = 8) -> set[int]:
    """online_steps as several requests (spread over the workers) see it."""
    return {server.request("GET", "/models/digits")[1]["online_steps"] for _ in range(n)}


def test_a_retry_answers_the_original_and_applies_nothing(server, digits):
    first = keyed(server, "/train-step", step_body(0, digits), "k-1")
    assert first[0] == 200 and first[1]["step"] == 1
    for _ in range(6):  # across both workers
        assert keyed(server, "/train-step", step_body(0, digits), "k-1") == first
    assert steps_everywhere(server) == {1}
    status, reply = keyed(server, "/train-step", step_body(1, digits), "k-1")
    assert status == 422 and reply["error"]["code"] == "idempotency_key_reused", reply
    assert keyed(server, "/train-step", step_body(1, digits), "k-2")[1]["step"] == 2
    # a snapshot compacts the journal; the keys go with it
    snap = keyed(server, "/models/digits/snapshot", None, "s-1")
    assert snap[0] == 200 and keyed(server, "/models/digits/snapshot", None, "s-1") == snap
    assert keyed(server, "/train-step", step_body(0, digits), "k-1") == first
    server.stop()
    server.start()
    assert keyed(server, "/train-step", step_body(0, digits), "k-1") == first
    assert keyed(server, "/models/digits/snapshot", None, "s-1") == snap
    assert steps_everywhere(server) == {0}  # nothing since the snapshot
    status, reply = keyed(server, "/train-step", step_body(0, digits), "x" * 300)
    assert status == 400 and reply["error"]["code"] == "bad_idempotency_key"


def test_v2_train_takes_the_key_too(server, digits):
    x, labels = step_body(3, digits)["inputs"], step_body(3, digits)["targets"]
    body = {
        "inputs": [
            {"name": "input", "shape": [len(x), 64], "datatype": "FP32", "data": x},
            {"name": "target", "shape": [len(labels)], "datatype": "BYTES", "data": labels},
        ]
    }
    first = keyed(server, "/v2/models/digits/train", body, "v2-1")
    assert first[0] == 200 and first[1]["step"] == 1
    assert keyed(server, "/v2/models/digits/train", body, "v2-1") == first
    assert steps_everywhere(server) == {1}
    body["inputs"][1]["data"] = list(reversed(labels))
    status, reply = keyed(server, "/v2/models/digits/train", body, "v2-1")
    assert status == 422 and isinstance(reply["error"], str)


def test_retry_after_sigkill_between_append_and_reply(tmp_path, digits):
    need_strace()
    with Server(make_store(tmp_path / "models"), train_token=TOKEN, snapshot_every=0) as server:
        assert keyed(server, "/train-step", step_body(0, digits), "a")[0] == 200
        journal = server.models_dir / "digits" / "journal.log"
        # SIGKILL at the append's fsync: the record is written, the reply never sent.
        kill = strace(workers(server), journal, "fsync:signal=KILL:when=1", log=tmp_path / "s.log")
        with kill, pytest.raises((OSError, http.client.HTTPException)):
            keyed(server, "/train-step", step_body(1, digits), "b")
        status, reply = keyed(server, "/train-step", step_body(1, digits), "b")
        assert (status, reply["step"]) == (200, 2), reply  # the recorded step, not a third
        for _ in range(6):
            assert keyed(server, "/train-step", step_body(1, digits), "b") == (status, reply)
        assert steps_everywhere(server) == {2}
        assert "fsync" in (tmp_path / "s.log").read_text()
