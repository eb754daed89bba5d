import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training import Network
from training.data import Standardizer
from training.model import Model
from training.store import MANIFEST, OPTIMIZER, WEIGHTS, ModelStore, StoreError

ROOT = Path(__file__).resolve().parent.parent


def make_model(seed: int = 0) -> Model:
    rng = np.random.default_rng(seed)
    net = Network([4, 6, 3], "tanh", loss="cross_entropy", seed=seed)
    model = Model(
        net,
        Standardizer(rng.normal(size=4), rng.random(4) + 0.5),
        ["a", "b", "c"],
        ["f1", "f2", "f3", "f4"],
    )
    model.optimizer_state["velocity"][:] = rng.normal(size=net.params.size)
    model.optimizer_state["step"][...] = 17
    return model


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def test_round_trip_is_bit_identical(store):
    model = make_model()
    v = store.save("m", model, metrics={"test_accuracy": 0.9}, data_fingerprint="abc")
    assert v == 1 and store.versions("m") == [1] and store.names() == ["m"]
    loaded, manifest = store.load("m")
    assert loaded.network.params.tobytes() == model.network.params.tobytes()
    assert loaded.network.params.dtype == np.float32
    assert (
        loaded.optimizer_state["velocity"].tobytes() == model.optimizer_state["velocity"].tobytes()
    )
    assert int(loaded.optimizer_state["step"]) == 17
    assert np.array_equal(loaded.standardizer.mean, model.standardizer.mean)
    assert np.array_equal(loaded.standardizer.scale, model.standardizer.scale)
    assert loaded.labels == ["a", "b", "c"] and loaded.feature_names == ["f1", "f2", "f3", "f4"]
    assert manifest.metrics == {"test_accuracy": 0.9} and manifest.data_fingerprint == "abc"
    assert set(manifest.files) == {WEIGHTS, OPTIMIZER}
    x = np.random.default_rng(1).normal(size=(5, 4))
    assert np.array_equal(loaded.predict(x), model.predict(x))
    # the manifest read back equals the one written
    again = store.read_manifest("m", 1)
    assert again == manifest


def _corrupt_flip(vdir):
    p = vdir / WEIGHTS
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    return WEIGHTS


def _corrupt_truncate(vdir):
    p = vdir / OPTIMIZER
    p.write_bytes(p.read_bytes()[:-100])
    return OPTIMIZER


def _corrupt_delete(vdir):
    (vdir / WEIGHTS).unlink()
    return WEIGHTS


def _corrupt_shape(vdir):
    m = json.loads((vdir / MANIFEST).read_text())
    m["architecture"]["sizes"][1] = 7
    (vdir / MANIFEST).write_text(json.dumps(m))
    return WEIGHTS  # the weights no longer fit the architecture the manifest claims


def _corrupt_format(vdir):
    m = json.loads((vdir / MANIFEST).read_text())
    m["format_version"] = 99
    (vdir / MANIFEST).write_text(json.dumps(m))
    return MANIFEST


def _corrupt_json(vdir):
    (vdir / MANIFEST).write_text('{"format_version": 1, ')
    return MANIFEST


def _corrupt_extra_file(vdir):
    (vdir / "sneaky.bin").write_bytes(b"x")
    return "sneaky.bin"


@pytest.mark.parametrize(
    "corrupt,problem",
    [
        (_corrupt_flip, "sha256"),
        (_corrupt_truncate, "sha256"),
        (_corrupt_delete, "missing file"),
        (_corrupt_shape, "manifest says"),
        (_corrupt_format, "unknown format version 99"),
        (_corrupt_json, "bad JSON"),
        (_corrupt_extra_file, "not listed"),
    ],
    ids=lambda f: getattr(f, "__name__", "")[9:],
)
def test_every_corruption_raises_store_error_naming_the_file(store, corrupt, problem):
    store.save("m", make_model())
    vdir = store.version_dir("m", 1)
    fname = corrupt(vdir)
    with pytest.raises(StoreError, match=problem) as err:
        store.load("m", 1)
    assert err.value.path.endswith(fname)


