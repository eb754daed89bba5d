"""Fuzzing the real server: schemathesis from the OpenAPI document, and hypothesis bodies
for /predict and /train-step.  No 5xx, and no rejected request changes the weights.

Most generated bodies are refused by validation; ``test_steps_that_reach_the_model``
sends rows of exactly the model's width with extreme values and learning rates, so the
model itself runs: a 200 adds one step whose weights equal a replay of the journal, a
refusal (``non_finite_step`` included, asserted to happen) changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from service.registry import Registry
from tests.server import serve_copy
from training.store import ModelStore

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
WIDTH = 64  # the digits model's features
LABELS = [str(d) for d in range(10)]
FLOAT32_MAX = 3.4028234663852886e38
extremes = st.sampled_from(
    [FLOAT32_MAX, -FLOAT32_MAX, 3.4e38, -3.4e38, 1e-45, -1e-45, 1.17e-38, 5e-324, 0.0, -0.0, 16.0]
)
in_range = st.one_of(
    st.floats(0, 16),  # what the digits are
    st.floats(-1e6, 1e6),
    st.floats(width=32, allow_nan=False, allow_infinity=False),  # every finite float32
    extremes,
)
# Mostly digit-like rows with a few values replaced (by extremes, or any finite float32),
# so that some steps succeed; and now and then a row of anything in range.
width_row = st.one_of(
    st.tuples(
        st.lists(st.floats(0, 16), min_size=WIDTH, max_size=WIDTH),
        st.dictionaries(st.integers(0, WIDTH - 1), in_range, max_size=4),
    ).map(lambda t: [t[1].get(i, v) for i, v in enumerate(t[0])]),
    st.lists(in_range, min_size=WIDTH, max_size=WIDTH),
)
rows = st.one_of(
    st.lists(st.lists(numbers, min_size=0, max_size=70), min_size=0, max_size=3),
    st.lists(width_row, min_size=1, max_size=3),
)
learning_rates = st.one_of(
    st.sampled_from([1e-6, 0.01, 1.0, 50.0, 100.0, 1e6, 1e38]), st.floats(1e-8, 100.0)
)
width_step = st.integers(1, 3).flatmap(
    lambda n: st.fixed_dictionaries(
        {
            "inputs": st.lists(width_row, min_size=n, max_size=n),
            "targets": st.lists(st.sampled_from(LABELS), min_size=n, max_size=n),
        },
        optional={"learning_rate": learning_rates, "momentum": st.floats(0, 0.999)},
    )
)
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


def test_steps_that_reach_the_model(server):
    """Each body has rows of the model's width; a 200 is one step more, with the weights
    of a replay (a registry of our own, following the server's journal the way another
    worker does); a refusal leaves steps and weights as they were."""
    replica = Registry(ModelStore(server.models_dir))
    replica.refresh()
    outcomes: Counter = Counter()

    def state() -> tuple[int, str]:
        info = server.request("GET", "/models/digits")[1]
        return info["online_steps"], info["weights_sha256"]

    @settings(max_examples=150, deadline=None)
    @example(body={"inputs": [[1e30] * WIDTH], "targets": ["1"], "learning_rate": 100.0})
    # The default model clips its inputs (manifest format 2): huge target vectors still
    # make a step non-finite.
    @example(body={"inputs": [[16.0] * WIDTH], "targets": [[1e30] * 10], "learning_rate": 100.0})
    @example(body={"inputs": [[FLOAT32_MAX] * WIDTH], "targets": ["3"]})
    @example(body={"inputs": [[1e-45] * WIDTH], "targets": ["0"], "learning_rate": 1e-6})
    @given(body=width_step)
    def send(body):
        steps, digest = state()
        status, reply = server.request("POST", "/train-step", body, token=TOKEN)
        assert status < 500, (status, reply)
        after_steps, after_digest = state()
        if status == 200:
            outcomes[200] += 1
            assert reply["step"] == after_steps == steps + 1, (reply, steps)
            with threadpool_limits(1, user_api="blas"):  # as in the server's workers
                replayed = replica.get("digits", full_check=True)
            assert replayed.online_steps == after_steps
            assert replayed.weights_digest() == after_digest
        else:
            outcomes[reply["error"]["code"]] += 1
            assert 400 <= status < 500 and reply["error"]["message"]
            assert (after_steps, after_digest) == (steps, digest), reply

    send()
    # The model's own refusal was reached, and so were real steps.
    assert outcomes["non_finite_step"] >= 1 and outcomes[200] >= 1, outcomes
