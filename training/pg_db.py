"""One worker's PostgreSQL: a connection pool, the schema, and a listener thread.

The schema is bpserve's own: created and migrated here, its version kept in
``bpserve_schema`` and checked on every start (a database written by a newer bpserve
is refused, not guessed at).  Every migration runs in one transaction under an
advisory lock, so replicas starting together migrate once.

The listener holds one connection with ``LISTEN bpserve_journal``.  Writers send
``pg_notify`` in the transaction of their append, so the notification arrives only once
the record is committed.  Each one bumps an in-memory counter per model, which the
journal reports as ``changes()``: a prediction compares two integers and does not ask
the database anything unless a notification came in.  While the listener is cut off,
reads fail at once (``StorageUnavailable``) instead of waiting on a dead server, so
serving goes on from memory; on reconnecting it bumps every counter, because
notifications sent meanwhile were lost, and every worker checks its head again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from training.errors import StorageUnavailable

log = logging.getLogger("bpserve")
__all__ = ["Database", "StorageUnavailable", "migrate"]

CHANNEL = "bpserve_journal"
SCHEMA_VERSION = 2
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE bpserve_journal (
        model text NOT NULL,
        seq bigint NOT NULL CHECK (seq >= 1),
        segment bigint NOT NULL,
        kind text NOT NULL CHECK (kind IN ('base', 'step')),
        version integer NOT NULL,  -- the stored version a base serves (a step: its base's)
        idempotency_key text,
        record bytea NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (model, seq)
    );
    CREATE UNIQUE INDEX bpserve_journal_key ON bpserve_journal (model, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE bpserve_versions (
        model text NOT NULL,
        version integer NOT NULL CHECK (version >= 1),
        manifest_sha256 text NOT NULL,
        published_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (model, version)
    );
    CREATE TABLE bpserve_version_files (
        model text NOT NULL,
        version integer NOT NULL,
        file text NOT NULL,
        sha256 text NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (model, version, file),
        FOREIGN KEY (model, version) REFERENCES bpserve_versions ON DELETE CASCADE
    );
    """,
    # A snapshot's version is ``pending`` until the compaction that names it commits
    # (pg_journal sets it ``live`` in that transaction): listing and loading see only
    # ``live`` ones.  Versions from before this state existed were all live.
    2: """
    ALTER TABLE bpserve_versions ADD COLUMN state text NOT NULL DEFAULT 'live'
        CHECK (state IN ('live', 'pending'));
    """,
}
# Failures that mean "the server is not there now", as opposed to a bug in a query.
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


