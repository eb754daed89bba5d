"""Writes that either happen whole and durably or raise a typed ``StorageError``.

Every write path of the store and the journal goes through these functions, so that a
short write, a full disk, a read-only filesystem, an I/O error or a failed fsync is
never mistaken for success:

- ``write_all`` loops over short writes; a write that makes no progress is an error.
- ``fsync`` raises on failure and never retries: after a failed fsync the kernel may
  have dropped the dirty pages and marked them clean, so a second fsync could succeed
  without the data being on disk (PostgreSQL's "fsyncgate").  The caller treats the
  file as suspect and rebuilds it from what it knows instead.
- ``write_file`` writes a new file whole: create, write, fsync, close.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from training.errors import StorageIOError, storage_error


@contextlib.contextmanager
def typed(path: str | Path, op: str) -> Iterator[None]:
    """Turn an ``OSError`` of the block into the matching ``StorageError``."""
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, path, op) from exc


def write_all(fd: int, data: bytes | memoryview, path: str | Path) -> None:
    view = memoryview(data)
    while view:
        with typed(path, "write"):
            n = os.write(fd, view)
        if n <= 0:
            raise StorageIOError(path, "write", None, "no progress")
        view = view[n:]


def fsync(fd: int, path: str | Path) -> None:
    with typed(path, "fsync"):
        os.fsync(fd)


def fsync_path(path: str | Path) -> None:
    """fsync a file or a folder by path (a folder's fsync makes renames in it durable)."""
    with typed(path, "open"):
        fd = os.open(path, os.O_RDONLY)
    try:
        fsync(fd, path)
    finally:
        os.close(fd)


def write_file(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` (replacing a file of that name) holding exactly ``data``, synced."""
    with typed(path, "open"):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with typed(path, "chmod"):
            os.fchmod(fd, mode)
        write_all(fd, data, path)
        fsync(fd, path)
    finally:
        os.close(fd)


def replace(src: str | Path, dst: str | Path) -> None:
    with typed(dst, "rename"):
        os.replace(src, dst)


def rename(src: str | Path, dst: str | Path) -> None:
    with typed(dst, "rename"):
        os.rename(src, dst)


def mkdir(path: Path, *, parents: bool = False, exist_ok: bool = False) -> None:
    with typed(path, "mkdir"):
        path.mkdir(parents=parents, exist_ok=exist_ok)
