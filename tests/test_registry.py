"""Two registries over one store, as two workers: what one writes the other serves."""

from __future__ import annotations

import numpy as np
import pytest

from service.registry import Registry
from tests.server import make_store
from training.data import load_digits
from training.journal import Record, encode
from training.store import ModelStore


@pytest.fixture
def workers(tmp_path):
    store = make_store(tmp_path / "models")
    pair = [Registry(ModelStore(store)) for _ in range(2)]
    for r in pair:
        r.refresh()
        r.get("digits")
    return pair


@pytest.fixture(scope="module")
def batch():
    d = load_digits()
    return d.x[:8].astype(np.float32), np.eye(10, dtype=np.float32)[d.y[:8]]


def test_a_step_by_one_worker_is_served_by_the_other_at_once(workers, batch):
    a, b = workers
    for step in (1, 2):
        answer = a.train_step("digits", *batch, 0.1, 0.9)
        seen = b.get("digits")  # no watcher here: only the journal's counter tells b
        assert seen.online_steps == answer["step"] == a.get("digits").online_steps == step
        assert seen.weights_digest() == a.get("digits").weights_digest()


def test_a_step_without_its_counter_bump_waits_for_the_full_check(workers, batch):
    """A writer that died between its fsync and the bump: requests may not see the
    step, the watcher's poll (refresh: a full check) does."""
    a, b = workers
    journal = a.journal("digits")
    base = journal.read(None)[0][0][1]
    meta = {"segment": base.meta["segment"], "base_version": 1, "step": 1}
    record = Record("step", {**meta, "learning_rate": 0.1, "momentum": 0.9}, *batch)
    with journal.locked(), open(journal.path, "ab") as f:
        f.write(encode(record))  # what append() writes, without the bump after it
    b.refresh()
    assert b.get("digits").online_steps == 1
    answer = a.train_step("digits", *batch, 0.1, 0.9)  # a writer catches up first
    assert answer["step"] == 2 and b.get("digits").online_steps == 2
