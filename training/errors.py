"""The engine's error vocabulary: what went wrong, typed where it happens.

Two families, because a caller handles them differently:

- ``StoreError``: a model version or a name that cannot be used (the data is wrong or
  absent).  Retrying does not help.
- ``StorageError``: the filesystem refused a write or a sync (full, read-only, I/O
  error).  Nothing was acknowledged; retrying may work once the operator fixes the disk.

The service maps each class to an HTTP answer in one table (``service/errors.py``);
nothing anywhere chooses a status by reading a message.
"""

from __future__ import annotations

import errno
from pathlib import Path


class StoreError(Exception):
    """A model version that cannot be used: names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


class InvalidName(StoreError):
    """A model name or version number the store refuses (traversal, bad characters)."""


class UnknownVersion(StoreError):
    """The model has no such version (or no version at all)."""


class CorruptVersion(StoreError):
    """The version exists but fails verification (hash, format, shapes, dtypes)."""


class StorageError(Exception):
    """A write, sync or rename the filesystem refused; nothing it was part of counts.

    ``op`` names the system call, ``errno`` the reason (None for a write that made no
    progress or read back different bytes).
    """

    retry_after: int | None = 5

    def __init__(self, path: str | Path, op: str, err: int | None, detail: str = "") -> None:
        reason = errno.errorcode.get(err, str(err)) if err is not None else detail
        super().__init__(f"{path}: {op} failed ({reason})")
        self.path, self.op, self.errno, self.reason = str(path), op, err, reason


class StorageFull(StorageError):
    """ENOSPC or EDQUOT: no space (or quota) left for the write."""


class StorageReadOnly(StorageError):
    """EROFS (or EACCES/EPERM on a write): the store cannot be written at all."""

    retry_after = None


class StorageIOError(StorageError):
    """EIO, a failed fsync, a write that made no progress: the device misbehaved."""


class StorageUnavailable(StorageError):
    """The storage is on another host and cannot be reached now (the database is down,
    restarting or out of connections): learning answers 503, serving goes on from memory.
    A write whose commit was cut off may or may not have landed; a replica that reads
    the journal again finds out, and an Idempotency-Key makes a retry safe."""

    retry_after = 1

    def __init__(self, message: str, op: str = "query", err: int | None = None) -> None:
        Exception.__init__(self, message)
        self.path, self.op, self.errno, self.reason = "database", op, err, message


class JournalConflict(Exception):
    """Another writer appended at that sequence number first (or used that
    Idempotency-Key): nothing of this record was stored; catch up and try again."""


_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(exc: OSError, path: str | Path, op: str) -> StorageError:
    """The typed form of an ``OSError`` from a write path."""
    if exc.errno in _FULL:
        cls: type[StorageError] = StorageFull
    elif exc.errno in _READ_ONLY:
        cls = StorageReadOnly
    else:
        cls = StorageIOError
    return cls(path, op, exc.errno)
