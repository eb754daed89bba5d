"""Storage faults on a live server: a full tmpfs, faults injected with strace into the
workers' system calls, a read-only store.  After each: nothing acknowledged is lost
(after a restart the steps equal the steps answered 200, and the weights a clean
replay of them), no torn version, no 500, predictions keep working, and learning
resumes once the fault is gone."""

from __future__ import annotations

import pytest

from tests.faults import (
    need_root,
    need_strace,
    remount,
    replay_digest,
    step_body,
    strace,
    tmpfs,
    total_steps,
    workers,
)
from tests.server import Server, make_store
from training.data import load_digits
from training.store import ModelStore

TOKEN = "faults"
PAUSED = {507: "storage_full", 503: ("storage_error", "read_only")}


@pytest.fixture(scope="module")
def digits():
    return load_digits()


class Client:
    """Sends the k-th step until it is acknowledged; counts what was answered 200."""

    def __init__(self, server: Server, digits) -> None:
        self.server, self.digits, self.acked = server, digits, 0

    def step(self) -> tuple[int, dict]:
        status, reply = self.server.request(
            "POST", "/train-step", step_body(self.acked, self.digits), token=TOKEN
        )
        assert status in (200, 503, 507), (status, reply)
        if status == 200:
            assert reply["step"] == self.acked + 1 - self.snapshotted(), reply
            self.acked += 1
        return status, reply

    def snapshotted(self) -> int:
        return (
            total_steps(self.server)
            - self.server.request("GET", "/models/digits")[1]["online_steps"]
        )

    def predicts(self) -> bool:
        body = {"inputs": step_body(0, self.digits)["inputs"]}
        return self.server.request("POST", "/predict", body)[0] == 200


def assert_refused(status: int, reply: dict, code: str) -> None:
    assert reply["error"]["code"] == code, reply
    assert status == (507 if code == "storage_full" else 503), (status, reply)


def assert_whole(server: Server, acked: int, digits) -> None:
    """Every version loads (none torn, no temporary folder left), and what is served
    holds exactly the acknowledged steps with the weights of their clean replay."""
    store = ModelStore(server.models_dir)
    for v in store.versions("digits"):
        store.load("digits", v)
    assert not list((server.models_dir / "digits").glob(".tmp-*"))
    assert total_steps(server) == acked
    info = server.request("GET", "/models/digits")[1]
    assert info["weights_sha256"] == replay_digest(server.models_dir, acked, digits)
    assert "unhandled error" not in server.log.read_text()


def learning_on_every_worker(server: Server, workers: int) -> list[dict]:
    """GET /models/digits on fresh connections until each worker has answered."""
    seen: dict[int, dict] = {}
    for _ in range(200):
        reply = server.request("GET", "/models/digits")[1]
        seen[reply["worker"]] = reply["learning"]
        if len(seen) == workers:
            return list(seen.values())
    raise AssertionError(f"only workers {sorted(seen)} answered")


def test_disk_full_then_grown(tmp_path, digits):
    need_root()
    with tmpfs(tmp_path / "store", "320k") as store:
        server = Server(store, train_token=TOKEN, snapshot_every=0, workers=2).start()
        try:
            client, refused = Client(server, digits), 0
            for _ in range(300):  # bounded: the tmpfs holds about 40 steps
                status, reply = client.step()
                if status != 200:
                    assert_refused(status, reply, "storage_full")
                    refused += 1
                    if refused == 3:
                        break
            assert refused == 3 and client.acked > 5
            assert client.predicts()
            status, reply = server.request("POST", "/models/digits/snapshot", token=TOKEN)
            assert_refused(status, reply, "storage_full")
            # Every worker says so, also one that has not tried to write since.
            for learning in learning_on_every_worker(server, 2):
                assert learning["paused"] and learning["reason"] == "storage_full", learning
            server.stop()  # the restart sees only what was acknowledged, on a full disk
            server.start()
            assert_whole(server, client.acked, digits)
            remount(store, "size=2m")
            for _ in range(3):
                assert client.step()[0] == 200
            for learning in learning_on_every_worker(server, 2):
                assert learning["paused"] is False, learning
            server.stop()
            server.start()
            assert_whole(server, client.acked, digits)
        finally:
            server.stop()


