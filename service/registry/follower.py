"""The journal follower: keeps each model's ``Served`` snapshot in step with its journal.

Before a prediction, the journal's change counter (shared memory, no system call) tells
whether any worker has changed the journal since this one last looked; if so, one
position check and the new records are replayed first, each ``step`` through
``training.online.apply_step`` (the code path a live step takes).  So every worker
serves every step acknowledged before the request arrived.

The journal seam
----------------
The follower never names a journal class.  It takes a ``JournalFactory``: a callable
from a model's name to an object with the ``training.journal_format.Journal`` interface
(``position``, ``changes``, ``read``, ``locked``, ``append``, ``rebase``; that class's
docstring gives the promises).  ``file_journals(store)``, one ``FileJournal`` in each
model's folder, is the default; another implementation (PostgreSQL, say) plugs in as
``Registry(store, journals=lambda name: PgJournal(dsn, name))`` and nothing else in the
registry changes.  ``Position`` values are only compared for equality and passed back
to ``read``, except the file journal's ``ident``/``offset`` check below, which finds a
compacted or cut-back file; a journal whose positions are not file positions keeps
``ident`` constant per segment and ``offset`` growing.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from service import idempotency
from service.errors import ModelUnavailable, UnknownModel
from service.registry.hooks import Hooks
from service.registry.versions import Versions
from service.served import Served
from training.errors import StorageUnavailable
from training.journal import FileJournal
from training.journal_format import Journal, Position, Record
from training.online import apply_step
from training.store import ModelStore, StoreError

JournalFactory = Callable[[str], Journal]


def file_journals(store: ModelStore) -> JournalFactory:
    """The default journals: ``journal.log`` in each model's folder of ``store``."""
    return lambda name: FileJournal(store.model_dir(name))


class Follower:
    def __init__(self, versions: Versions, journals: JournalFactory, hooks: Hooks) -> None:
        self.versions = versions
        self.hooks = hooks
        self.served: dict[str, Served] = {}  # replaced whole, never changed in place
        self._journal_for = journals
        self._journals: dict[str, Journal] = {}
        self._heard: dict[str, int | None] = {}  # journal change counter at the last check
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def lock(self, name: str) -> threading.RLock:
        """This worker's lock for ``name`` (the journal's ``locked()`` is across workers)."""
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    def journal(self, name: str) -> Journal:
        j = self._journals.get(name)
        if j is None:
            j = self._journals.setdefault(name, self._journal_for(name))
        return j

    def swap(self, served: Served) -> None:
        previous = self.served.get(served.name)
        self.served[served.name] = served
        if previous is None or previous.version != served.version:
            self.hooks.served_version(served.name, served.version)

    def known(self, name: str) -> Served:
        """The snapshot as it is, without looking at the journal; 404 when not served."""
        served = self.served.get(name)
        if served is None:
            raise UnknownModel(
                f"no model named {name!r} is served", {"served": sorted(self.served)}
            )
        return served

    def current(self, name: str, *, full_check: bool = False) -> Served:
        """The snapshot, caught up with the journal.

        When the journal's change counter has not moved since the last check, nothing
        was appended since; ``full_check`` (the watcher's) looks at the journal
        regardless, which also finds a step whose writer died before bumping the counter.
        """
        served = self.known(name)
        journal = self.journal(name)
        heard = journal.changes()  # before the position: a change after it moves the counter
        if full_check or heard is None or heard != self._heard.get(name):
            try:
                if journal.position() != served.position:
                    served = self.catch_up(name)
            except StorageUnavailable:
                pass  # a journal on another host is away: serve what this worker holds
            self._heard[name] = heard
        return served

    def catch_up(self, name: str) -> Served:
        """Apply the journal records this worker has not applied yet."""
        with self.lock(name):
            served = self.served.get(name)
            since = served.position if served is not None else None
            try:
                return self._apply(name, served, since)
            except StoreError as exc:
                raise ModelUnavailable(f"model {name!r} cannot be served: {exc}") from None

    def _apply(self, name: str, served: Served | None, since: Position | None) -> Served:
        records, end = self.journal(name).read(since)
        if served is not None and since is not None and end is not None:
            if since.ident != end.ident:
                served = None  # the journal was compacted: it starts with a base record
            elif end.offset < since.offset:  # cut back under us: never serve past it
                return self._from_start(name)
        for pos, record in records:
            if record.kind == "base":
                served = self._from_base(name, record, pos)
            elif served is None or record.meta.get("segment") != served.segment:
                if since is not None:
                    # A step of a segment we do not hold (we missed a compaction and
                    # the inode number was reused): read the journal from its base.
                    return self._from_start(name)
                # Read from the journal's own base and still foreign: never apply it.
                self.hooks.foreign_step(name, record.meta.get("segment"))
                if served is not None:
                    served = replace(served, position=pos)
            else:
                served = self._replay_step(served, record, pos)
        if served is None:
            raise ModelUnavailable(f"model {name!r} has no usable journal base")
        if end is not None and served.position != end:
            served = replace(served, position=end)
        self.swap(served)
        return served

    def _from_start(self, name: str) -> Served:
        self.served.pop(name, None)
        return self.catch_up(name)

    def _from_base(self, name: str, record: Record, pos: Position) -> Served:
        version = int(record.meta["version"])
        model, manifest = self.versions.load(name, version)
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
            served.keys[m["key"]] = (m["request"], served.step_answer(result))
        return served.stepped(result, len(record.x), pos)

    def rebase(self, name: str, version: int, pinned: bool, **meta: Any) -> Served:
        """Compact the journal to a new base (both locks held) and serve it here at once,
        carrying the Idempotency-Keys of the segment it replaces."""
        current = self.served.get(name)
        meta["keys"] = idempotency.carry(current.keys) if current is not None else {}
        segment = uuid.uuid4().hex[:16]
        record = Record("base", {"version": version, "pinned": pinned, "segment": segment, **meta})
        pos = self.journal(name).rebase(record)
        served = self._from_base(name, record, pos)
        self.swap(served)
        return served
