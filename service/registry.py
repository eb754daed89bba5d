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

import contextlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from service import idempotency, metrics
from service.errors import ModelChanged, ModelUnavailable, UnknownModel
from service.learning_state import LearningState
from service.served import Served
from training.errors import JournalConflict, StorageError, StorageUnavailable
from training.journal import FileJournal, Journal, Position, Record
from training.model import Model
from training.online import NonFiniteStep, StepResult, apply_step
from training.store import Manifest, ModelStore, StoreError

log = logging.getLogger("bpserve")
CONFLICT_RETRIES = 5  # a shared journal's append lost to another writer: catch up, redo


def _step_result(before: Served, result: StepResult) -> dict[str, Any]:
    """What a step answers (and what a retry with its Idempotency-Key is answered)."""
    return {
        "version": before.version,
        "step": before.online_steps + 1,
        "loss_before": result.loss_before,
        "loss_after": result.loss_after,
    }


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
        # Each model's journal: a file in its folder unless told (service/backend.py).
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
        self.learning = LearningState()
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
            raise UnknownModel(
                f"no model named {name!r} is served", {"served": sorted(self._served)}
            )
        journal = self.journal(name)
        heard = journal.changes()  # before the stat: a change after it moves the counter
        if full_check or heard is None or heard != self._heard.get(name):
            try:
                if journal.position() != served.position:
                    served = self._catch_up(name)
            except StorageUnavailable:
                pass  # serve what this worker holds; its journal's counter moves when back
            self._heard[name] = heard
        return served

    def version(self, name: str, version: int) -> tuple[Model, int]:
        """A specific stored version, for prediction (the served one when it is that)."""
        served = self.get(name)
        if served.version == version and served.online_steps == 0:
            return served.model, version
        return self._cached_load(name, version)[0], version

    def all(self) -> dict[str, Served]:
        return dict(self._served)

    def load_error(self, name: str) -> dict[str, Any] | None:
        return self._errors.get(name)

    # -- following the journal ----------
    def _catch_up(self, name: str) -> Served:
        """Apply the journal records this worker has not applied yet."""
        with self._lock(name):
            served = self._served.get(name)
            since = served.position if served is not None else None
            try:
                return self._apply_journal(name, served, since)
            except StoreError as exc:
                raise ModelUnavailable(f"model {name!r} cannot be served: {exc}") from None

    def _apply_journal(self, name: str, served: Served | None, since: Position | None) -> Served:
        records, end = self.journal(name).read(since)
        if served is not None and since is not None and end is not None:
            if since.ident != end.ident:
                served = None  # the journal was compacted: it starts with a base record
            elif end.offset < since.offset:  # cut back under us: never serve past it
                return self._replay_from_start(name)
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
            raise ModelUnavailable(f"model {name!r} has no usable journal base")
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
            keys=idempotency.from_base(record.meta),
        )

    @staticmethod
    def _replay_step(served: Served, record: Record, pos: Position) -> Served:
        m = record.meta
        result = apply_step(served.model, record.x, record.y, m["learning_rate"], m["momentum"])
        if m.get("key") is not None:
            served.keys[m["key"]] = (m["request"], _step_result(served, result))
        return replace(
            served,
            model=result.model,
            online_steps=served.online_steps + 1,
            position=pos,
            online=served.online.add(len(record.x), result.correct, result.loss_before),
        )

    def _write_base(self, name: str, version: int, pinned: bool, **meta: Any) -> Served:
        """Compact the journal to a new base (lock held) and serve it here at once,
        carrying the Idempotency-Keys of the segment it replaces."""
        current = self._served.get(name)
        meta["keys"] = idempotency.carry(current.keys) if current is not None else {}
        segment = uuid.uuid4().hex[:16]
        record = Record("base", {"version": version, "pinned": pinned, "segment": segment, **meta})
        pos = self.journal(name).rebase(record)
        served = self._from_base(name, record, pos)
        self._swap(served)
        return served

    # -- changing what is served ----------
    def refresh(self) -> None:
        """Start serving new models; move unpinned ones to a newer stored version."""
        try:
            names = self.store.names()
        except (OSError, StoreError) as exc:
            log.warning("cannot list the model store: %s", exc)
            return
        for name in names:
            try:
                if name not in self._served:
                    self._start(name)
                else:
                    self.get(name, full_check=True)
                self._maybe_reload(name)
            except (StoreError, StorageError, JournalConflict, ModelUnavailable) as exc:
                self._errors[name] = {"version": None, "problem": str(exc)}
                log.error(
                    "model unavailable",
                    extra={"event": "unavailable", "model": name, "problem": str(exc)},
                )

    def _start(self, name: str) -> None:
        with self._lock(name):
            if self.journal(name).position() is not None:  # no writing: a read-only store serves
                self._catch_up(name)
                return
            with self.journal(name).locked():
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
            if current.pinned or latest <= current.version or not self.store.has(name, latest):
                return  # (a version withdrawn since it was listed is not served)
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
            raise UnknownModel(f"no model named {name!r} is served")
        self._cached_load(name, version)
        with self._lock(name), self.journal(name).locked():
            served = self._write_base(name, version, pinned=True)
        self._announce("pinned", name, version)
        return served

    def snapshot(self, name: str, key: str | None = None) -> dict[str, Any]:
        """Publish the online-trained weights and optimizer state as a new version."""
        self.get(name)  # 404 for a model that is not served, before touching its folder
        digest = idempotency.snapshot_digest(name)
        with self._lock(name), self._storage(name), self.journal(name).locked():
            done = idempotency.recorded(self._catch_up(name).keys, key, digest)
            return done if done is not None else self._snapshot_locked(name, key, digest)

    def _snapshot_locked(self, name: str, key: str | None, digest: str) -> dict[str, Any]:
        cur = self._catch_up(name)
        version = self.store.save(
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
            self._write_base(name, version, pinned=cur.pinned, **mine)
        except (StorageError, JournalConflict):
            # The journal still holds the steps: a reload to this version would drop
            # the ones acknowledged after it, so it goes (if even that fails, it stays).
            with contextlib.suppress(StorageError):
                self.store.withdraw(name, version)
            raise
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

        Returns ``version``, ``step``, ``loss_before``, ``loss_after``: the recorded ones
        when ``key`` was already applied (and nothing is applied again).  A journal shared
        across hosts refuses an append another writer got to first (``JournalConflict``):
        this one then catches up and computes the step again on what is there.
        """
        for _ in range(CONFLICT_RETRIES):
            try:
                return self._train_step(name, x, y, learning_rate, momentum, key)
            except JournalConflict as exc:
                log.warning("journal conflict", extra={"event": "conflict", "problem": str(exc)})
        raise StorageUnavailable(f"model {name!r}: the journal kept moving under this step")

    def _train_step(
        self,
        name: str,
        x: np.ndarray,
        y: np.ndarray,
        learning_rate: float | None,
        momentum: float | None,
        key: str | None,
    ) -> dict[str, Any]:
        self.get(name)
        digest = idempotency.step_digest(name, x, y, learning_rate, momentum)
        with self._lock(name), self._storage(name), self.journal(name).locked():
            cur = self._catch_up(name)
            done = idempotency.recorded(cur.keys, key, digest)
            if done is not None:
                return done
            net = cur.model.network
            if x.shape[1] != cur.model.n_features or y.shape[1] != net.n_outputs:
                # The request was checked against a version that a reload replaced since.
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
                metrics.step_refused(name)
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
            pos = self.journal(name).append(Record("step", meta, x, y))
            # Durable: only now does any state in memory move on.
            answer = _step_result(cur, result)
            if key is not None:
                cur.keys[key] = (digest, answer)
            served = replace(
                cur,
                model=result.model,
                online_steps=step,
                position=pos,
                online=cur.online.add(len(x), result.correct, result.loss_before),
            )
            self._swap(served)
            if self.snapshot_every and step >= self.snapshot_every:
                try:
                    self._snapshot_locked(name, None, "")
                except StorageError as exc:  # the step is stored; the snapshot can wait
                    log.warning(
                        "snapshot deferred",
                        extra={"event": "snapshot_deferred", "model": name, "problem": str(exc)},
                    )
        metrics.train_step(name, served.version, result.loss_before, served.online)
        return answer

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
