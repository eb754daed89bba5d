"""Whether online learning is paused by the storage, per model: one place that hears
every storage failure and success, keeps the metric and writes the log line.

A step or snapshot that cannot be stored pauses learning (the prediction path does
not write and keeps serving); the next one that is stored resumes it, with no restart.
``describe`` adds what the filesystem says now (read-only, free bytes), so a paused
state is visible on every worker, also one that has not tried to write since.
"""

from __future__ import annotations

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
    def __init__(self) -> None:
        self._paused: dict[str, dict[str, Any]] = {}
        self._guard = threading.Lock()

    def failed(self, name: str, exc: StorageError) -> None:
        a = answer(exc)
        code, message = (a.code, a.message) if a is not None else ("storage_error", str(exc))
        metrics.storage_failed(name, code)
        with self._guard:
            first = name not in self._paused
            self._paused[name] = {"reason": code, "message": message, "since": time.time()}
        log.error(
            "learning paused" if first else "storage write failed",
            extra={"event": "storage_error", "model": name, "code": code, "problem": str(exc)},
        )

    def succeeded(self, name: str) -> None:
        if name not in self._paused:
            return
        with self._guard:
            was = self._paused.pop(name, None)
        if was is not None:
            metrics.learning_paused(name, False)
            log.info("learning resumed", extra={"event": "storage_ok", "model": name})

    def describe(self, name: str, model_dir: Path) -> dict[str, Any]:
        paused = self._paused.get(name)
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
