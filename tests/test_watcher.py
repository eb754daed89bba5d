"""The reload watcher outlives polls that fail for real, and then picks up a good version."""

from __future__ import annotations

import time

from tests.server import serve_copy
from training.store import ModelStore


def every_worker_until(server, done, *, workers: int = 2, tries: int = 3000) -> dict[int, dict]:
    """GET /models/digits on fresh connections until ``done(info)`` holds for the latest
    answer of each of ``workers`` workers; a count of tries, only to end a hung test."""
    last: dict[int, dict] = {}
    for _ in range(tries):
        status, info, head = server.call("GET", "/models/digits")
        assert status == 200, info
        last[int(head["X-Bpserve-Worker"])] = info
        if len(last) >= workers and all(done(i) for i in last.values()):
            return last
        time.sleep(0.01)
    raise AssertionError(f"not reached within {tries} requests: {last}")


def failing(info: dict) -> bool:
    # the poll raised (counted by the watcher) or the model's refresh failed (recorded)
    return info["watcher"]["failed_polls"] >= 2 or info["load_error"] is not None


def test_the_watcher_survives_failing_polls_then_reloads(tmp_path):
    gen = serve_copy(tmp_path, snapshot_every=0)
    server = next(gen)
    try:
        # Both watchers have done a whole poll, so each worker has read the journal's
        # counter and its requests do not read the journal while nothing writes.
        server.after_watchers_looked()
        model_dir = server.models_dir / "digits"
        journal = model_dir / "journal.log"
        # The fault: the journal's path becomes a folder. Each poll does a full check,
        # and reading a folder fails (IsADirectoryError).
        journal.rename(model_dir / "journal.aside")
        journal.mkdir()
        (journal / "junk").write_bytes(b"x")
        broken = every_worker_until(server, failing)
        assert server.request("POST", "/predict", {"inputs": [[0.0] * 64]})[0] == 200
        # The fault goes away, and a good version 2 appears.
        (journal / "junk").unlink()
        journal.rmdir()
        (model_dir / "journal.aside").rename(journal)
        store = ModelStore(server.models_dir)
        model, _ = store.load("digits", 1)
        assert store.save("digits", model.copy()) == 2
        healed = every_worker_until(server, lambda i: i["served_version"] == 2)
    finally:
        gen.close()
    assert set(healed) == set(broken)
    for pid, info in healed.items():
        assert info["watcher"]["polls"] > broken[pid]["watcher"]["polls"]  # still polling
        assert info["load_error"] is None and info["online_steps"] == 0
