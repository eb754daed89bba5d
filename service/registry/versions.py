"""Stored versions, loaded and verified once: a small LRU cache, and what failed to load.

A base record, a rollback, and a prediction of a pinned version each need a stored
version in memory; loading one reads and checks its files, so the last few are kept.
The cache is ``cachetools``' LRU under a lock held only to look up or insert: a slow
load does not stop the hits of other threads (two threads may load the same version
at once; both results are equal and the second one stays).
"""

from __future__ import annotations

import threading
from typing import Any

from cachetools import LRUCache, cached

from service.registry.hooks import Hooks
from training.model import Model
from training.store import Manifest, ModelStore, StoreError


class Versions:
    def __init__(self, store: ModelStore, max_cached: int, hooks: Hooks) -> None:
        self.store = store
        self.hooks = hooks
        self.problems: dict[str, dict[str, Any]] = {}  # name -> the last load problem
        self._failed: set[tuple[str, int]] = set()
        self.load = cached(
            LRUCache(maxsize=max_cached),
            key=lambda name, version: (name, version),
            lock=threading.Lock(),
        )(self._load)

    def _load(self, name: str, version: int) -> tuple[Model, Manifest]:
        return self.store.load(name, version)

    def try_load(self, name: str, version: int) -> bool:
        """Load and verify a version before anything depends on it; remember failures."""
        if (name, version) in self._failed:
            return False
        try:
            self.load(name, version)
            return True
        except StoreError as exc:
            self._failed.add((name, version))
            self.problems[name] = {"version": version, "problem": str(exc)}
            self.hooks.load_failed(name, version, str(exc))
            return False

    def newest_loadable(self, name: str) -> int | None:
        for version in reversed(self.store.versions(name)):
            if self.try_load(name, version):
                return version
        return None