def test_read_only_store_serves_and_refuses_learning(tmp_path, digits):
    """A store mounted read-only (the remount needs no server holding files open for
    writing, so the server is stopped for it): it serves, refuses learning with
    read_only, and learns again once the filesystem is writable, without a restart."""
    need_root()
    with tmpfs(tmp_path / "store", "4m") as store:
        server = Server(store, train_token=TOKEN, snapshot_every=0, workers=2).start()
        try:
            client = Client(server, digits)
            assert client.step()[0] == 200
            server.stop()
            remount(store, "ro")
            server.start()
            assert client.predicts() and total_steps(server) == 1
            for path in ("/train-step", "/models/digits/snapshot", "/models/digits/load"):
                body = {"train-step": step_body(1, digits), "load": {"version": 1}}.get(
                    path.rsplit("/", 1)[1]
                )
                status, reply = server.request("POST", path, body, token=TOKEN)
                assert_refused(status, reply, "read_only")
            assert client.predicts()
            learning = server.request("GET", "/models/digits")[1]["learning"]
            assert learning["paused"] and learning["read_only"], learning
            assert server.request("GET", "/readyz")[1]["learning"]["paused"]
            remount(store, "rw")
            assert client.step()[0] == 200
            assert_whole(server, client.acked, digits)
        finally:
            server.stop()


# Each fault point: where, what strace injects, which request it hits, the answer.
FAULTS = [
    ("journal.log", "write:error=ENOSPC:when=1+", "step", "storage_full"),
    ("journal.log", "write:error=EIO:when=1+", "step", "storage_error"),
    ("journal.log", "write:retval=7:when=1+", "step", "storage_error"),  # short write
    ("journal.log", "fsync:error=EIO:when=1+", "step", "storage_error"),
    # (strace's -P does not match rename's paths on an attached process: a snapshot
    # renames the version folder first, then the journal's new file onto journal.log)
    (None, "rename:error=EIO:when=1+", "snapshot", "storage_error"),  # the version
    (None, "rename:error=EIO:when=2+2", "snapshot", "storage_error"),  # the journal
    ("", "fsync:error=EIO:when=1+", "snapshot", "storage_error"),  # the model folder
    (".journal.PID.tmp", "write:error=ENOSPC:when=1+", "snapshot", "storage_full"),
]


@pytest.mark.parametrize("where,inject,hits,code", FAULTS)
def test_injected_fault(tmp_path, digits, where, inject, hits, code):
    need_strace()
    server = Server(make_store(tmp_path / "models"), train_token=TOKEN, snapshot_every=0, workers=1)
    with server:
        client = Client(server, digits)
        for _ in range(3):
            assert client.step()[0] == 200
        model_dir = server.models_dir / "digits"
        path = None if where is None else model_dir / where.replace("PID", str(workers(server)[0]))
        with strace(workers(server), path, inject, log=tmp_path / "strace.log"):
            for _ in range(2):
                if hits == "step":
                    status, reply = client.step()
                else:
                    status, reply = server.request("POST", "/models/digits/snapshot", token=TOKEN)
                assert_refused(status, reply, code)
            assert client.predicts()
        assert "INJECTED" in (tmp_path / "strace.log").read_text()
        assert_whole(server, client.acked, digits)  # nothing acknowledged lost, nothing extra
        for _ in range(2):
            assert client.step()[0] == 200
        status, reply = server.request("POST", "/models/digits/snapshot", token=TOKEN)
        assert status == 200, reply
        assert client.step()[0] == 200
        server.stop()
        server.start()
        assert_whole(server, client.acked, digits)
