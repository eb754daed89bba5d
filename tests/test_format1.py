"""A version of manifest format 1 (per-feature mean and scale, numbers only), as every
version was before column preprocessing: it keeps loading, serving and training online
as it did, and says so when it is sent what only format 2 can take."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.server import Server
from training.data import load_digits
from training.scaling import Standardizer
from training.store import ModelStore

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "format1"
TOKEN = "t0ken"


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    store = tmp_path_factory.mktemp("f1") / "models"
    shutil.copytree(FIXTURE, store)
    with Server(store, train_token=TOKEN) as server:
        yield store, server


def test_it_loads_as_before(old):
    store, _ = old
    model, manifest = ModelStore(store).load("digits", 1)
    assert manifest.format_version == 1 and manifest.targets is None
    assert isinstance(model.preprocessing, Standardizer)
    digits = load_digits()
    pre = model.preprocessing
    x = digits.x[:50].astype(np.float32)
    want = model.network.output(
        (x - pre.mean.astype(np.float32)) * (1 / pre.scale).astype(np.float32)
    )
    assert np.array_equal(model.predict(x), want)  # the format-1 formula, bit for bit


def test_it_serves_numbers_and_refuses_holes(old):
    store, server = old
    model, _ = ModelStore(store).load("digits", 1)
    x = load_digits().x[:3]
    status, reply = server.request("POST", "/predict", {"inputs": x.tolist()})
    assert status == 200 and reply["version"] == 1
    np.testing.assert_allclose(reply["outputs"], model.predict(x), rtol=1e-6)
    row = x[0].tolist()
    row[5] = None
    status, reply = server.request("POST", "/predict", {"inputs": [row]})
    assert status == 422 and reply["error"]["code"] == "missing_value"
    assert "inputs[0].pixel_0_5" in reply["error"]["message"]
    nan = b'{"inputs": [[' + b",".join([b"NaN"] * 64) + b"]]}"
    status, reply = server.request("POST", "/predict", raw=nan)
    assert status == 422, reply
    status, info = server.request("GET", "/models/digits")
    assert [c["kind"] for c in info["columns"]] == ["numeric"] * 64
    by_name = dict(zip(info["inputs"]["feature_names"], x[0].tolist()))
    status, reply = server.request("POST", "/predict", {"inputs": [by_name]})
    assert status == 200
    np.testing.assert_allclose(reply["outputs"][0], model.predict(x[:1])[0], rtol=1e-6)


def test_it_trains_online_and_snapshots_into_the_new_format(old):
    store, server = old
    digits = load_digits()
    body = {"inputs": digits.x[:4].tolist(), "targets": [str(v) for v in digits.y[:4]]}
    status, reply = server.request("POST", "/train-step", body, token=TOKEN)
    assert status == 200 and reply["step"] >= 1, reply
    status, reply = server.request("POST", "/models/digits/snapshot", token=TOKEN)
    assert status == 200, reply
    model, manifest = ModelStore(store).load("digits", reply["version"])
    assert manifest.format_version == 2 and isinstance(model.preprocessing, Standardizer)
