"""The models being served, derived from the store and each model's training journal.

A prediction takes the current ``Served`` snapshot once and uses only it, so it always
sees one whole, consistent set of weights.  Before that, the journal's change counter
(shared memory, no system call) tells whether any worker has changed the journal since
this one last looked; if so, one ``stat`` and the new records are replayed first.  So
every worker serves every step acknowledged before the request arrived (the staleness
bound is zero for acknowledged steps).

Everything that changes what is served goes through the journal under its file lock:
a train-step appends a ``step``; hot reload, pin/rollback and snapshot write a new
``base`` (which compacts the journal).  The worker that writes applies the record in
memory itself; the others replay it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from service import metrics
from service.errors import ApiError
from training.journal import FileJournal, Journal, Position, Record
from training.journal_errors import JournalConflict, StorageUnavailable
from training.model import Model
from training.online import NonFiniteStep, apply_step
from training.store import Manifest, ModelStore, StoreError

log = logging.getLogger("bpserve")
CONFLICT_RETRIES = 5  # a writer that did not hold the lock got there first: catch up, redo


@dataclass(frozen=True)
class OnlineStats:
    """Progressive validation: each labelled batch scored by the weights before its step."""

    rows: int = 0
    correct: int = 0
    loss_sum: float = 0.0

    def add(self, rows: int, correct: int, loss: float) -> OnlineStats:
        return OnlineStats(self.rows + rows, self.correct + correct, self.loss_sum + loss * rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "accuracy": self.correct / self.rows if self.rows else None,
            "loss": self.loss_sum / self.rows if self.rows else None,
        }


@dataclass(frozen=True)
class Served:
    name: str
    version: int
    model: Model
    manifest: Manifest
    online_steps: int = 0
    pinned: bool = False
    online: OnlineStats = field(default_factory=OnlineStats)
    segment: str = ""  # id of the journal segment (the base record) this state follows
    position: Position | None = None  # journal position after the last applied record

    def weights_digest(self) -> str:
        """sha256 of the weights and optimizer state: equal across workers that agree."""
        h = hashlib.sha256(self.model.network.params.tobytes())
        h.update(self.model.optimizer_state["velocity"].tobytes())
        return h.hexdigest()


class Registry:
    def __init__(
        self,
        store: ModelStore,
        reload_interval: float = 2.0,
        snapshot_every: int = 0,
        max_cached_versions: int = 4,
        journals: Callable[[str], Journal] | None = None,
    ) -> None:
        self.store = store
        # The journal of each model: a file in its folder unless told (service/backend.py).
        self._new_journal = journals or (lambda name: FileJournal(store.model_dir(name)))
        self.reload_interval = reload_interval
        self.snapshot_every = snapshot_every
        self._served: dict[str, Served] = {}
        self._heard: dict[str, int | None] = {}  # journal change counter at the last check
        self._journals: dict[str, Journal] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._errors: dict[str, dict[str, Any]] = {}
        self._failed: set[tuple[str, int]] = set()
        self._cache: OrderedDict[tuple[str, int], tuple[Model, Manifest]] = OrderedDict()
        self._max_cached = max_cached_versions
        self._guard = threading.Lock()
        self._polls = [0, 0]  # the watcher's polls done, and those that raised

    # -- plumbing ----------
    def _lock(self, name: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    def journal(self, name: str) -> Journal:
        j = self._journals.get(name)
        if j is None:
            j = self._journals.setdefault(name, self._new_journal(name))
        return j

    def _cached_load(self, name: str, version: int) -> tuple[Model, Manifest]:
        key = (name, version)
        with self._guard:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        loaded = self.store.load(name, version)
        with self._guard:
            self._cache[key] = loaded
            while len(self._cache) > self._max_cached:
                self._cache.popitem(last=False)
        return loaded

    def _swap(self, served: Served) -> None:
        previous = self._served.get(served.name)
        self._served[served.name] = served
        if previous is None or previous.version != served.version:
            metrics.served_version(served.name, served.version)

    # -- reading ----------
    def get(self, name: str, *, full_check: bool = False) -> Served:
        """The current snapshot, caught up with the journal.

        When the journal's change counter has not moved since the last check, nothing
        was appended since; ``full_check`` (the watcher's) looks at the file regardless,
        which also finds a step whose writer died before bumping the counter.
        """
        served = self._served.get(name)
        if served is None:
            raise ApiError(
                404,
                "unknown_model",
                f"no model named {name!r} is served",
                {"served": sorted(self._served)},
            )
        journal = self.journal(name)
        heard = journal.changes()  # before the stat: a change after it moves the counter
        if full_check or heard is None or heard != self._heard.get(name):
            try:
                if journal.position() != served.position:
                    served = self._catch_up(name)
            except StorageUnavailable:
                pass  # keep serving what this worker holds; a reconnection moves `heard`
            self._heard[name] = heard
        return served

    def version(self, name: str, version: int) -> tuple[Model, int]:
        """A specific stored version, for prediction (the served one when it is that)."""
        served = self.get(name)
        if served.version == version and served.online_steps == 0:
            return served.model, version
        try:
            return self._cached_load(name, version)[0], version
        except StoreError as exc:
            raise self._store_error(name, version, exc) from None

    def all(self) -> dict[str, Served]:
        return dict(self._served)

    def load_error(self, name: str) -> dict[str, Any] | None:
        return self._errors.get(name)

    @staticmethod
    def _store_error(name: str, version: int | None, exc: StoreError) -> ApiError:
        if "no such version" in exc.problem or "no versions" in exc.problem:
            return ApiError(404, "unknown_version", f"model {name!r} has no version {version}")
        if "invalid" in exc.problem:
            return ApiError(422, "invalid_name", exc.problem)
        return ApiError(
            409,
            "version_unloadable",
            f"version {version} of {name!r} failed to load",
            {"problem": exc.problem},
        )

    # -- following the journal ----------
    def _catch_up(self, name: str) -> Served:
        """Apply the journal records this worker has not applied yet."""
        with self._lock(name):
            served = self._served.get(name)
            since = served.position if served is not None else None
            try:
                return self._apply_journal(name, served, since)
            except StoreError as exc:
                raise ApiError(
                    503, "model_unavailable", f"model {name!r} cannot be served: {exc}"
                ) from None

    def _apply_journal(self, name: str, served: Served | None, since: Position | None) -> Served:
        records, end = self.journal(name).read(since)
        if (
            served is not None
            and since is not None
            and end is not None
            and since.ident != end.ident
        ):
            served = None  # the journal was compacted: it starts with a base record
        for pos, record in records:
            if record.kind == "base":
                served = self._from_base(name, record, pos)
            elif served is None or record.meta.get("segment") != served.segment:
                if since is not None:
                    # A step of a segment we do not hold (we missed a compaction and
                    # the inode number was reused): read the file from its base.
                    return self._replay_from_start(name)
                # Read from the file's own base and still foreign: never apply it.
                log.error(
                    "journal record skipped",
                    extra={
                        "event": "journal_foreign_step",
                        "model": name,
                        "segment": record.meta.get("segment"),
                    },
                )
                if served is not None:
                    served = replace(served, position=pos)
            else:
                served = self._replay_step(served, record, pos)
        if served is None:
            raise ApiError(503, "model_unavailable", f"model {name!r} has no usable journal base")
        if end is not None and served.position != end:
            served = replace(served, position=end)
        self._swap(served)
        return served

    def _replay_from_start(self, name: str) -> Served:
        self._served.pop(name, None)
        return self._catch_up(name)

    def _from_base(self, name: str, record: Record, pos: Position) -> Served:
        version = int(record.meta["version"])
        model, manifest = self._cached_load(name, version)
        return Served(
            name,
            version,
            model,
            manifest,
            pinned=bool(record.meta.get("pinned")),
            segment=record.meta["segment"],
            position=pos,
        )

    @staticmethod
    def _replay_step(served: Served, record: Record, pos: Position) -> Served:
        m = record.meta
        result = apply_step(served.model, record.x, record.y, m["learning_rate"], m["momentum"])
        return replace(
            served,
            model=result.model,
            online_steps=served.online_steps + 1,
            position=pos,
            online=served.online.add(len(record.x), result.correct, result.loss_before),
        )

    def _write_base(self, name: str, version: int, pinned: bool) -> Served:
        """Compact the journal to a new base (lock held) and serve it here at once."""
        record = Record(
            "base", {"version": version, "pinned": pinned, "segment": uuid.uuid4().hex[:16]}
        )
        pos = self.journal(name).rebase(record)
        served = self._from_base(name, record, pos)
        self._swap(served)
        return served

    # -- changing what is served ----------
    def refresh(self) -> None:
        """Start serving new models; move unpinned ones to a newer stored version."""
        try:
            names = self.store.names()
        except (OSError, StoreError, StorageUnavailable) as exc:
            log.warning("cannot list the model store: %s", exc)
            return
        for name in names:
            try:
                if name not in self._served:
                    self._start(name)
                else:
                    self.get(name, full_check=True)
                self._maybe_reload(name)
            except (StoreError, ApiError, StorageUnavailable, JournalConflict) as exc:
                self._errors[name] = {"version": None, "problem": str(exc)}
                log.error(
                    "model unavailable",
                    extra={"event": "unavailable", "model": name, "problem": str(exc)},
                )

    def _start(self, name: str) -> None:
        with self._lock(name), self.journal(name).locked():
            if self.journal(name).position() is None:
                latest = self._newest_loadable(name)
                if latest is None:
                    return
                self._write_base(name, latest, pinned=False)
                self._announce("loaded", name, latest)
            self._catch_up(name)

    @staticmethod
    def _announce(event: str, name: str, version: int, **extra: Any) -> None:
        """A version now serves: one place for its metric and its log line."""
        metrics.loaded(name, version)
        log.info(
            f"model {event}",
            extra={"event": event, "model": name, "version": version, **extra},
        )

    def _newest_loadable(self, name: str) -> int | None:
        for version in reversed(self.store.versions(name)):
            if self._try_load(name, version):
                return version
        return None

    def _try_load(self, name: str, version: int) -> bool:
        """Load and verify a version before anything depends on it; remember failures."""
        if (name, version) in self._failed:
            return False
        try:
            self._cached_load(name, version)
            return True
        except StoreError as exc:
            self._failed.add((name, version))
            self._errors[name] = {"version": version, "problem": str(exc)}
            metrics.load_failed(name, version)
            log.error(
                "model load failed",
                extra={
                    "event": "load_failed",
                    "model": name,
                    "version": version,
                    "problem": str(exc),
                },
            )
            return False

    def _maybe_reload(self, name: str) -> None:
        current = self._served.get(name)
        latest = self.store.latest(name)
        if current is None or current.pinned or latest is None or latest <= current.version:
            return
        if not self._try_load(name, latest):  # verified before the old one is let go
            return
        with self._lock(name), self.journal(name).locked():
            current = self._catch_up(name)
            if current.pinned or latest <= current.version:
                return
            self._write_base(name, latest, pinned=False)
        self._errors.pop(name, None)
        self._announce(
            "loaded",
            name,
            latest,
            previous=current.version,
            discarded_online_steps=current.online_steps,
        )

    def pin(self, name: str, version: int) -> Served:
        """Serve ``version`` and stop following newer ones (rollback or pin).

        It replaces the journal, so it needs no catch-up first: it is also the way out
        when the version a journal names can no longer be loaded.
        """
        if name not in self._served and not self.store.versions(name):
            raise ApiError(404, "unknown_model", f"no model named {name!r} is served")
        try:
            self._cached_load(name, version)
        except StoreError as exc:
            raise self._store_error(name, version, exc) from None
        with self._lock(name), self.journal(name).locked():
            served = self._write_base(name, version, pinned=True)
        self._announce("pinned", name, version)
        return served

    def snapshot(self, name: str) -> tuple[Served, Served]:
        """Publish the online-trained weights and optimizer state as a new version."""
        self.get(name)  # 404 for a model that is not served, before touching its folder
        with self._lock(name), self.journal(name).locked():
            return self._snapshot_locked(name)

    def _snapshot_locked(self, name: str) -> tuple[Served, Served]:
        cur = self._catch_up(name)
        version = self.store.save(
            name,
            cur.model,
            parent_version=cur.version,
            online_steps=cur.online_steps,
            training={"source": "online", "parent": cur.version, "steps": cur.online_steps},
            metrics={f"online_{k}": v for k, v in cur.online.as_dict().items()},
        )
        # The version is durable (published and fsynced) before the journal lets go of
        # the steps that made it.
        served = self._write_base(name, version, pinned=cur.pinned)
        log.info(
            "snapshot published",
            extra={
                "event": "snapshot",
                "model": name,
                "version": version,
                "parent": cur.version,
                "steps": cur.online_steps,
            },
        )
        return cur, served

    def train_step(
        self,
        name: str,
        x: np.ndarray,
        y: np.ndarray,
        learning_rate: float | None,
        momentum: float | None,
    ) -> tuple[Served, float, float]:
        """Catch up, compute, append and fsync, serve: one writer at a time, across workers.

        A journal that refuses the append because another writer got there first
        (``JournalConflict``) has this one catch up and compute the step again."""
        self.get(name)
        for _ in range(CONFLICT_RETRIES):
            try:
                with self._lock(name), self.journal(name).locked():
                    served, result = self._step_locked(name, x, y, learning_rate, momentum)
                break
            except JournalConflict as exc:
                log.warning(
                    "journal conflict, retrying", extra={"event": "conflict", "problem": str(exc)}
                )
        else:
            raise StorageUnavailable(f"model {name!r}: the journal kept moving under this step")
        metrics.train_step(name, served.version, result.loss_before, served.online)
        return served, result.loss_before, result.loss_after

    def _step_locked(
        self,
        name: str,
        x: np.ndarray,
        y: np.ndarray,
        learning_rate: float | None,
        momentum: float | None,
    ) -> tuple[Served, Any]:
        cur = self._catch_up(name)
        net = cur.model.network
        if x.shape[1] != net.n_inputs or y.shape[1] != net.n_outputs:
            # The request was checked against a version that a reload replaced since.
            raise ApiError(
                409,
                "model_changed",
                f"model {name!r} changed while this step was "
                "being prepared (a new version); send it again",
            )
        opt = cur.model.optimizer
        lr = learning_rate if learning_rate is not None else opt.learning_rate
        mu = momentum if momentum is not None else opt.momentum
        try:
            result = apply_step(cur.model, x, y, lr, mu)
        except NonFiniteStep as exc:
            metrics.step_refused(name)
            raise ApiError(
                422,
                "non_finite_step",
                f"{exc}; the model is unchanged (lower the learning rate?)",
            ) from None
        step = cur.online_steps + 1
        pos = self.journal(name).append(
            Record(
                "step",
                {
                    "segment": cur.segment,
                    "base_version": cur.version,
                    "step": step,
                    "learning_rate": lr,
                    "momentum": mu,
                },
                x,
                y,
            )
        )
        served = replace(
            cur,
            model=result.model,
            online_steps=step,
            position=pos,
            online=cur.online.add(len(x), result.correct, result.loss_before),
        )
        self._swap(served)
        if self.snapshot_every and step >= self.snapshot_every:
            self._snapshot_locked(name)
        return served, result

    # -- the watcher ----------
    def start_watching(self) -> None:
        threading.Thread(target=self._watch, name="bpserve-reload", daemon=True).start()

    def watcher_stats(self) -> dict[str, int]:
        """Polls this worker's watcher finished, and how many raised: evidence it looked."""
        return {"polls": self._polls[0], "failed_polls": self._polls[1]}

    def _watch(self) -> None:
        while True:  # a daemon thread: it ends with the worker
            time.sleep(self.reload_interval)
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any one bad poll
                self._polls[1] += 1
                log.exception("reload poll failed")
            self._polls[0] += 1
