"""The models being served: one immutable snapshot per model, swapped by reference.

A prediction takes the current ``Served`` once and uses only it, so it always sees one
whole, consistent set of weights.  A train-step copies the snapshot's model, steps the
copy and swaps the reference: predictions never wait for it and never see it half
done.  Train-steps of one model are serialised by a lock.  A background thread polls
the store and hot-reloads newer versions (verified before the old one is let go).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from service import metrics
from service.errors import ApiError
from training.model import Model
from training.optimizers import SGD
from training.store import Manifest, ModelStore, StoreError

log = logging.getLogger("bpserve")


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


class Registry:
    def __init__(
        self, store: ModelStore, reload_interval: float = 2.0, max_cached_versions: int = 4
    ) -> None:
        self.store = store
        self.reload_interval = reload_interval
        self._served: dict[str, Served] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._errors: dict[str, dict[str, Any]] = {}  # name -> last failed load
        self._failed: set[tuple[str, int]] = set()
        self._cache: OrderedDict[tuple[str, int], tuple[Model, Manifest]] = OrderedDict()
        self._max_cached = max_cached_versions
        self._guard = threading.Lock()
        self._stop = threading.Event()

    # -- reading ------------------------------------------------------------------------
    def get(self, name: str) -> Served:
        served = self._served.get(name)
        if served is None:
            raise ApiError(
                404,
                "unknown_model",
                f"no model named {name!r} is served",
                {"served": sorted(self._served)},
            )
        return served

    def version(self, name: str, version: int) -> tuple[Model, int]:
        """A specific version for prediction: the served one, or a verified read-only load."""
        served = self.get(name)
        if served.version == version and served.online_steps == 0:
            return served.model, version
        key = (name, version)
        with self._guard:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit[0], version
        model, manifest = self._load(name, version)
        with self._guard:
            self._cache[key] = (model, manifest)
            while len(self._cache) > self._max_cached:
                self._cache.popitem(last=False)
        return model, version

    def all(self) -> dict[str, Served]:
        return dict(self._served)

    def load_error(self, name: str) -> dict[str, Any] | None:
        return self._errors.get(name)

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _load(self, name: str, version: int | None) -> tuple[Model, Manifest]:
        try:
            return self.store.load(name, version)
        except StoreError as exc:
            if "no such version" in exc.problem or "no versions" in exc.problem:
                raise ApiError(
                    404, "unknown_version", f"model {name!r} has no version {version}"
                ) from None
            if "invalid" in exc.problem:
                raise ApiError(422, "invalid_name", exc.problem) from None
            raise ApiError(
                409,
                "version_unloadable",
                f"version {version} of {name!r} failed to load",
                {"problem": exc.problem},
            ) from None

    # -- changing what is served -----------------------------------------------------------
    def _swap(self, served: Served) -> None:
        self._served[served.name] = served
        metrics.served_version(served.name, served.version)

    def refresh(self) -> None:
        """Serve the newest loadable version of every unpinned model in the store."""
        try:
            names = self.store.names()
        except (OSError, StoreError) as exc:
            log.warning("cannot list the model store: %s", exc)
            return
        for name in names:
            current = self._served.get(name)
            if current is not None and current.pinned:
                continue
            try:
                latest = self.store.latest(name)
            except (OSError, StoreError):
                continue
            if (
                latest is None
                or (current and current.version >= latest)
                or (name, latest) in self._failed
            ):
                continue
            with self._lock(name):
                current = self._served.get(name)
                if current is not None and (current.pinned or current.version >= latest):
                    continue
                try:
                    model, manifest = self.store.load(name, latest)
                except StoreError as exc:
                    self._failed.add((name, latest))
                    self._errors[name] = {"version": latest, "problem": str(exc)}
                    metrics.load_failed(name, latest)
                    log.error(
                        "model load failed",
                        extra={
                            "event": "load_failed",
                            "model": name,
                            "version": latest,
                            "problem": str(exc),
                        },
                    )
                    continue
                self._swap(Served(name, latest, model, manifest))
                self._errors.pop(name, None)
                metrics.loaded(name, latest)
                dropped = current.online_steps if current else 0
                log.info(
                    "model loaded",
                    extra={
                        "event": "loaded",
                        "model": name,
                        "version": latest,
                        "previous": current.version if current else None,
                        "discarded_online_steps": dropped,
                    },
                )

    def pin(self, name: str, version: int) -> Served:
        """Serve ``version`` and stop following newer ones (rollback or pin)."""
        self.get(name)
        with self._lock(name):
            model, manifest = self._load(name, version)
            served = Served(name, version, model, manifest, pinned=True)
            self._swap(served)
        metrics.loaded(name, version)
        log.info("model pinned", extra={"event": "pinned", "model": name, "version": version})
        return served

    def snapshot(self, name: str) -> Served:
        """Publish the online-trained weights and optimizer state as a new version."""
        with self._lock(name):
            cur = self.get(name)
            version = self.store.save(
                name,
                cur.model,
                parent_version=cur.version,
                online_steps=cur.online_steps,
                training={"source": "online", "parent": cur.version, "steps": cur.online_steps},
                data_fingerprint=None,
                metrics={f"online_{k}": v for k, v in cur.online.as_dict().items()},
            )
            model, manifest = self.store.load(name, version)
            served = Served(name, version, model, manifest, pinned=cur.pinned)
            self._swap(served)
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
        return served

    def train_step(
        self,
        name: str,
        x: np.ndarray,
        y: np.ndarray,
        learning_rate: float | None,
        momentum: float | None,
    ) -> tuple[Served, float, float]:
        """One optimizer step on a copy; the copy is served only if it is finite."""
        with self._lock(name):
            cur = self.get(name)
            base = cur.model.optimizer
            opt = SGD(
                learning_rate if learning_rate is not None else base.learning_rate,
                momentum if momentum is not None else base.momentum,
                base.nesterov,
                base.weight_decay,
                base.clip_norm,
            )
            new = cur.model.copy()
            net = new.network
            with np.errstate(all="ignore"):
                xs = new.prepare(x)
                cache = net._forward(xs)
                loss_before = net.loss.value(cache.output, cache.zs[-1], y)
                grads = net._backward(cache, y, np.empty_like(net.params))
                opt.step(
                    net.params,
                    grads.flat,
                    new.optimizer_state,
                    decay_mask=net.decay_mask() if opt.weight_decay else None,
                )
                after = net._forward(xs)
                loss_after = net.loss.value(after.output, after.zs[-1], y)
            if not (
                np.isfinite(loss_before)
                and np.isfinite(loss_after)
                and np.isfinite(net.params).all()
            ):
                metrics.step_refused(name)
                raise ApiError(
                    422,
                    "non_finite_step",
                    "this step would make the weights or the loss "
                    "non-finite; the model is unchanged (lower the learning rate?)",
                )
            correct = int((cache.output.argmax(1) == y.argmax(1)).sum()) if new.labels else 0
            served = replace(
                cur,
                model=new,
                online_steps=cur.online_steps + 1,
                online=cur.online.add(len(x), correct, loss_before),
            )
            self._swap(served)
        metrics.train_step(name, served.version, loss_before, served.online)
        return served, loss_before, loss_after

    # -- hot reload --------------------------------------------------------------------------
    def start_watching(self) -> None:
        t = threading.Thread(target=self._watch, name="bpserve-reload", daemon=True)
        t.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.reload_interval):
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any one bad poll
                log.exception("reload poll failed")

    def stop(self) -> None:
        self._stop.set()
