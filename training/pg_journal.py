"""The online-training journal in PostgreSQL: ``Journal``'s interface across hosts.

One row per record in ``bpserve_journal``, keyed by (model, seq): seq counts records of
a model from 1 and is never reused, and ``segment`` is the seq of the ``base`` record a
step follows.  The row holds the same framed, checksummed bytes ``FileJournal`` writes
(``journal.encode``), so both replay through the same ``apply_step``.

- Appending is conditional: a step goes in at seq = head + 1, the head being what this
  writer last read.  If any other writer got there first, the primary key refuses the
  row (``JournalConflict``): the loser catches up and computes its step again, and step
  numbers stay consecutive; a fork cannot be stored.  Writers also take an advisory lock
  for their "catch up, compute, append" (``locked``, as ``flock`` does for the file), so
  between well-behaved writers the conflict is the guard, not the schedule.
- A step is acknowledged once its transaction has committed, which with the server's
  ``synchronous_commit`` (and a synchronous standby, across hosts) is durable.
- Compaction (``rebase``): the new base row and the deletion of every row before it
  commit together, and only after the snapshot's version has been committed to the
  version store (``pg_store``) by the caller, as ``pending``; the same transaction
  makes that version ``live``.  So a version no replica can list or load is all a
  failed compaction leaves: none of them reloads past the steps it still holds.
- ``Position`` is (segment, seq); a reader at a position of an older segment reads the
  current segment from its base, as after the file journal's replacement.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import errors as pg_errors

from training.errors import JournalConflict, StorageUnavailable
from training.journal import Position, Record, encode, scan
from training.journal_shared import SharedState
from training.pg_db import CHANNEL, Database
from training.store import StoreError

_READ = """
WITH head AS (
    SELECT max(segment) AS segment, max(seq) AS seq FROM bpserve_journal WHERE model = %(m)s
)
SELECT head.segment, head.seq, j.seq, j.record
FROM head LEFT JOIN bpserve_journal j
  ON j.model = %(m)s AND j.segment = head.segment
 AND j.seq > CASE WHEN head.segment = %(ident)s THEN %(after)s ELSE 0 END
ORDER BY j.seq
"""
_HEAD = "SELECT segment, seq FROM bpserve_journal WHERE model = %s ORDER BY seq DESC LIMIT 1"
_INSERT = """
INSERT INTO bpserve_journal (model, seq, segment, kind, version, idempotency_key, record)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""
# A snapshot's version becomes visible with the compaction onto it (pg_store).
_GO_LIVE = """
UPDATE bpserve_versions SET state = 'live' WHERE model = %s AND version = %s AND state = 'pending'
"""
# The insert and its notification in one statement (sent when it commits).
_APPEND = """
WITH ins AS (
    INSERT INTO bpserve_journal (model, seq, segment, kind, version, idempotency_key, record)
    VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING seq
)
SELECT pg_notify(%s, %s) FROM ins
"""


