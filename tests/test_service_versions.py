"""The service over real HTTP (tests/server.py): model versions: hot reload, pins,
rollback, a version that fails to load, and snapshots served after a restart."""

from __future__ import annotations

import re
import shutil
import time

import numpy as np

from tests.server import Server
from tests.train_token import TOKEN
from training.store import ModelStore


def wait_for(predicate, tries=300):
    """Ask up to ``tries`` times, 0.1 s apart: a count, only there to end a hung test."""
    for _ in range(tries):
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_hot_reload_pin_rollback_and_failed_load(server, store_dir, digits):
    store = ModelStore(store_dir)
    model, _ = store.load("digits", 1)
    changed = model.copy()
    changed.network.params *= 0.5
    assert store.save("digits", changed) == 2
    assert wait_for(lambda: server.request("GET", "/readyz")[1]["version"] == 2)
    _, body = server.request("POST", "/predict", {"inputs": digits.x[:3].tolist()})
    assert body["version"] == 2 and np.allclose(
        body["outputs"], changed.predict(digits.x[:3]), rtol=1e-5
    )
    # rollback and pin
    status, reply = server.request("POST", "/models/digits/load", {"version": 1}, token=TOKEN)
    assert status == 200 and reply == {"model": "digits", "version": 1, "pinned": True}
    assert store.save("digits", changed) == 3
    # Not a sleep: evidence that each worker's watcher looked at the store since v3.
    looked = server.after_watchers_looked()
    assert {(i["served_version"], i["pinned"]) for i in looked.values()} == {(1, True)}
    # unknown version to load
    assert server.request("POST", "/models/digits/load", {"version": 99}, token=TOKEN)[0] == 404


def test_a_version_that_fails_to_load_keeps_the_old_one(server, store_dir):
    # Made aside and renamed into place, so that no poll sees it half made.
    bad = store_dir / "digits" / ".bad-2"
    shutil.copytree(store_dir / "digits" / "1", bad)
    weights = bad / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    (bad / "manifest.json").write_text(
        (bad / "manifest.json").read_text().replace('"version": 1', '"version": 2')
    )
    bad.rename(store_dir / "digits" / "2")

    # Each worker tries the new version on its own poll and keeps its own record of the
    # failure: look at the reply that shows it.
    seen = []

    def failed():
        info = server.request("GET", "/models/digits")[1]
        seen.append(info)
        return info["load_error"] is not None

    assert wait_for(failed)
    info = seen[-1]
    assert info["served_version"] == 1 and info["load_error"]["version"] == 2
    assert "sha256" in info["load_error"]["problem"]
    assert server.request("POST", "/predict", {"inputs": [[0.0] * 64]})[0] == 200
    _, text = server.request("GET", "/metrics")
    # each worker that tried counts its own failure
    failures = re.search(
        r'bpserve_model_load_failures_total\{model="digits",version="2"\} ([\d.]+)', text
    )
    assert failures and float(failures.group(1)) >= 1


def test_snapshot_then_restart_serves_the_snapshot(store_dir, digits):
    x, labels = digits.x[:16].tolist(), [str(v) for v in digits.y[:16]]
    probe = {"inputs": digits.x[200:205].tolist()}
    with Server(store_dir, train_token=TOKEN) as s:
        for _ in range(2):
            assert (
                s.request("POST", "/train-step", {"inputs": x, "targets": labels}, token=TOKEN)[0]
                == 200
            )
        _, trained = s.request("POST", "/predict", probe)
        status, snap = s.request("POST", "/models/digits/snapshot", token=TOKEN)
        assert status == 200 and snap == {
            "model": "digits",
            "version": 2,
            "parent_version": 1,
            "online_steps": 2,
        }
    manifest = ModelStore(store_dir).read_manifest("digits", 2)
    assert manifest.parent_version == 1 and manifest.online_steps == 2
    with Server(store_dir, train_token=TOKEN) as s:
        _, again = s.request("POST", "/predict", probe)
        assert again["version"] == 2 and again["outputs"] == trained["outputs"]
        _, listing = s.request("GET", "/models")
        assert listing["models"] == [
            {
                "name": "digits",
                "versions": [1, 2],
                "served_version": 2,
                "online_steps": 0,
                "pinned": False,
            }
        ]


def test_rollback_recovers_when_the_served_version_breaks(store_dir, digits):
    store = ModelStore(store_dir)
    model, _ = store.load("digits", 1)
    assert store.save("digits", model.copy()) == 2
    with Server(store_dir, train_token=TOKEN) as s:
        assert wait_for(lambda: s.request("GET", "/readyz")[1].get("version") == 2)
        # version 2 rots on disk; a restarted server cannot load what its journal names
        weights = store_dir / "digits" / "2" / "weights.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    with Server(store_dir, train_token=TOKEN).start(ready=False) as s:
        status, reply = s.request("POST", "/predict", {"inputs": [[0.0] * 64]})
        assert status in (404, 503) and "error" in reply
        status, reply = s.request("POST", "/models/digits/load", {"version": 1}, token=TOKEN)
        assert status == 200, reply
        assert wait_for(lambda: s.request("POST", "/predict", {"inputs": [[0.0] * 64]})[0] == 200)
        # A worker that served nothing picks the pin up on its next reload tick (2 s), so
        # /readyz may first reach one that has not yet: wait, as for /predict above.
        assert wait_for(lambda: s.request("GET", "/readyz")[1].get("version") == 1)
