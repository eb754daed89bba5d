"""PostgresJournal, PgStore and the schema against a real PostgreSQL (tests/pg.py)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading

import numpy as np
import psycopg
import pytest

from service.registry import Hooks, Registry
from tests.server import DEFAULT_MODEL, ROOT, make_store
from training.data import load_digits
from training.errors import JournalConflict, StorageUnavailable, UnknownVersion
from training.journal import Position, Record
from training.pg_db import MIGRATIONS, SCHEMA_VERSION, Database, migrate
from training.pg_journal import PostgresJournal
from training.pg_store import PgStore
from training.store import ModelStore


@pytest.fixture
def db(pg_url):
    d = Database(pg_url, pool_size=2)
    d.open()
    yield d
    d.close()


def step(i: int, segment: str = "s1") -> Record:
    x = np.full((2, 3), i, dtype=np.float32)
    return Record("step", {"segment": segment, "step": i, "base_version": 1}, x, x[:, :1].copy())


def test_schema_created_once_and_a_newer_one_refused(pg_url, db):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn) == SCHEMA_VERSION  # a second start: nothing to do
        versions = conn.execute("SELECT version FROM bpserve_schema").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        conn.execute("INSERT INTO bpserve_schema VALUES (%s)", [SCHEMA_VERSION + 1])
        with pytest.raises(RuntimeError, match="newer than this bpserve"):
            migrate(conn)


def test_a_schema_1_database_migrates_its_versions_to_live(pg_url, db):
    """Versions published before the pending state existed stay listed and loadable."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE bpserve_version_files, bpserve_versions, bpserve_journal, bpserve_schema"
        )
        conn.execute(MIGRATIONS[1])
        conn.execute("CREATE TABLE bpserve_schema (version integer PRIMARY KEY)")
        conn.execute("INSERT INTO bpserve_schema VALUES (1)")
        conn.execute(
            "INSERT INTO bpserve_versions (model, version, manifest_sha256) VALUES "
            "('old', 1, 'x'), ('old', 2, 'y')"
        )
        assert migrate(conn) == SCHEMA_VERSION == 2
        rows = conn.execute("SELECT version, state FROM bpserve_versions ORDER BY 1").fetchall()
    assert rows == [(1, "live"), (2, "live")]


def test_the_server_probes_a_writer_that_may_vanish_with_the_lock(db):
    """A replica cut off while holding a model's advisory lock must lose its session (and
    the lock) in seconds: the server-side keepalives of every pooled connection."""
    with db.connection() as conn:
        got = conn.execute(
            "SELECT current_setting('tcp_keepalives_idle'), "
            "current_setting('tcp_keepalives_interval'), current_setting('tcp_keepalives_count'), "
            "current_setting('lock_timeout'), inet_server_addr() IS NOT NULL"
        ).fetchone()
    assert got == ("5", "2", "3", "10s", True)  # over TCP, where keepalives apply


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


def test_store_seeds_an_empty_database_and_an_empty_cache_fetches(tmp_path, db):
    seeded = tmp_path / "a"
    (seeded / "digits").mkdir(parents=True)
    shutil.copytree(DEFAULT_MODEL, seeded / "digits" / "1")
    a = PgStore(seeded, db)
    assert a.sync() == [("digits", 1)]
    assert a.sync() == []  # already there
    b = PgStore(tmp_path / "b", db)  # a replica with an empty folder
    assert b.names() == ["digits"] and b.versions("digits") == [1]
    model, _ = b.load("digits", 1)
    assert (tmp_path / "b" / "digits" / "1" / "weights.safetensors").read_bytes() == (
        DEFAULT_MODEL / "weights.safetensors"
    ).read_bytes()
    v2 = b.save("digits", model, parent_version=1)
    assert v2 == 2 and a.versions("digits") == [1, 2]
    # The seeded replica's cache lacks version 2: fetched, then verified by ModelStore.
    assert a.load("digits", 2)[1].parent_version == 1
    # A corrupt cached copy is not used: its manifest's sha256 differs from the database's.
    (seeded / "digits" / "2" / "manifest.json").write_text("{}")
    assert a.load("digits", 2)[1].version == 2
    assert ModelStore(seeded).load("digits", 2)[1].version == 2


