"""Replicas sharing online learning (tests/replicas.py) when a snapshot's compaction fails
in the database itself (a disk full for deletions): its version is never served."""

from __future__ import annotations

import psycopg
import pytest

from tests.replicas import PROBE, agree, call, check_acked, journal, replay, train
from training.errors import UnknownVersion
from training.pg_db import Database
from training.pg_store import PgStore

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
