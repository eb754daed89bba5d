"""The registry over PostgresJournal (tests/pg.py) when two workers without the lock
compute a step on the same head: one is stored, the other retried on top of it."""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from service.registry import Hooks, Registry
from tests.server import make_store
from training.data import load_digits
from training.pg_db import Database
from training.pg_journal import PostgresJournal
from training.store import ModelStore


class LostLock(PostgresJournal):
    """A writer that believes it holds the lock and does not (say, its connection was
    cut and another writer took the lock): only the primary key stands between them.
    Once ``race`` is set, the first read of each writer waits for the other's, so both
    compute on the same head."""

    race: threading.Barrier | None = None

    @contextlib.contextmanager
    def locked(self):
        with self.db.connection() as conn:
            self._writer, self._head, self._holder = conn, None, threading.get_ident()
            try:
                yield
            finally:
                self._holder = self._writer = self._head = None

    def read(self, since):
        out = super().read(since)
        race = LostLock.race
        if race is not None and self._mine():  # a writer's catch-up, not a reader's
            race.wait(timeout=30)  # both have read the same head now
            LostLock.race = None
        return out


class Counted(Hooks):
    def __init__(self) -> None:
        self.conflicts: list[str] = []

    def conflict(self, name: str, problem: str) -> None:
        self.conflicts.append(problem)


def test_the_registry_retries_a_step_that_lost_the_race(tmp_path, pg_url):
    """Two workers without the lock compute a step on the same head: one is stored, the
    other is refused by the key, catches up and is stored as the next step on top."""
    dbs = [Database(pg_url, pool_size=2) for _ in range(2)]
    hooks = [Counted(), Counted()]
    workers = []
    for i, (d, h) in enumerate(zip(dbs, hooks)):
        d.open()
        store = ModelStore(make_store(tmp_path / str(i)))
        workers.append(Registry(store, journals=lambda n, d=d: LostLock(d, n), hooks=h))
        workers[-1].refresh()
    digits = load_digits()
    x = digits.x[:8].astype(np.float32)
    y = np.eye(10, dtype=np.float32)[digits.y[:8]]
    answers: list[dict] = []
    barrier = threading.Barrier(2)
    LostLock.race = barrier
    threads = [
        threading.Thread(target=lambda w=w: answers.append(w.train_step("digits", x, y, 0.1, 0.9)))
        for w in workers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(a["step"] for a in answers) == [1, 2]  # consecutive, no fork
    assert sum(len(h.conflicts) for h in hooks) == 1
    served = [w.get("digits", full_check=True) for w in workers]
    assert [s.online_steps for s in served] == [2, 2]
    assert served[0].weights_digest() == served[1].weights_digest()
    records, _ = workers[0].journal("digits").read(None)
    assert [r.meta.get("step") for _, r in records] == [None, 1, 2]
    for d in dbs:
        d.close()
