"""The online-training journal: the ordered, durable record of what a served model is.

Every worker of every server process derives its online weights from this log alone,
so an acknowledged train-step survives a crash and all workers serve the same weights.
A journal holds two kinds of record (``training.journal_format``):

- ``base``: serve stored version V (pinned or not) with no online steps on top;
- ``step``: one optimizer step: raw inputs, targets and hyperparameters.

Writers hold an exclusive file lock around "catch up, compute, append, fsync".  A new
``base`` record replaces the whole file (write aside, fsync, rename): that is the
compaction, and it happens only once the version it names is durable in the store.
Readers take the lock shared for the moment of reading, so they never see an append
that is still in progress (written but not yet synced, or about to be cut back).

Failures (see ``training.durable_io``): an append that fails part way is cut back to
where it started before the lock is let go, so the file holds only acknowledged
records.  After a failed fsync, or a cut that itself failed, the journal is *suspect*:
the end of the last acknowledged record is written into the shared counter file,
readers read no further than it, and the next writer rebuilds the journal from the
records before it (write aside, fsync, rename) before appending: it never fsyncs the
failed file again as if that proved the data were on disk.

After each change a writer also bumps a counter in that small shared file, which
readers map into memory (``changes``): checking it costs no system call, where a
``stat`` of the journal on every request was a measurable part of a 1-row prediction
(BENCHMARKS.md, Serving).  The counter is a hint, read before the journal: if it has
not moved, no writer finished a change since.  A writer that died between its append
and its bump is found by the next full check (the service's watcher makes one on every
poll).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from training import durable_io as dio
from training.errors import StorageError, StorageIOError
from training.journal_format import (
    FRAME,
    JSON_LEN,
    MAGIC,
    Journal,
    Position,
    Record,
    decode_payload,
    encode,
    scan,
)
from training.journal_shared import SharedState

__all__ = [
    "FRAME",
    "JSON_LEN",
    "MAGIC",
    "FileJournal",
    "Journal",
    "Position",
    "Record",
    "decode_payload",
    "encode",
    "scan",
]

log = logging.getLogger("bpserve")


class FileJournal:
    """One append-only file per model: ``<store>/<name>/journal.log``."""

    def __init__(self, model_dir: Path) -> None:
        self.path = model_dir / "journal.log"
        self.lock_path = model_dir / ".journal.lock"
        self.counter_path = model_dir / ".journal.changes"
        self._shared = SharedState(self.counter_path)
        self._holder: int | None = None  # the thread holding the exclusive lock
        # Everything before this position was read whole and valid under the lock, so
        # taking the lock checks only what others appended since (not the whole file).
        self._verified: Position | None = None

    def position(self) -> Position | None:
        """The end of the journal as it stands (one stat): cheap enough per request."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return Position(st.st_ino, st.st_size)

    def changes(self) -> int | None:
        """A counter every writer bumps after changing the journal, read from shared
        memory.  Read it before ``position``: when it has not moved since the last full
        check, no change finished in between.  None where it cannot be mapped (the
        caller then checks ``position`` every time)."""
        return self._shared.changes()

    def _bump(self) -> None:
        self._shared.bump()

    def _suspect_mark(self) -> tuple[int, int] | None:
        return self._shared.suspect()

    def _set_suspect(self, mark: tuple[int, int] | None) -> None:
        self._shared.set_suspect(mark)
        if mark is not None:
            log.error(
                "journal suspect",
                extra={"event": "journal_suspect", "path": str(self.path), "kept_bytes": mark[1]},
            )

    # -- reading -------------------------------------------------------------------------
    def read(self, since: Position | None) -> tuple[list[tuple[Position, Record]], Position | None]:
        """Records after ``since`` (from the start if the file was replaced).

        Returns the records with the position after each, and the position of the last
        whole record.  Reads under the shared lock, and no further than a suspect
        journal's acknowledged end; an incomplete or corrupt tail is left alone.
        """
        with self._shared_lock():
            try:
                with open(self.path, "rb") as f:
                    ident = os.fstat(f.fileno()).st_ino
                    start = since.offset if since is not None and since.ident == ident else 0
                    mark = self._suspect_mark()
                    limit = mark[1] if mark is not None and mark[0] == ident else -1
                    f.seek(start)
                    data = f.read(max(limit - start, 0)) if limit >= 0 else f.read()
            except FileNotFoundError:
                return [], None
        records, end, _ = scan(data)
        return [(Position(ident, start + e), r) for e, r in records], Position(ident, start + end)

    @contextlib.contextmanager
    def _shared_lock(self) -> Iterator[None]:
        if self._holder == threading.get_ident():  # this thread writes: no other can
            yield
            return
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:  # no lock file (and none creatable): nobody has written here
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- writing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The writers' lock, across processes; on taking it, repair a torn tail."""
        with dio.typed(self.lock_path, "open"):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._holder = threading.get_ident()
            self._repair()
            yield
        finally:
            self._holder = None
            os.close(fd)

    def _repair(self) -> None:
        try:
            with open(self.path, "rb") as f:
                ident = os.fstat(f.fileno()).st_ino
                known = self._verified
                start = known.offset if known is not None and known.ident == ident else 0
                size = os.fstat(f.fileno()).st_size
                if start > size:  # a replaced file that reused the inode number
                    start = 0
                if start == size:
                    return
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return
        _, rel_end, problem = scan(data)
        end = start + rel_end
        self._verified = Position(ident, end)
        if problem is None:
            return
        log.warning(
            "journal tail truncated",
            extra={
                "event": "journal_truncated",
                "path": str(self.path),
                "problem": problem,
                "kept_bytes": end,
                "dropped_bytes": size - end,
            },
        )
        try:
            with dio.typed(self.path, "truncate"), open(self.path, "r+b") as f:
                f.truncate(end)
                dio.fsync(f.fileno(), self.path)
        except StorageError:
            self._set_suspect((ident, end))  # readers stop at ``end``; rebuilt before use
        self._bump()

    def append(self, record: Record) -> Position:
        """Append and fsync; call with the lock held.  Returns the new end.

        Raises a ``StorageError`` when the record is not whole and durable, with the
        file cut back to the acknowledged records (or marked suspect).
        """
        if self._suspect_mark() is not None:
            self._rebuild()
        blob = encode(record)
        with dio.typed(self.path, "open"):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            st = os.fstat(fd)
            start = st.st_size
            try:
                dio.write_all(fd, blob, self.path)
                with dio.typed(self.path, "read"):
                    back = os.pread(fd, len(blob), start)
                if back != blob:  # a write that lied about what it wrote
                    raise StorageIOError(self.path, "write", None, "read back different bytes")
            except StorageError:
                self._cut(fd, st.st_ino, start)
                raise
            try:
                dio.fsync(fd, self.path)
            except StorageError:
                self._set_suspect((st.st_ino, start))
                self._cut(fd, st.st_ino, start)
                raise
        finally:
            os.close(fd)
        self._verified = Position(st.st_ino, start + len(blob))
        self._bump()
        return self._verified

    def _cut(self, fd: int, ino: int, start: int) -> None:
        """Take a failed append back out; if even that fails, mark the journal suspect."""
        try:
            os.ftruncate(fd, start)
        except OSError:
            self._set_suspect((ino, start))

    def _rebuild(self) -> None:
        """Rewrite a suspect journal from its acknowledged records (lock held)."""
        mark = self._suspect_mark()
        assert mark is not None
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_ino != mark[0]:  # replaced since: not suspect
                    self._set_suspect(None)
                    return
                data = f.read(mark[1])
        except FileNotFoundError:
            self._set_suspect(None)
            return
        except OSError as exc:
            raise StorageIOError(self.path, "read", exc.errno) from exc
        _, end, _ = scan(data)
        self._replace_with(data[:end])
        log.warning(
            "journal rebuilt",
            extra={"event": "journal_rebuilt", "path": str(self.path), "kept_bytes": end},
        )

    def rebase(self, record: Record) -> Position:
        """Replace the journal by one ``base`` record (the compaction); lock held."""
        return self._replace_with(encode(record))

    def _replace_with(self, blob: bytes) -> Position:
        tmp = self.path.with_name(f".journal.{os.getpid()}.tmp")
        try:
            dio.write_file(tmp, blob)
            dio.replace(tmp, self.path)
        except StorageError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        st = os.stat(self.path)
        try:
            dio.fsync_path(self.path.parent)
        except StorageError:
            # The rename is visible but may not be durable: the next writer rewrites
            # the file again rather than trust this folder's later fsync.
            self._set_suspect((st.st_ino, st.st_size))
            raise
        self._set_suspect(None)
        self._verified = Position(st.st_ino, st.st_size)
        self._bump()
        return self._verified