class PostgresJournal:
    """The journal of one model, on one worker's ``Database``."""

    sequenced = True  # positions are a total order across replicas (X-Bpserve-Min-Step)

    def __init__(self, db: Database, model: str, counter: Path | None = None) -> None:
        self.db, self.model = db, model
        # The same shared-memory counter as the file journal's, in this host's cache
        # folder: bumped after each commit made here, so that the other workers of this
        # replica hear of it with no system call and no wait for the notification.
        self._local = SharedState(counter) if counter is not None else None
        # While ``locked``: the thread holding the lock, its connection (which carries its
        # reads and writes) and the head it last read.  Other threads of the worker go
        # on reading through the pool meanwhile, and never touch these.
        self._holder: int | None = None
        self._writer: psycopg.Connection | None = None
        self._head: Position | None = None

    def _mine(self) -> bool:
        return self._holder == threading.get_ident()

    def changes(self) -> int | None:
        """Moves when a worker of this host committed a change, or a notification for
        this model (or a reconnection) came in: two counters that only grow, summed."""
        local = self._local.changes() if self._local is not None else None
        return self.db.heard(self.model) + (local or 0)

    def wait(self, heard: int | None, timeout: float) -> None:
        """Block until ``changes()`` moves from ``heard`` (or ``timeout`` passes)."""
        self.db.wait(lambda: self.changes() != heard, timeout)

    def _run(self, query: str, params: object) -> list[tuple]:
        if not self._mine():
            with self.db.reader() as conn:
                return conn.execute(query, params).fetchall()
        assert self._writer is not None
        try:
            return self._writer.execute(query, params).fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StorageUnavailable(f"database unavailable: {exc}") from None

    def position(self) -> Position | None:
        rows = self._run(_HEAD, [self.model])
        pos = Position(int(rows[0][0]), int(rows[0][1])) if rows else None
        if self._mine():
            self._head = pos
        return pos

    def read(self, since: Position | None) -> tuple[list[tuple[Position, Record]], Position | None]:
        """Records after ``since`` in its segment, or the current segment from its base."""
        params = {
            "m": self.model,
            "ident": since.ident if since is not None else -1,
            "after": since.offset if since is not None else 0,
        }
        rows = self._run(_READ, params)  # one statement: one consistent snapshot
        segment, head = rows[0][0], rows[0][1]
        if segment is None:
            return [], None
        out = []
        for _, _, seq, blob in rows:
            if seq is None:
                continue
            records, _, problem = scan(bytes(blob))
            if problem is not None or len(records) != 1:
                raise StoreError(f"bpserve_journal {self.model}/{seq}", f"bad record ({problem})")
            out.append((Position(int(segment), int(seq)), records[0][1]))
        end = Position(int(segment), int(head))
        if self._mine():
            self._head = end
        return out, end

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The writers' advisory lock (all replicas); its connection carries the writes."""
        key = f"bpserve.journal.{self.model}"
        with self.db.connection() as conn:
            try:
                conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
            except pg_errors.LockNotAvailable:
                raise StorageUnavailable("another writer holds this model's journal") from None
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise StorageUnavailable(f"database unavailable: {exc}") from None
            self._writer, self._head, self._holder = conn, None, threading.get_ident()
            try:
                yield
            finally:
                self._holder = self._writer = self._head = None
                with contextlib.suppress(psycopg.Error):  # a dead connection took it along
                    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])

    def _insert(self, seq: int, segment: int, record: Record, delete_before: bool) -> Position:
        conn = self._writer
        if conn is None or not self._mine():
            raise RuntimeError("append and rebase need the journal lock")
        key = record.meta.get("key")  # Idempotency-Key of the request (service/idempotency.py)
        version = record.meta["version" if record.kind == "base" else "base_version"]
        row = [self.model, seq, segment, record.kind, version, key, encode(record)]
        try:
            note = [CHANNEL, f"{self.model} {seq}"]
            if not delete_before:  # one statement, its own transaction: one round trip
                conn.execute(_APPEND, [*row, *note])
            else:
                with conn.transaction():
                    conn.execute(_INSERT, row)
                    conn.execute(
                        "DELETE FROM bpserve_journal WHERE model = %s AND seq < %s",
                        [self.model, seq],
                    )
                    conn.execute(_GO_LIVE, [self.model, version])
                    conn.execute("SELECT pg_notify(%s, %s)", note)
        except pg_errors.UniqueViolation as exc:
            self._head = None
            taken = exc.diag.constraint_name
            raise JournalConflict(f"{self.model}: seq {seq} was taken ({taken})") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._head = None  # the commit may or may not have happened: read again
            raise StorageUnavailable(f"database unavailable: {exc}") from None
        if self._local is not None:
            self._local.bump()  # committed; the advisory lock orders the bumps
        self._head = Position(segment, seq)
        return self._head

    def append(self, record: Record) -> Position:
        """Insert at the head this writer read + 1; committed (durable) on return."""
        head = self._head
        if head is None:
            raise JournalConflict(f"{self.model}: append without a known head; read first")
        return self._insert(head.offset + 1, head.ident, record, delete_before=False)

    def rebase(self, record: Record) -> Position:
        """A new base that replaces the journal (the compaction), in one transaction.

        After a read under this lock it is conditional like ``append`` (a snapshot must
        not drop a step it did not include); without one (pin, rollback) it goes on top
        of whatever is there."""
        head = self._head
        if head is None:
            rows = self._run("SELECT max(seq) FROM bpserve_journal WHERE model = %s", [self.model])
            seq = int(rows[0][0] or 0) + 1
        else:
            seq = head.offset + 1
        return self._insert(seq, seq, record, delete_before=True)
