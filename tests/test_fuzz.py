"""Fuzzing the real server: schemathesis from the OpenAPI document, and hypothesis bodies
for /predict and /train-step.  No 5xx, and no rejected request changes the weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server import serve_copy

TOKEN = "fuzz-token"
ST = Path(sys.executable).parent / "st"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_copy(tmp_path_factory.mktemp("fuzz"), train_token=TOKEN, snapshot_every=0)


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory):
    # Its own server: with the token, schemathesis may pin, roll back, load or publish
    # versions, and the body fuzzers below must start from a model nobody else moves.
    yield from serve_copy(tmp_path_factory.mktemp("schema"), train_token=TOKEN, snapshot_every=0)


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
def test_schemathesis_finds_no_server_error(schema_server, with_token, tmp_path):
    cmd = [
        str(ST),
        "run",
        f"http://127.0.0.1:{schema_server.port}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "40",
        "--workers",
        "1",
        "--seed",
        "1",
    ]
    if with_token:
        cmd += ["-H", f"Authorization: Bearer {TOKEN}"]
    # In a temporary folder: schemathesis keeps a cache in its working directory.
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "generated" in out.stdout


numbers = st.one_of(st.floats(allow_nan=False), st.integers(-(10**40), 10**40), st.just(1e308))
json_leaf = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=5))
json_value = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=20,
)
rows = st.lists(st.lists(numbers, min_size=0, max_size=70), min_size=0, max_size=3)
near_valid_predict = st.fixed_dictionaries(
    {"inputs": st.one_of(rows, st.lists(numbers, max_size=70), json_value)},
    optional={
        "model": st.one_of(st.text(max_size=8), st.just("digits"), st.just("../x")),
        "version": st.one_of(st.integers(-3, 5), st.text(max_size=3)),
    },
)
near_valid_step = st.fixed_dictionaries(
    {
        "inputs": st.one_of(rows, json_value),
        "targets": st.one_of(
            st.lists(st.sampled_from(["0", "9", "x", 3, 12, -1]), max_size=3),
            st.lists(st.lists(numbers, max_size=11), max_size=3),
            json_value,
        ),
    },
    optional={
        "learning_rate": st.one_of(numbers, st.just(1e6)),
        "momentum": numbers,
        "model": st.text(max_size=5),
    },
)
raw_bodies = st.one_of(
    st.binary(max_size=60), st.just(b"NaN"), st.just(b'{"inputs": [[Infinity]]}')
)


def check(server, path: str, body: bytes, token: str | None) -> None:
    before = server.request("GET", "/models/digits")[1]["weights_sha256"]
    status, reply = server.request("POST", path, raw=body, token=token)
    assert status < 500, (status, reply, body[:200])
    if status != 200:
        assert set(reply) == {"error"} and reply["error"]["code"] and reply["error"]["message"]
        assert server.request("GET", "/models/digits")[1]["weights_sha256"] == before, body[:200]


common = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def bodies(near_valid: st.SearchStrategy) -> st.SearchStrategy:
    """Near-valid requests, arbitrary bytes and arbitrary JSON, as request bodies."""
    encode = lambda b: json.dumps(b).encode()  # noqa: E731
    return st.one_of(near_valid.map(encode), raw_bodies, json_value.map(encode))


@common
@given(body=bodies(near_valid_predict))
def test_predict_bodies_never_5xx(server, body):
    check(server, "/predict", body, None)


@common
@given(body=bodies(near_valid_step))
def test_train_step_bodies_never_5xx_and_rejections_change_nothing(server, body):
    check(server, "/train-step", body, TOKEN)
