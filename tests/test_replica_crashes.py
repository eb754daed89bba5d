"""Replicas sharing online learning (tests/replicas.py) through crashes: a replica killed
with SIGKILL mid-traffic, again and again, and the PostgreSQL server crashing under both."""

from __future__ import annotations

import http.client
import random
import threading

from tests.replicas import PROBE, TOKEN, agree, call, check_acked, journal, replay, train
from tests.server import Server, make_store


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
