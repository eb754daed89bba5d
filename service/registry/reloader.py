"""The reloader: serve new models, move unpinned ones to a newer stored version.

``refresh`` runs once when a worker starts and then on the watcher thread, every
``reload_interval`` seconds.  Each poll is also a full journal check (it finds a step
whose writer died before bumping the change counter).  A newer version is loaded and
verified before the one served is let go, and a move is a new journal base, written
under the journal's lock, so every worker follows it.
"""

from __future__ import annotations

import threading
import time

from service.errors import ModelUnavailable
from service.registry.follower import Follower
from service.registry.hooks import Hooks
from service.registry.versions import Versions
from training.errors import JournalConflict, StorageError
from training.store import ModelStore, StoreError


class Reloader:
    def __init__(
        self,
        store: ModelStore,
        follower: Follower,
        versions: Versions,
        hooks: Hooks,
        interval: float,
    ) -> None:
        self.store = store
        self.follower = follower
        self.versions = versions
        self.hooks = hooks
        self.interval = interval
        self._polls = [0, 0]  # the watcher's polls done, and those that raised

    def refresh(self) -> None:
        """Start serving new models; move unpinned ones to a newer stored version."""
        try:
            names = self.store.names()
        except (OSError, StoreError) as exc:
            self.hooks.store_unlisted(exc)
            return
        for name in names:
            try:
                if name not in self.follower.served:
                    self._start(name)
                else:
                    self.follower.current(name, full_check=True)
                self._maybe_reload(name)
            except (StoreError, StorageError, JournalConflict, ModelUnavailable) as exc:
                self.versions.problems[name] = {"version": None, "problem": str(exc)}
                self.hooks.unavailable(name, str(exc))

    def _start(self, name: str) -> None:
        f = self.follower
        with f.lock(name):
            if f.journal(name).position() is not None:  # no writing: a read-only store serves
                f.catch_up(name)
                return
            with f.journal(name).locked():
                if f.journal(name).position() is None:
                    latest = self.versions.newest_loadable(name)
                    if latest is None:
                        return
                    f.rebase(name, latest, pinned=False)
                    self.hooks.loaded("loaded", name, latest)
                f.catch_up(name)

    def _maybe_reload(self, name: str) -> None:
        f = self.follower
        current = f.served.get(name)
        latest = self.store.latest(name)
        if current is None or current.pinned or latest is None or latest <= current.version:
            return
        if not self.versions.try_load(name, latest):  # verified before the old one goes
            return
        with f.lock(name), f.journal(name).locked():
            current = f.catch_up(name)
            if current.pinned or latest <= current.version or not self.store.has(name, latest):
                return  # (a version withdrawn since it was listed is not served)
            f.rebase(name, latest, pinned=False)
        self.versions.problems.pop(name, None)
        self.hooks.loaded(
            "loaded",
            name,
            latest,
            previous=current.version,
            discarded_online_steps=current.online_steps,
        )

    # -- the watcher thread ----------
    def start(self) -> None:
        threading.Thread(target=self._watch, name="bpserve-reload", daemon=True).start()

    def stats(self) -> dict[str, int]:
        """Polls this worker's watcher finished, and how many raised: evidence it looked."""
        return {"polls": self._polls[0], "failed_polls": self._polls[1]}

    def _watch(self) -> None:
        while True:  # a daemon thread: it ends with the worker
            time.sleep(self.interval)
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any one bad poll
                self._polls[1] += 1
                self.hooks.poll_failed()
            self._polls[0] += 1
