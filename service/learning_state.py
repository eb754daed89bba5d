"""Whether online learning is paused by the storage, per model: one place that hears
every storage failure and success, keeps the metric and writes the log line.

A step or snapshot that cannot be stored pauses learning (the prediction path does
not write and keeps serving); the next one that is stored resumes it, with no restart.
``describe`` adds what the filesystem says now (read-only, free bytes).  With a
``shared`` folder (the gunicorn config makes one per start) the pause is also a file
there, so every worker reports it, also one that has not tried to write since, and a
step stored by any worker resumes it for all; the folder is not the store's, so it has
room when the store has none.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from service import metrics
from service.errors import answer
from training.errors import StorageError

log = logging.getLogger("bpserve")


class LearningState:
    def __init__(self, shared: Path | None = None) -> None:
        self._paused: dict[str, dict[str, Any]] = {}
        self._guard = threading.Lock()
        self._shared = shared

    def _mark(self, name: str) -> Path | None:
        return self._shared / f"paused-{name}.json" if self._shared else None

    def _shared_pause(self, name: str) -> dict[str, Any] | None:
        mark = self._mark(name)
        if mark is None:
            return self._paused.get(name)
        try:
            return json.loads(mark.read_bytes())
        except (OSError, ValueError):
            return None

    def failed(self, name: str, exc: StorageError) -> None:
        a = answer(exc)
        code, message = (a.code, a.message) if a is not None else ("storage_error", str(exc))
        metrics.storage_failed(name, code)
        with self._guard:
            first = name not in self._paused
            self._paused[name] = info = {"reason": code, "message": message, "since": time.time()}
        mark = self._mark(name)
        if mark is not None:
            try:  # aside and renamed: a reader never sees half of it
                part = mark.with_suffix(f".{os.getpid()}.{threading.get_ident()}")
                part.write_text(json.dumps(info))
                part.replace(mark)
            except OSError:
                pass  # this worker still knows; the others learn at their next write
        log.error(
            "learning paused" if first else "storage write failed",
            extra={"event": "storage_error", "model": name, "code": code, "problem": str(exc)},
        )

    def succeeded(self, name: str) -> None:
        mark = self._mark(name)
        shared = mark is not None and mark.exists()  # one stat per stored step
        if name not in self._paused and not shared:
            return
        with self._guard:
            was = self._paused.pop(name, None)
        if shared:
            try:
                mark.unlink()  # type: ignore[union-attr]
            except OSError:
                shared = False  # another worker resumed it first
        if was is not None or shared:
            metrics.learning_paused(name, False)
            log.info("learning resumed", extra={"event": "storage_ok", "model": name})

    def describe(self, name: str, model_dir: Path) -> dict[str, Any]:
        paused = self._shared_pause(name)
        out: dict[str, Any] = {
            "paused": paused is not None,
            "reason": paused["reason"] if paused else None,
            "problem": paused["message"] if paused else None,
        }
        try:
            st = os.statvfs(model_dir)
            out["read_only"] = bool(st.f_flag & os.ST_RDONLY)
            out["free_bytes"] = st.f_bavail * st.f_frsize
        except OSError:
            out["read_only"], out["free_bytes"] = None, None
        if out["read_only"] and not out["paused"]:
            out["paused"], out["reason"] = True, "read_only"
        return out
