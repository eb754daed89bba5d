"""Replicas sharing online learning through PostgreSQL: real gunicorn servers, each in
its own process group with its own models folder, and one real PostgreSQL server.

The reference is always the database's own journal, replayed here through
``apply_step``: every acknowledged step must be in it at its step number with the
rows that were sent, and every replica must serve exactly the replayed weights.
The helpers are in tests/replicas.py, the ``pair`` fixture in tests/conftest.py.
"""

from __future__ import annotations

import threading

import psycopg

from tests.replicas import PROBE, agree, batch, call, check_acked, journal, replay, train
from tests.server import Server


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