CRASH_CHILD = """
import os, signal, sys
sys.path.insert(0, {root!r})
from training import store as st
from tests.test_store import make_model
step = sys.argv[1]
def hook(name):
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)
st.on_publish_step = hook
st.ModelStore(sys.argv[2]).save("m", make_model(1))
"""

STEPS = [
    "weights_written",
    "optimizer_written",
    "files_synced",
    "locked",
    "manifest_written",
    "renamed",
    "published",
]


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_every_publish_step_leaves_the_old_version_intact(store, step):
    store.save("m", make_model(0))
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_CHILD.format(root=str(ROOT)), step, str(store.root)],
        cwd=ROOT,
        capture_output=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    versions = store.versions("m")
    # Before the rename nothing new is visible; from the rename on, version 2 is whole.
    assert versions == ([1, 2] if STEPS.index(step) >= STEPS.index("renamed") else [1])
    for v in versions:
        store.load("m", v)
    old, _ = store.load("m", 1)
    assert old.network.params.tobytes() == make_model(0).network.params.tobytes()
    # The next publish succeeds, numbers on, and sweeps the dead publisher's temp folder.
    nxt = store.save("m", make_model(2))
    assert nxt == versions[-1] + 1
    assert not list((store.root / "m").glob(".tmp-*"))


PUBLISHER = """
import sys
sys.path.insert(0, {root!r})
from training.store import ModelStore
from tests.test_store import make_model
s = ModelStore(sys.argv[1])
print(" ".join(str(s.save("m", make_model(i))) for i in range(8)))
"""


def test_concurrent_publishers_get_distinct_versions(store):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER.format(root=str(ROOT)), str(store.root)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    got = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        got += [int(v) for v in out.split()]
    assert sorted(got) == list(range(1, 25))
    assert store.versions("m") == list(range(1, 25))


@pytest.mark.parametrize(
    "name", ["../etc", "..", "a/b", "/abs", ".hidden", "", "a\\b", "x" * 65, "a..b"]
)
def test_path_traversal_names_are_refused(store, name):
    with pytest.raises(StoreError, match="invalid model name"):
        store.load(name)
    with pytest.raises(StoreError, match="invalid model name"):
        store.save(name, make_model())


@pytest.mark.parametrize("version", ["../1", "-1", 0, "1/..", True])
def test_bad_versions_are_refused(store, version):
    store.save("m", make_model())
    with pytest.raises(StoreError, match="invalid version"):
        store.load("m", version)


def test_symlinks_out_of_the_store_are_not_followed(store, tmp_path):
    store.save("m", make_model())
    outside = tmp_path / "outside"
    os.rename(store.version_dir("m", 1), outside)
    os.symlink(outside, store.root / "m" / "1")
    assert store.versions("m") == []
    with pytest.raises(StoreError, match="symlink"):
        store.load("m", 1)


def test_no_code_execution_on_load_anywhere_in_the_project():
    # Built from pieces so that this file does not match itself.
    banned = re.compile(
        r"\bimport "
        + "pickle"
        + r"|\bpickle\.|allow_pickle\s*=\s*True|(?<![\w.])(ev"
        + r"al|ex"
        + r"ec)\("
    )
    offenders = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if banned.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert offenders == []


def test_committed_default_model_loads_and_is_accurate():
    """Scored on its own held-out test split, remade from configs/digits.toml (the
    split is seeded and stratified), not on the manifest's figure or on images most of
    which it was trained on."""
    import tomllib

    from training.data import load_digits, stratified_split

    model, manifest = ModelStore(ROOT / "models").load("digits")
    assert manifest.inputs.n_features == 64 and manifest.labels == [str(i) for i in range(10)]
    cfg = tomllib.loads((ROOT / "configs" / "digits.toml").read_text())
    digits = load_digits()
    assert manifest.data_fingerprint == digits.fingerprint  # the data it was trained on
    train, val, test = stratified_split(
        digits, cfg["val_fraction"], cfg["test_fraction"], cfg["seed"]
    )
    assert len(test) == 359 and not set(test) & (set(train) | set(val))
    accuracy = float((model.predict(digits.x[test]).argmax(1) == digits.y[test]).mean())
    assert accuracy >= 0.97
    # and the manifest's figure is that same score (to within one image)
    assert abs(accuracy - manifest.metrics["test_accuracy"]) <= 1 / len(test)
