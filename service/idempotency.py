"""``Idempotency-Key``: a retried train-step or snapshot applies once.

The key and a digest of the request travel inside the journal record that the request
wrote (``key``, ``request``), so every worker that replays the journal, and a server
restarted on it, knows every key of the current segment and the result it had; a base
record carries the last ``CARRIED`` keys of the segment before (``keys``), so a retry
after a snapshot or a compaction is still answered.  A retry with a known key gets the
recorded result and applies nothing; the same key with a different request is a 422.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from flask import Request

from service.errors import ApiError, IdempotencyConflict

HEADER = "Idempotency-Key"
MAX_LENGTH = 255
CARRIED = 1000

Keys = dict[str, tuple[str, dict[str, Any]]]  # key -> (request digest, result)


def key_of(request: Request) -> str | None:
    """The request's Idempotency-Key header, checked (printable ASCII, bounded)."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(
            400,
            "bad_idempotency_key",
            f"{HEADER} must be 1 to {MAX_LENGTH} printable ASCII characters",
        )
    return key


def step_digest(name: str, x: np.ndarray, y: np.ndarray, lr: float | None, mu: float | None) -> str:
    """What a train-step asked for: the same digest means the same request."""
    h = hashlib.sha256(f"step\0{name}\0{x.dtype}{x.shape}{y.dtype}{y.shape}{lr!r}{mu!r}".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()


def snapshot_digest(name: str) -> str:
    return hashlib.sha256(f"snapshot\0{name}".encode()).hexdigest()


def recorded(keys: Mapping[str, tuple[str, dict[str, Any]]], key: str | None, digest: str):
    """The result recorded for ``key``, or None when it is new; 422 if reused."""
    if key is None or key not in keys:
        return None
    request, result = keys[key]
    if request != digest:
        raise IdempotencyConflict(
            f"{HEADER} {key!r} was already used with a different request",
            {"key": key},
        )
    return result


def carry(keys: Keys) -> dict[str, list[Any]]:
    """The newest keys, as a base record's ``keys`` (JSON: lists, not tuples)."""
    newest = list(keys.items())[-CARRIED:]
    return {k: [request, result] for k, (request, result) in newest}


def from_base(meta: Mapping[str, Any]) -> Keys:
    """The keys a base record holds: those carried over, and its own (a snapshot's)."""
    keys: Keys = {k: (v[0], dict(v[1])) for k, v in (meta.get("keys") or {}).items()}
    if meta.get("key") is not None:
        keys[meta["key"]] = (meta["request"], dict(meta["result"]))
    return keys