def test_a_snapshots_version_is_hidden_until_its_compaction_commits(tmp_path, db):
    seeded = make_store(tmp_path / "a")
    a = PgStore(seeded, db)
    assert a.sync() == [("digits", 1)]
    model, _ = a.load("digits", 1)
    # Published for a snapshot, then the process dies before the compaction.
    assert a.save_pending("digits", model, parent_version=1) == 2
    for store in (a, PgStore(tmp_path / "b", db)):
        assert store.versions("digits") == [1] and store.latest("digits") == 1
        with pytest.raises(UnknownVersion):
            store.load("digits", 2)
    assert not (seeded / "digits" / "2").exists()  # staged aside, so
    assert PgStore(seeded, db).sync() == []  # a restart does not seed it
    # The next snapshot drops it and takes its number; its compaction makes it live.
    assert a.save_pending("digits", model, parent_version=1, online_steps=3) == 2
    j = PostgresJournal(db, "digits")
    with j.locked():
        j.rebase(Record("base", {"version": 2, "segment": "s2"}))
    assert a.versions("digits") == [1, 2]
    assert a.load("digits", 2)[1].online_steps == 3  # the staged copy, moved into the cache
    assert not (seeded / ".pending" / "digits" / "2").exists()
    assert PgStore(tmp_path / "b", db).load("digits", 2)[1].online_steps == 3  # fetched


def bptrain(*args: str) -> dict:
    """bptrain as a user runs it, its --json answer."""
    out = subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout)


def test_bptrain_publishes_to_the_database(tmp_path, pg_url, db):

    flags = "--format digits --name tiny --hidden 8 --epochs 2 --quiet --json"
    where = ["--models-dir", str(tmp_path / "trainer"), "--database-url", pg_url]
    assert bptrain(*flags.split(), *where)["version"] == 1
    elsewhere = PgStore(tmp_path / "replica", db)
    assert elsewhere.versions("tiny") == [1]
    manifest = elsewhere.load("tiny", 1)[1]
    assert "database_url" not in manifest.training  # the URL may hold a password
    # evaluate reads the version from the database into an empty folder of its own
    score = ["evaluate", "--name", "tiny", "--format", "digits", "--json"]
    where = ["--models-dir", str(tmp_path / "scorer"), "--database-url", pg_url]
    assert bptrain(*score, *where)["version"] == 1


class LostLock(PostgresJournal):
    """A writer that believes it holds the lock and does not (say, its connection was
    cut and another writer took the lock): only the primary key stands between them.
    Once ``race`` is set, the first read of each writer waits for the other's, so both
    compute on the same head."""

    race: threading.Barrier | None = None

    @contextlib.contextmanager
    def locked(self):
        with self.db.connection() as conn:
            self._writer, self._head, self._holder = conn, None, threading.get_ident()
            try:
                yield
            finally:
                self._holder = self._writer = self._head = None

    def read(self, since):
        out = super().read(since)
        race = LostLock.race
        if race is not None and self._mine():  # a writer's catch-up, not a reader's
            race.wait(timeout=30)  # both have read the same head now
            LostLock.race = None
        return out


class Counted(Hooks):
    def __init__(self) -> None:
        self.conflicts: list[str] = []

    def conflict(self, name: str, problem: str) -> None:
        self.conflicts.append(problem)


def test_the_registry_retries_a_step_that_lost_the_race(tmp_path, pg_url):
    """Two workers without the lock compute a step on the same head: one is stored, the
    other is refused by the key, catches up and is stored as the next step on top."""
    dbs = [Database(pg_url, pool_size=2) for _ in range(2)]
    hooks = [Counted(), Counted()]
    workers = []
    for i, (d, h) in enumerate(zip(dbs, hooks)):
        d.open()
        store = ModelStore(make_store(tmp_path / str(i)))
        workers.append(Registry(store, journals=lambda n, d=d: LostLock(d, n), hooks=h))
        workers[-1].refresh()
    digits = load_digits()
    x = digits.x[:8].astype(np.float32)
    y = np.eye(10, dtype=np.float32)[digits.y[:8]]
    answers: list[dict] = []
    barrier = threading.Barrier(2)
    LostLock.race = barrier
    threads = [
        threading.Thread(target=lambda w=w: answers.append(w.train_step("digits", x, y, 0.1, 0.9)))
        for w in workers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(a["step"] for a in answers) == [1, 2]  # consecutive, no fork
    assert sum(len(h.conflicts) for h in hooks) == 1
    served = [w.get("digits", full_check=True) for w in workers]
    assert [s.online_steps for s in served] == [2, 2]
    assert served[0].weights_digest() == served[1].weights_digest()
    records, _ = workers[0].journal("digits").read(None)
    assert [r.meta.get("step") for _, r in records] == [None, 1, 2]
    for d in dbs:
        d.close()
