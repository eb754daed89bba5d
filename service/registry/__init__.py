"""The models being served: their snapshots, and the commands that change them.

A prediction takes the current ``Served`` snapshot once and uses only it, so it always
sees one whole, consistent set of weights (``get``: caught up with the journal first).

Everything that changes what is served goes through the journal under its lock: a
train-step appends a ``step``; hot reload, pin/rollback and snapshot write a new
``base`` (which compacts the journal).  The worker that writes applies the record in
memory itself; the others replay it.  The parts, each with one job:

- ``Registry`` (here): the snapshots as routes see them, and the commands (train-step,
  pin, snapshot);
- ``follower.Follower``: follows each model's journal (catch up, replay through
  ``apply_step``, write a base); its journals come through ``JournalFactory``, the seam
  where another journal implementation plugs in (see that module's docstring);
- ``reloader.Reloader``: new models and newer versions, and the watcher thread;
- ``versions.Versions``: stored versions loaded once (an LRU cache) and load failures;
- ``hooks.Hooks``: the metrics and log lines.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from service import idempotency
from service.errors import ModelChanged, UnknownModel
from service.learning_state import LearningState
from service.registry.follower import Follower, JournalFactory, file_journals
from service.registry.hooks import Hooks
from service.registry.reloader import Reloader
from service.registry.versions import Versions
from service.served import Served
from training.errors import JournalConflict, StorageError, StorageUnavailable
from training.journal_format import Journal, Record
from training.model import Model
from training.online import NonFiniteStep, apply_step
from training.store import ModelStore

__all__ = ["Hooks", "JournalFactory", "Registry"]
CONFLICT_RETRIES = 5  # a shared journal's append lost to another writer: catch up, redo
_M = TypeVar("_M", bound=Callable[..., Any])


def _retry_conflicts(method: _M) -> _M:
    """Run a command again when a journal shared across hosts refused its append because
    another writer got there first (``JournalConflict``): each try catches up first."""

    @functools.wraps(method)
    def retrying(self: Registry, name: str, *args: Any, **kwargs: Any) -> Any:
        for _ in range(CONFLICT_RETRIES):
            try:
                return method(self, name, *args, **kwargs)
            except JournalConflict as exc:
                self.hooks.conflict(name, str(exc))
        raise StorageUnavailable(f"model {name!r}: the journal kept moving under this step")

    return retrying  # type: ignore[return-value]


class Registry:
    def __init__(
        self,
        store: ModelStore,
        reload_interval: float = 2.0,
        snapshot_every: int = 0,
        max_cached_versions: int = 4,
        *,
        journals: JournalFactory | None = None,
        hooks: Hooks | None = None,
        learning: LearningState | None = None,
    ) -> None:
        self.store = store
        self.snapshot_every = snapshot_every
        self.hooks = hooks or Hooks()
        self.versions = Versions(store, max_cached_versions, self.hooks)
        self.follower = Follower(self.versions, journals or file_journals(store), self.hooks)
        self.reloader = Reloader(store, self.follower, self.versions, self.hooks, reload_interval)
        self.learning = learning or LearningState()

    # -- reading ----------
    def get(self, name: str, *, full_check: bool = False) -> Served:
        """The current snapshot, caught up with the journal (404 when not served)."""
        return self.follower.current(name, full_check=full_check)

    def version(self, name: str, version: int) -> tuple[Model, int]:
        """A specific stored version, for prediction (the served one when it is that)."""
        served = self.get(name)
        if served.version == version and served.online_steps == 0:
            return served.model, version
        return self.versions.load(name, version)[0], version

    def all(self) -> dict[str, Served]:
        return dict(self.follower.served)

    def load_error(self, name: str) -> dict[str, Any] | None:
        return self.versions.problems.get(name)

    def names(self) -> list[str]:
        """Every model stored or served, sorted."""
        return sorted(set(self.store.names()) | set(self.follower.served))

    def stored_versions(self, name: str) -> list[int]:
        return self.store.versions(name)

    def learning_status(self, name: str) -> dict[str, Any]:
        """Whether online learning is paused by the storage (``LearningState.describe``)."""
        return self.learning.describe(name, self.store.model_dir(name))

    def journal(self, name: str) -> Journal:
        return self.follower.journal(name)

    # -- the reloader ----------
    def refresh(self) -> None:
        """Start serving new models; move unpinned ones to a newer stored version."""
        self.reloader.refresh()

    def start_watching(self) -> None:
        self.reloader.start()

    def watcher_stats(self) -> dict[str, int]:
        return self.reloader.stats()

    # -- the commands ----------
    def pin(self, name: str, version: int) -> Served:
        """Serve ``version`` and stop following newer ones (rollback or pin).

        It replaces the journal, so it needs no catch-up first: it is also the way out
        when the version a journal names can no longer be loaded.
        """
        f = self.follower
        if name not in f.served and not self.store.versions(name):
            raise UnknownModel(f"no model named {name!r} is served")
        self.versions.load(name, version)
        with f.lock(name), f.journal(name).locked():
            served = f.rebase(name, version, pinned=True)
        self.hooks.loaded("pinned", name, version)
        return served

    def snapshot(self, name: str, key: str | None = None) -> dict[str, Any]:
        """Publish the online-trained weights and optimizer state as a new version."""
        f = self.follower
        f.known(name)  # 404 for a model that is not served, before touching its folder
        digest = idempotency.snapshot_digest(name)
        with f.lock(name), self._storage(name), f.journal(name).locked():
            cur = f.catch_up(name)
            done = idempotency.recorded(cur.keys, key, digest)
            return done if done is not None else self._snapshot_locked(cur, key, digest)

    def _snapshot_locked(self, cur: Served, key: str | None, digest: str) -> dict[str, Any]:
        """Publish ``cur`` (caught up, both locks held) and compact the journal to it."""
        name = cur.name
        version = self.store.save_pending(
            name,
            cur.model,
            parent_version=cur.version,
            online_steps=cur.online_steps,
            training={"source": "online", "parent": cur.version, "steps": cur.online_steps},
            metrics={f"online_{k}": v for k, v in cur.online.as_dict().items()},
        )
        result = {
            "model": name,
            "version": version,
            "parent_version": cur.version,
            "online_steps": cur.online_steps,
        }
        # The version is durable (published and fsynced) before the journal lets go of
        # the steps that made it.
        mine = {"key": key, "request": digest, "result": result} if key is not None else {}
        try:
            self.follower.rebase(name, version, pinned=cur.pinned, **mine)
        except (StorageError, JournalConflict):
            # The journal still holds the steps: a reload to this version would drop
            # the ones acknowledged after it, so it goes.  If even that fails, it stays:
            # in the folder store; a shared store never lists it (pending, pg_store).
            with contextlib.suppress(StorageError):
                self.store.withdraw(name, version)
            raise
        self.hooks.snapshot(name, version, cur.version, cur.online_steps)
        return result

    @contextlib.contextmanager
    def _storage(self, name: str) -> Iterator[None]:
        """Hear whether a write to the store worked: learning pauses and resumes by it."""
        try:
            yield
        except StorageError as exc:
            self.learning.failed(name, exc)
            raise
        self.learning.succeeded(name)

    @_retry_conflicts
    def train_step(
        self,
        name: str,
        x: np.ndarray,
        y: np.ndarray,
        learning_rate: float | None,
        momentum: float | None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Catch up, compute, append and fsync, serve: one writer at a time, across workers.

        The catch-up and the shape check happen once each, under the locks, against the
        model the step is applied to (the caller prepared ``x`` and ``y`` against a
        snapshot that a reload may have replaced since).  Returns ``version``, ``step``,
        ``loss_before``, ``loss_after``: the recorded ones when ``key`` was already
        applied (and nothing is applied again).  A journal shared across hosts refuses
        an append another writer got to first (``JournalConflict``): this one then
        catches up and computes the step again on what is there.
        """
        f = self.follower
        f.known(name)  # 404 before touching the journal
        digest = idempotency.step_digest(name, x, y, learning_rate, momentum)
        with f.lock(name), self._storage(name), f.journal(name).locked():
            cur = f.catch_up(name)
            done = idempotency.recorded(cur.keys, key, digest)
            if done is not None:
                return done
            if x.shape[1] != cur.model.n_features or y.shape[1] != cur.model.network.n_outputs:
                raise ModelChanged(
                    f"model {name!r} changed while this step was "
                    "being prepared (a new version); send it again"
                )
            opt = cur.model.optimizer
            lr = learning_rate if learning_rate is not None else opt.learning_rate
            mu = momentum if momentum is not None else opt.momentum
            try:
                result = apply_step(cur.model, x, y, lr, mu)
            except NonFiniteStep:
                self.hooks.step_refused(name)
                raise
            step = cur.online_steps + 1
            meta = {
                "segment": cur.segment,
                "base_version": cur.version,
                "step": step,
                "learning_rate": lr,
                "momentum": mu,
            }
            if key is not None:
                meta |= {"key": key, "request": digest}
            pos = f.journal(name).append(Record("step", meta, x, y))
            # Durable: only now does any state in memory move on.
            answer = cur.step_answer(result)
            if key is not None:
                cur.keys[key] = (digest, answer)
            served = cur.stepped(result, len(x), pos)
            f.swap(served)
            if self.snapshot_every and step >= self.snapshot_every:
                try:
                    self._snapshot_locked(served, None, "")
                except StorageError as exc:  # the step is stored; the snapshot can wait
                    self.hooks.snapshot_deferred(name, str(exc))
        self.hooks.stepped(name, served.version, result.loss_before, served.online)
        return answer
