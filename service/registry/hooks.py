"""What the registry tells the outside: its metrics and its log lines, in one place.

The registry's parts call these hooks and never ``service.metrics`` or the logger
themselves, so the rules of what is counted and what is logged can be read here, and a
test or another deployment can pass a ``Hooks`` of its own to ``Registry``.
"""

from __future__ import annotations

import logging
from typing import Any

from service import metrics
from service.served import OnlineStats

log = logging.getLogger("bpserve")


class Hooks:
    """The default: Prometheus metrics (``service.metrics``) and JSON log lines."""

    def served_version(self, name: str, version: int) -> None:
        """A worker now serves another version of ``name`` (not called per step)."""
        metrics.served_version(name, version)

    def loaded(self, event: str, name: str, version: int, **extra: Any) -> None:
        """A version now serves (``event``: loaded or pinned)."""
        metrics.loaded(name, version)
        log.info(
            f"model {event}",
            extra={"event": event, "model": name, "version": version, **extra},
        )

    def load_failed(self, name: str, version: int, problem: str) -> None:
        metrics.load_failed(name, version)
        log.error(
            "model load failed",
            extra={"event": "load_failed", "model": name, "version": version, "problem": problem},
        )

    def unavailable(self, name: str, problem: str) -> None:
        log.error(
            "model unavailable",
            extra={"event": "unavailable", "model": name, "problem": problem},
        )

    def store_unlisted(self, exc: Exception) -> None:
        log.warning("cannot list the model store: %s", exc)

    def foreign_step(self, name: str, segment: Any) -> None:
        log.error(
            "journal record skipped",
            extra={"event": "journal_foreign_step", "model": name, "segment": segment},
        )

    def conflict(self, name: str, problem: str) -> None:
        """A shared journal refused an append another writer got to first (retried)."""
        log.warning(
            "journal conflict", extra={"event": "conflict", "model": name, "problem": problem}
        )

    def step_refused(self, name: str) -> None:
        metrics.step_refused(name)

    def stepped(self, name: str, version: int, loss: float, online: OnlineStats) -> None:
        metrics.train_step(name, version, loss, online)

    def snapshot(self, name: str, version: int, parent: int, steps: int) -> None:
        log.info(
            "snapshot published",
            extra={
                "event": "snapshot",
                "model": name,
                "version": version,
                "parent": parent,
                "steps": steps,
            },
        )

    def snapshot_deferred(self, name: str, problem: str) -> None:
        log.warning(
            "snapshot deferred",
            extra={"event": "snapshot_deferred", "model": name, "problem": problem},
        )

    def poll_failed(self) -> None:
        log.exception("reload poll failed")
