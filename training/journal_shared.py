"""The journal's small shared file, mapped into memory by every process of a model.

It holds the change counter (bumped by every writer after a change, so that a reader
checks for news with no system call) and the *suspect* mark: the inode and the end of
the last acknowledged record of a journal whose last write or fsync failed.  Readers
read no further than the mark and the next writer rebuilds the journal first.  The
mark lives here, not in the process that saw the failure, because every process of
the server must honour it, also a worker started after that process died.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

LAYOUT = struct.Struct("<QQQ")  # change counter, suspect inode (0: none), suspect end


class SharedState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None
        self._suspect: tuple[int, int] | None = None  # when the file cannot be mapped

    def _mapped(self) -> mmap.mmap | None:
        """Map the file, first making its bytes real with ``pwrite``: a store to a
        mapped page the filesystem has no room for would be a SIGBUS, not an error."""
        if self._map is not None:
            return self._map
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            size = os.fstat(fd).st_size
            if size < LAYOUT.size:  # only the missing bytes: others may have counted
                missing = LAYOUT.size - size
                if os.pwrite(fd, b"\0" * missing, size) != missing:
                    return None
            self._map = mmap.mmap(fd, LAYOUT.size)
        except OSError:
            return None
        finally:
            os.close(fd)
        return self._map

    def changes(self) -> int | None:
        shared = self._mapped()
        return None if shared is None else LAYOUT.unpack_from(shared)[0]

    def bump(self) -> None:
        """Call with the journal's lock held, after the change is durable."""
        shared = self._mapped()
        if shared is not None:
            count = LAYOUT.unpack_from(shared)[0]
            struct.pack_into("<Q", shared, 0, (count + 1) % 2**64)

    def suspect(self) -> tuple[int, int] | None:
        """(inode, acknowledged end) of a suspect journal, or None."""
        shared = self._mapped()
        if shared is None:
            return self._suspect
        _, ino, end = LAYOUT.unpack_from(shared)
        return (ino, end) if ino else None

    def set_suspect(self, mark: tuple[int, int] | None) -> None:
        """Call with the journal's lock held."""
        self._suspect = mark
        shared = self._mapped()
        if shared is not None:
            struct.pack_into("<QQ", shared, 8, *(mark or (0, 0)))
