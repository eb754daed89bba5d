"""Replicas sharing online learning through PostgreSQL: real gunicorn servers, each in
its own process group with its own models folder, and one real PostgreSQL server.

The reference is always the database's own journal, replayed here through
``apply_step``: every acknowledged step must be in it at its step number with the
rows that were sent, and every replica must serve exactly the replayed weights.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import threading

import numpy as np
import psycopg
import pytest
from threadpoolctl import threadpool_limits

from tests.server import ROOT, Server, make_store
from training.data import load_digits
from training.errors import UnknownVersion
from training.journal import Record, scan
from training.online import apply_step
from training.pg_db import Database
from training.pg_store import PgStore
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


@pytest.fixture
def pair(tmp_path, pg_url):
    """Replica a seeded with the committed model, replica b with an empty folder."""
    env = {"database_url": pg_url, "train_token": TOKEN, "snapshot_every": 0}
    a = Server(make_store(tmp_path / "a"), workers=2, **env).start()
    (tmp_path / "b").mkdir()
    b = Server(tmp_path / "b", workers=2, **env)
    try:
        b.start()
        yield a, b, pg_url
    finally:
        for s in (b, a):
            s.stop()


def test_alternating_steps_racing_writers_and_a_snapshot(pair, tmp_path):
    a, b, url = pair
    acked: dict[int, int] = {}
    for k in range(6):  # alternate: each step on the other replica than the last
        status, reply, hdrs = train((a, b)[k % 2].port, k)
        assert status == 200 and reply["step"] == k + 1, reply
        acked[reply["step"]] = k
        # The replica that acknowledged it serves it at once, from any of its workers,
        # without the header (its workers share a change counter).
        here = (a, b)[k % 2]
        for _ in range(4):
            status, info, _ = call(here.port, "GET", "/models/digits")
            assert status == 200 and info["online_steps"] == k + 1, info
        state = agree((a, b), int(hdrs["X-Bpserve-Step"]))
        assert state["online_steps"] == k + 1
    assert state["sha"] == replay(journal(url)[1])
    # A step no replica has: a bounded wait, then 503; a header that is not a number: 400.
    seq = int(hdrs["X-Bpserve-Step"])
    status, err, _ = call(b.port, "GET", "/models/digits", headers={"X-Bpserve-Min-Step": "99"})
    assert status == 503 and err["error"]["code"] == "step_not_applied", err
    assert err["error"]["details"] == {"applied": seq, "wanted": 99}
    status, err, _ = call(
        a.port, "POST", "/predict", {"inputs": PROBE}, {"X-Bpserve-Min-Step": "x"}
    )
    assert status == 400 and err["error"]["code"] == "invalid_header", err

    # Two writers race, one per replica: one step each at a time, never a fork.
    replies: list[tuple[int, int, int]] = []

    def writer(server: Server, ks: range) -> None:
        for k in ks:
            status, reply, _ = train(server.port, k)
            replies.append((status, reply.get("step"), k))

    threads = [
        threading.Thread(target=writer, args=(a, range(100, 112))),
        threading.Thread(target=writer, args=(b, range(200, 212))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(status == 200 for status, _, _ in replies), replies
    steps_taken = sorted(step for _, step, _ in replies)
    assert steps_taken == list(range(7, 31))  # consecutive, no number twice
    acked.update({step: k for _, step, k in replies})
    seq, steps = journal(url)
    assert len(steps) == 30
    check_acked(steps, acked)
    assert agree((a, b), seq)["sha"] == replay(steps)

    # A snapshot published through a is served by b, which fetches it into its folder.
    status, snap, hdrs = call(a.port, "POST", "/models/digits/snapshot")
    assert status == 200 and snap["version"] == 2, snap
    state = agree((a, b), int(hdrs["X-Bpserve-Step"]))
    assert state["online_steps"] == 0
    status, info, _ = call(b.port, "GET", "/models/digits", headers={"X-Bpserve-Min-Step": "0"})
    assert info["served_version"] == 2 and info["versions"] == [1, 2]
    assert (tmp_path / "b" / "digits" / "2" / "manifest.json").is_file()
    assert state["sha"] == replay(steps)  # the snapshot holds exactly the 30 steps
    status, reply, hdrs = train(b.port, 300)  # and learning goes on from it
    assert status == 200 and reply == {**reply, "version": 2, "step": 1}
    agree((a, b), int(hdrs["X-Bpserve-Step"]))

    # An Idempotency-Key is one across replicas: a retry on the other one applies nothing.
    keyed = {"Idempotency-Key": "replicas-1"}
    x, labels = batch(301)
    body = {"inputs": x.tolist(), "targets": labels}
    status, first, hdrs = call(a.port, "POST", "/train-step", body, keyed)
    assert status == 200 and first["step"] == 2, first
    seq = int(hdrs["X-Bpserve-Step"])
    status, again, _ = call(b.port, "POST", "/train-step", body, keyed)  # caught up under lock
    assert (status, again) == (200, first)
    other = {"inputs": batch(302)[0].tolist(), "targets": labels}
    status, err, _ = call(b.port, "POST", "/train-step", other, keyed)
    assert status == 422 and err["error"]["code"] == "idempotency_key_reused", err
    assert agree((a, b), seq)["online_steps"] == 2
    with psycopg.connect(url) as conn:
        keys = conn.execute(
            "SELECT idempotency_key FROM bpserve_journal WHERE idempotency_key IS NOT NULL"
        ).fetchall()
    assert keys == [("replicas-1",)]


def test_sigkill_a_replica_mid_traffic(tmp_path, pg_url):
    env = {"database_url": pg_url, "train_token": TOKEN, "snapshot_every": 0, "workers": 1}
    a = Server(make_store(tmp_path / "a"), **env).start()
    (tmp_path / "b").mkdir()
    b = Server(tmp_path / "b", **env)
    rng = random.Random(19)
    acked: dict[int, int] = {}
    k = 0
    try:
        for _ in range(10):
            b.start()
            stop = threading.Event()

            def traffic(stop: threading.Event) -> None:
                nonlocal k
                while not stop.is_set() and k < 10_000:
                    target = (a, b)[k % 2]  # the victim and the survivor both take steps
                    try:
                        status, reply, _ = train(target.port, k)
                    except (OSError, http.client.HTTPException, ValueError):
                        return  # b died under us: this step may or may not have landed
                    assert status == 200, reply
                    acked[reply["step"]] = k
                    k += 1

            sender = threading.Thread(target=traffic, args=(stop,))
            sender.start()
            stop.wait(rng.uniform(0.2, 0.8))
            b.kill()
            stop.set()
            sender.join(timeout=60)
            k += 1  # the request in flight at the kill is never reused
        b.start()
        seq, steps = journal(pg_url)
        check_acked(steps, acked)
        assert max(acked) >= 20  # the run did train, not only restart
        state = agree((a, b), seq)
        assert state["online_steps"] == len(steps) >= max(acked)
        assert state["sha"] == replay(steps)
    finally:
        b.stop()
        a.stop()


def test_postgres_crash_mid_traffic(pair, pg_server):
    a, b, url = pair
    acked: dict[int, int] = {}
    statuses: list[int] = []
    after_restart: set[int] = set()
    restarted = threading.Event()
    stop = threading.Event()

    def traffic(server: Server, ks: range) -> None:
        for k in ks:
            if stop.is_set():
                return
            status, reply, _ = train(server.port, k)
            statuses.append(status)
            if status == 200:
                acked[reply["step"]] = k
                if restarted.is_set():
                    after_restart.add(server.port)
            else:
                assert reply["error"]["code"] == "storage_unavailable", reply
                stop.wait(0.05)

    senders = [
        threading.Thread(target=traffic, args=(a, range(0, 2000))),
        threading.Thread(target=traffic, args=(b, range(5000, 7000))),
    ]
    for t in senders:
        t.start()
    try:
        stop.wait(0.5)
        pg_server.crash()
        for r in (a, b):  # the database is down: predictions are still served
            for _ in range(3):
                status, pred, _ = call(r.port, "POST", "/predict", {"inputs": PROBE})
                assert status == 200, pred
                status, info, _ = call(r.port, "GET", "/models/digits")
                assert status == 200 and info["versions"] == [1], info
        for _ in range(400):  # down long enough for learning to be refused
            if 503 in statuses:
                break
            stop.wait(0.05)
        pg_server.restart()
        restarted.set()
        for _ in range(400):  # both replicas learn again, without a restart of theirs
            if len(after_restart) == 2:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        for t in senders:
            t.join(timeout=120)
    assert len(after_restart) == 2
    assert set(statuses) <= {200, 503} and 503 in statuses
    seq, steps = journal(url)
    check_acked(steps, acked)
    state = agree((a, b), seq)
    assert state["online_steps"] == len(steps) and state["sha"] == replay(steps)


# A real fault in the database itself: a disk that is full for deletions (SQLSTATE
# 53100, what PostgreSQL reports when it cannot extend a file).  The snapshot's version
# commits (an insert), then its compaction (which deletes the old journal rows) fails,
# and so does the withdraw of the version (a delete).
DISK_FULL = """
CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'
    USING ERRCODE = 'disk_full'; END $$;
