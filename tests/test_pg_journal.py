"""PostgresJournal against a real PostgreSQL (tests/pg.py): appends, compaction, writers
that race, idempotency keys, change notifications and a server that goes down."""

from __future__ import annotations

import threading

import numpy as np
import psycopg
import pytest

from training.errors import JournalConflict, StorageUnavailable
from training.journal import Position, Record
from training.pg_db import Database
from training.pg_journal import PostgresJournal


def step(i: int, segment: str = "s1") -> Record:
    x = np.full((2, 3), i, dtype=np.float32)
    return Record("step", {"segment": segment, "step": i, "base_version": 1}, x, x[:, :1].copy())


def test_append_read_and_compaction(db):
    j = PostgresJournal(db, "m")
    with j.locked():
        assert j.read(None) == ([], None)
        base = j.rebase(Record("base", {"version": 1, "segment": "s1"}))
        assert base == Position(1, 1)
        for i in range(1, 4):
            j.append(step(i))
    records, end = j.read(None)
    assert [r.kind for _, r in records] == ["base", "step", "step", "step"]
    assert end == Position(1, 4) == j.position()
    np.testing.assert_array_equal(records[2][1].x, np.full((2, 3), 2, dtype=np.float32))
    assert j.read(Position(1, 2))[0][0][0] == Position(1, 3)  # only what is new
    with j.locked():
        j.read(end)
        assert j.rebase(Record("base", {"version": 2, "segment": "s2"})) == Position(5, 5)
    # A reader of the old segment gets the new base; the steps behind it are gone.
    records, end = j.read(Position(1, 4))
    assert [(p, r.kind, r.meta["version"]) for p, r in records] == [(Position(5, 5), "base", 2)]
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM bpserve_journal").fetchone()[0] == 1


def test_a_writer_that_lost_the_race_catches_up_and_never_forks(pg_url, db):
    """Two writers both read head 2 and both append: the key lets one in; the other is
    refused, reads again and goes in at 4.  Writer B bypasses the advisory lock (a
    writer that lost it), so only the unique key stands between them."""
    a = PostgresJournal(db, "m")
    with a.locked():
        a.rebase(Record("base", {"version": 1, "segment": "s1"}))
        a.append(step(1))
    other = Database(pg_url, pool_size=1)
    other.open()
    b = PostgresJournal(other, "m")
    with a.locked(), psycopg.connect(pg_url, autocommit=True) as raw:
        assert a.read(None)[1] == Position(1, 2)
        b._writer, b._holder = raw, threading.get_ident()  # as if it held the lock
        assert b.read(None)[1] == Position(1, 2)
        assert b.append(step(2)) == Position(1, 3)
        with pytest.raises(JournalConflict):
            a.append(step(2))
        assert a.read(Position(1, 2))[1] == Position(1, 3)  # caught up
        assert a.append(step(3)) == Position(1, 4)
    other.close()
    records, _ = a.read(None)
    assert [r.meta.get("step") for _, r in records] == [None, 1, 2, 3]
    assert [p.offset for p, _ in records] == [1, 2, 3, 4]


def test_idempotency_keys_are_unique_in_the_database(db):
    j = PostgresJournal(db, "m")
    with j.locked():
        j.rebase(Record("base", {"version": 1, "segment": "s1"}))
        for i in (1, 2):
            s = step(i)
            keyed = Record("step", {**s.meta, "key": "k1"}, s.x, s.y)
            if i == 1:
                j.append(keyed)
            else:
                with pytest.raises(JournalConflict):
                    j.append(keyed)


def test_notifications_move_the_counter_without_a_query(pg_url, db):
    j = PostgresJournal(db, "m")
    heard = j.changes()
    other = Database(pg_url, pool_size=1)
    other.open()
    w = PostgresJournal(other, "m")
    with w.locked():
        w.rebase(Record("base", {"version": 1, "segment": "s1"}))
    j.wait(heard, timeout=10)
    assert j.changes() != heard
    heard = j.changes()
    with w.locked():  # an append notifies too (its insert and notification are one statement)
        w.read(None)
        w.append(step(1))
    other.close()
    j.wait(heard, timeout=10)
    assert j.changes() != heard


def test_a_commit_moves_the_counter_of_the_other_workers_of_its_host(tmp_path, pg_url, db):
    """Workers of one replica share a counter in its cache folder: a commit made by one
    is heard by the others at once, not only when the notification arrives."""
    counter = tmp_path / ".pg-journal.changes"
    deaf = Database(pg_url)  # never opened: no notification ever reaches it
    j = PostgresJournal(deaf, "m", counter)
    w = PostgresJournal(db, "m", counter)
    heard = j.changes()
    with w.locked():
        w.rebase(Record("base", {"version": 1, "segment": "s1"}))
    assert j.changes() != heard


def test_reads_refused_at_once_while_the_server_is_down(pg_server, db):
    j = PostgresJournal(db, "m")
    with j.locked():
        j.rebase(Record("base", {"version": 1, "segment": "s1"}))
    pg_server.crash()
    try:
        for _ in range(200):  # the listener notices the server is gone
            if not db.listening:
                break
            j.wait(j.changes(), 0.05)
        with pytest.raises(StorageUnavailable):
            j.read(None)
        with pytest.raises(StorageUnavailable), j.locked():
            pass
    finally:
        pg_server.restart()
    heard = j.changes()
    for _ in range(200):  # reconnects by itself; the counter moves (missed notifications)
        if db.listening and j.changes() != heard:
            break
        j.wait(heard, 0.1)
    assert j.read(None)[1] == Position(1, 1)
