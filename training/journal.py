"""The online-training journal: the ordered, durable record of what a served model is.

Every worker of every server process derives its online weights from this log alone,
so an acknowledged train-step survives a crash and all workers serve the same weights.
A journal holds two kinds of record:

- ``base``: serve stored version V (pinned or not) with no online steps on top;
- ``step``: one optimizer step: raw inputs, targets and hyperparameters.

Writers hold an exclusive file lock around "catch up, compute, append, fsync".  A new
``base`` record replaces the whole file (write aside, fsync, rename): that is the
compaction, and it happens only once the version it names is durable in the store.
Readers need no lock: they read whole records from the offset they reached and stop at
an incomplete one.  Each record is framed as magic, length, CRC32, payload; a torn or
corrupt tail (a crash mid-append) is detected by its frame and truncated by the next
writer, keeping every record before it.

After each change a writer also bumps a counter in a small shared file, which readers
map into memory (``changes``): checking it costs no system call, where a ``stat`` of
the journal on every request was a measurable part of a 1-row prediction (BENCHMARKS.md,
Serving).  The counter is a hint, read before the journal: if it has not moved, no
writer finished a change since.  A writer that died between its append and its bump
is found by the next full check (the service's watcher makes one on every poll).

``Journal`` is the interface; ``FileJournal`` is its first implementation.  A log in a
distributed engine (docs/scaling.md) would implement the same methods.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("bpserve")

MAGIC = b"BPJ1"
FRAME = struct.Struct("<4sII")  # magic, payload length, crc32 of payload
JSON_LEN = struct.Struct("<I")
COUNTER = struct.Struct("<Q")


@dataclass(frozen=True)
class Record:
    kind: str  # "base" or "step"
    meta: dict[str, Any]
    x: np.ndarray | None = None
    y: np.ndarray | None = None


@dataclass(frozen=True)
class Position:
    """Where a reader stands: which file (inode) and how far into it."""

    ident: int
    offset: int


def encode(record: Record) -> bytes:
    meta = {"kind": record.kind, **record.meta}
    blobs = b""
    if record.x is not None and record.y is not None:
        meta["x"] = {"dtype": str(record.x.dtype), "shape": list(record.x.shape)}
        meta["y"] = {"dtype": str(record.y.dtype), "shape": list(record.y.shape)}
        blobs = np.ascontiguousarray(record.x).tobytes() + np.ascontiguousarray(record.y).tobytes()
    head = json.dumps(meta, separators=(",", ":")).encode()
    payload = JSON_LEN.pack(len(head)) + head + blobs
    return FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> Record:
    (n,) = JSON_LEN.unpack_from(payload)
    meta = json.loads(payload[JSON_LEN.size : JSON_LEN.size + n])
    kind = meta.pop("kind")
    x = y = None
    if "x" in meta:
        at = JSON_LEN.size + n
        arrays = []
        for key in ("x", "y"):
            spec = meta.pop(key)
            dtype = np.dtype(spec["dtype"])
            count = int(np.prod(spec["shape"]))
            arrays.append(
                np.frombuffer(payload, dtype=dtype, count=count, offset=at).reshape(spec["shape"])
            )
            at += count * dtype.itemsize
        x, y = arrays
    return Record(kind, meta, x, y)


def scan(data: bytes, start: int = 0) -> tuple[list[tuple[int, Record]], int, str | None]:
    """Whole, valid records from ``start``; returns them with their end offsets, the
    offset after the last good one, and why scanning stopped early (None at the end)."""
    out: list[tuple[int, Record]] = []
    at = start
    while at < len(data):
        if len(data) - at < FRAME.size:
            return out, at, "incomplete frame"
        magic, length, crc = FRAME.unpack_from(data, at)
        if magic != MAGIC:
            return out, at, "bad magic"
        end = at + FRAME.size + length
        if end > len(data):
            return out, at, "incomplete record"
        payload = data[at + FRAME.size : end]
        if zlib.crc32(payload) != crc:
            return out, at, "checksum mismatch"
        try:
            record = decode_payload(payload)
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            return out, at, f"undecodable record ({exc})"
        out.append((end, record))
        at = end
    return out, at, None


class Journal(Protocol):
    def position(self) -> Position | None: ...

    def changes(self) -> int | None: ...

    def read(
        self, since: Position | None
    ) -> tuple[list[tuple[Position, Record]], Position | None]: ...

    def locked(self) -> contextlib.AbstractContextManager[None]: ...

    def append(self, record: Record) -> Position: ...

    def rebase(self, record: Record) -> Position: ...


class FileJournal:
    """One append-only file per model: ``<store>/<name>/journal.log``."""

    def __init__(self, model_dir: Path) -> None:
        self.path = model_dir / "journal.log"
        self.lock_path = model_dir / ".journal.lock"
        self.counter_path = model_dir / ".journal.changes"
        self._counter: mmap.mmap | None = None
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
        counter = self._counter or self._map_counter()
        return None if counter is None else COUNTER.unpack_from(counter)[0]

    def _map_counter(self) -> mmap.mmap | None:
        try:
            fd = os.open(self.counter_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < COUNTER.size:
                os.ftruncate(fd, COUNTER.size)  # zeros; a no-op once another process grew it
            self._counter = mmap.mmap(fd, COUNTER.size)
        except OSError:
            return None
        finally:
            os.close(fd)
        return self._counter

    def _bump(self) -> None:
        """Bump the counter; call with the lock held, after the change is durable."""
        counter = self._counter or self._map_counter()
        if counter is not None:
            COUNTER.pack_into(counter, 0, (COUNTER.unpack_from(counter)[0] + 1) % 2**64)

    def read(self, since: Position | None) -> tuple[list[tuple[Position, Record]], Position | None]:
        """Records after ``since`` (from the start if the file was replaced).

        Returns the records with the position after each, and the position of the last
        whole record.  An incomplete or corrupt tail is left alone: it may be an append
        in progress; only a writer holding the lock repairs it.
        """
        try:
            with open(self.path, "rb") as f:
                ident = os.fstat(f.fileno()).st_ino
                start = since.offset if since is not None and since.ident == ident else 0
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return [], None
        records, end, _ = scan(data)
        return [(Position(ident, start + e), r) for e, r in records], Position(ident, start + end)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The writers' lock, across processes; on taking it, repair a torn tail."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._repair()
            yield
        finally:
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
        with open(self.path, "r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())
        self._bump()

    def append(self, record: Record) -> Position:
        """Append and fsync; call with the lock held.  Returns the new end."""
        blob = encode(record)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, blob)
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self._verified = Position(st.st_ino, st.st_size)
        self._bump()
        return self._verified

    def rebase(self, record: Record) -> Position:
        """Replace the journal by one ``base`` record (the compaction); lock held."""
        tmp = self.path.with_name(f".journal.{os.getpid()}.tmp")
        blob = encode(record)
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        st = os.stat(self.path)
        self._verified = Position(st.st_ino, st.st_size)
        self._bump()
        return self._verified