CREATE TRIGGER full_journal BEFORE DELETE ON bpserve_journal
    FOR EACH ROW EXECUTE FUNCTION test_disk_full();
CREATE TRIGGER full_versions BEFORE DELETE ON bpserve_versions
    FOR EACH ROW EXECUTE FUNCTION test_disk_full();
"""


def versions_in_db(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT version, state FROM bpserve_versions WHERE model = 'digits' ORDER BY 1"
        ).fetchall()


def test_a_snapshot_whose_compaction_fails_is_never_served(pair, tmp_path):
    a, b, url = pair
    acked: dict[int, int] = {}
    for k in range(4):
        status, reply, _ = train((a, b)[k % 2].port, k)
        assert status == 200 and reply["step"] == k + 1, reply
        acked[reply["step"]] = k
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DISK_FULL)
    status, err, _ = call(a.port, "POST", "/models/digits/snapshot")
    assert status == 503 and err["error"]["code"] == "storage_unavailable", err
    # The hole is there: version 2 is in the database, its compaction never happened.
    assert versions_in_db(url) == [(1, "live"), (2, "pending")]
    assert len(journal(url)[1]) == 4
    assert not (tmp_path / "a" / "digits" / "2").exists()
    assert not (tmp_path / "a" / ".pending" / "digits" / "2").exists()  # withdrawn locally
    # The disk has room again (a hot reload, a compaction, would work now).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER full_journal ON bpserve_journal")
        conn.execute("DROP TRIGGER full_versions ON bpserve_versions")

    # Steps are acknowledged on the old journal after the snapshot point, on both replicas.
    for k in range(4, 8):
        status, reply, _ = train((a, b)[k % 2].port, k)
        assert status == 200 and reply == {**reply, "version": 1, "step": k + 1}, reply
        acked[reply["step"]] = k
    # Every worker's reloader polls twice meanwhile: none lists, loads or moves to 2.
    for r in (a, b):
        for info in r.after_watchers_looked().values():
            assert info["served_version"] == 1 and info["versions"] == [1], info
            assert info["online_steps"] == 8
        status, listing, _ = call(r.port, "GET", "/models")
        assert status == 200 and listing["models"] == [
            {**listing["models"][0], "name": "digits", "versions": [1], "served_version": 1}
        ], listing
        status, err, _ = call(r.port, "POST", "/models/digits/load", {"version": 2})
        assert status == 404, err
        path = "/models/digits/versions/2/predict"
        status, err, _ = call(r.port, "POST", path, {"inputs": PROBE})
        assert status == 404, err
    seq, steps = journal(url)
    check_acked(steps, acked)
    state = agree((a, b), seq)
    assert state["online_steps"] == 8 and state["sha"] == replay(steps)
    db = Database(url, pool_size=1)
    db.open(attempts=3)
    try:
        store = PgStore(tmp_path / "c", db)
        assert store.names() == ["digits"] and store.versions("digits") == [1]
        assert store.latest("digits") == 1 and not store.has("digits", 2)
        with pytest.raises(UnknownVersion):
            store.load("digits", 2)
        assert store.sync() == []  # an empty folder; and nothing seeds the pending version
    finally:
        db.close()

    # The next snapshot replaces the pending version and works.
    status, snap, hdrs = call(b.port, "POST", "/models/digits/snapshot")
    assert status == 200 and snap == {**snap, "version": 2, "online_steps": 8}, snap
    assert versions_in_db(url) == [(1, "live"), (2, "live")]
    state = agree((a, b), int(hdrs["X-Bpserve-Step"]))
    assert state["online_steps"] == 0 and state["sha"] == replay(steps)
    assert (tmp_path / "b" / "digits" / "2" / "manifest.json").is_file()  # staged, then cached
    assert not (tmp_path / "b" / ".pending" / "digits" / "2").exists()
    status, reply, _ = train(a.port, 100)
    assert status == 200 and reply == {**reply, "version": 2, "step": 1}, reply