class Database:
    """The pool and the listener of one worker process (create it after the fork)."""

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 3.0) -> None:
        self.url, self._size, self._timeout = url, pool_size, timeout
        self.pool = self._new_pool()
        self._cond = threading.Condition()
        self._heard: dict[str, int] = {}
        self._epoch = 0  # bumped on every (re)connection of the listener
        self.listening = False
        self._stop = threading.Event()

    def _new_pool(self) -> ConnectionPool:
        return ConnectionPool(
            self.url,
            min_size=1,
            max_size=self._size,
            open=False,
            timeout=self._timeout,  # a request waits this long for a connection, then 503
            check=ConnectionPool.check_connection,  # a connection the server dropped is replaced
            configure=_configure,
            kwargs={"autocommit": True, **_connect_options(self._timeout)},
            name="bpserve",
        )

    def _renew_pool(self) -> None:
        """A fresh pool once the server is back: the old one may be waiting out a
        reconnection backoff that grew during the outage."""
        fresh = self._new_pool()
        fresh.open(wait=False)
        old, self.pool = self.pool, fresh
        # Connections in use are closed when they come back; its threads end meanwhile.
        threading.Thread(target=old.close, name="bpserve-pool-close", daemon=True).start()

    # -- start ----------
    def open(self, attempts: int = 10) -> None:
        """Open the pool, migrate the schema, start listening (bounded retries)."""
        for attempt in range(attempts):
            try:
                if attempt:
                    self.pool = self._new_pool()  # a pool that failed to open is closed
                self.pool.open(wait=True, timeout=2)
                with self.connection() as conn:
                    migrate(conn)
                break
            except (StorageUnavailable, *TRANSIENT) as exc:
                if attempt == attempts - 1:
                    raise StorageUnavailable(f"database unavailable: {exc}", "connect") from None
                log.warning("database not reachable yet: %s", exc)
                time.sleep(1)
        threading.Thread(target=self._listen, name="bpserve-listen", daemon=True).start()
        for _ in range(100):  # serve reads once the listener is in place (bounded)
            if self.listening:
                break
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self.pool.close()

    # -- connections ----------
    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection; transient failures become StorageUnavailable."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except TRANSIENT as exc:
            raise StorageUnavailable(f"database unavailable: {exc}") from None

    def reader(self) -> contextlib.AbstractContextManager[psycopg.Connection]:
        """A connection for reading, refused at once while the listener is cut off (the
        server is down or restarting): a prediction must not wait on it."""
        if not self.listening:
            raise StorageUnavailable("database unavailable (reconnecting)")
        return self.connection()

    # -- change notifications ----------
    def heard(self, model: str) -> int:
        """A number that moves whenever a change to ``model``'s journal may have happened."""
        return self._heard.get(model, 0) + self._epoch

    def wait(self, until: Callable[[], bool], timeout: float) -> None:
        """Block until ``until()`` holds (checked on every notification) or ``timeout``."""
        with self._cond:
            self._cond.wait_for(until, timeout)

    def _bump(self, model: str | None) -> None:
        with self._cond:
            if model is None:
                self._epoch += 1
            else:
                self._heard[model] = self._heard.get(model, 0) + 1
            self._cond.notify_all()

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():  # a daemon thread: it ends with the worker
            try:
                with psycopg.connect(self.url, autocommit=True, **_connect_options(3)) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if self._epoch:
                        self._renew_pool()
                    self.listening = True
                    self._bump(None)  # notifications may have been missed while cut off
                    backoff = 0.1
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=5.0):
                            self._bump(note.payload.rsplit(" ", 1)[0])
                        conn.execute("SELECT 1")  # idle: is the server still there?
            except (psycopg.Error, PoolTimeout) as exc:  # any: the thread must go on
                if self.listening:
                    log.warning(
                        "database listener lost",
                        extra={"event": "db_listener_lost", "problem": str(exc)},
                    )
            finally:
                self.listening = False
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)


def _connect_options(timeout: float) -> dict[str, object]:
    # TCP keepalives: a server that vanished without closing the socket is noticed.
    return {
        "connect_timeout": max(1, int(timeout)),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }


def _configure(conn: psycopg.Connection) -> None:
    """Per connection: a writer waits for another's advisory lock at most 10 s (then
    503); and the server probes this client's socket, so that a replica that vanished
    (host down, network cut) while holding the lock loses its session, and the lock,
    within about 11 s instead of the kernel's default of hours."""
    conn.execute(
        "SET lock_timeout = '10s'; SET tcp_keepalives_idle = 5; "
        "SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
    )


def migrate(conn: psycopg.Connection) -> int:
    """Create or upgrade bpserve's tables to SCHEMA_VERSION; refuse a newer schema."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('bpserve.schema', 0))")
        conn.execute("CREATE TABLE IF NOT EXISTS bpserve_schema (version integer PRIMARY KEY)")
        row = conn.execute("SELECT max(version) FROM bpserve_schema").fetchone()
        current = row[0] if row and row[0] is not None else 0
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {current} is newer than this bpserve's "
                f"({SCHEMA_VERSION}); upgrade bpserve"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            conn.execute(MIGRATIONS[version])
            conn.execute("INSERT INTO bpserve_schema (version) VALUES (%s)", [version])
            log.info("database schema migrated", extra={"event": "migrated", "version": version})
    return SCHEMA_VERSION
