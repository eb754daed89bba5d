"""The journal's on-disk record format: framing, encoding, and scanning for whole records.

Each record is framed as magic, payload length, CRC32 of the payload, payload.  The
payload is a length-prefixed JSON head (the record's kind and meta, and the dtype and
shape of its arrays) followed by the raw array bytes.  A torn or corrupt tail (a crash
mid-append) is found by its frame.

``Journal`` is the interface a journal implements (``training.journal.FileJournal``
here; a PostgreSQL journal the same way).
"""

from __future__ import annotations

import contextlib
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

MAGIC = b"BPJ1"
FRAME = struct.Struct("<4sII")  # magic, payload length, crc32 of payload
JSON_LEN = struct.Struct("<I")


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
    """What the registry needs from a journal; a PostgreSQL journal implements the same.

    - ``position()``: where the journal ends now, cheap enough per request; None when
      there is no journal yet.  Two positions are equal iff nothing changed between.
    - ``changes()``: a counter that moves after every change, cheaper still (None when
      unavailable: the caller then compares ``position()`` every time).
    - ``read(since)``: the whole, acknowledged records after ``since`` (from the start
      when ``since`` is None or belongs to a replaced journal), each with the position
      after it, and the position after the last one.
    - ``locked()``: the writers' lock, across processes; ``append`` and ``rebase`` are
      called only inside it, after a ``read`` that caught up.
    - ``append(record)``: add a ``step``; returns only once it is durable, and raises a
      ``StorageError`` otherwise, with nothing of the record left for a reader to see.
    - ``rebase(record)``: replace the journal by one ``base`` record, same promise.

    Records are ``training.journal_format.Record``: ``kind`` and a JSON-able ``meta``
    (step: ``segment``, ``step``, ``base_version``, ``learning_rate``, ``momentum``,
    and ``key``/``request`` for an Idempotency-Key; base: ``version``, ``pinned``,
    ``segment``, ``keys`` carried over from the segment before), plus arrays ``x``, ``y``.
    """

    def position(self) -> Position | None: ...

    def changes(self) -> int | None: ...

    def read(
        self, since: Position | None
    ) -> tuple[list[tuple[Position, Record]], Position | None]: ...

    def locked(self) -> contextlib.AbstractContextManager[None]: ...

    def append(self, record: Record) -> Position: ...

    def rebase(self, record: Record) -> Position: ...
