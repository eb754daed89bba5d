"""The numeric fast path says yes only where the strict path would, with the same values.

In process: bodies built to be near the edge (nested elements, booleans, strings, huge
numbers, escapes, duplicate keys, flat rows) are parsed both ways; wherever the fast path
accepts, the strict path must accept and give the same array bit for bit.  Live: the same
kinds of body at a size that takes the fast path get the errors they got before.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import fastjson, v2_codec
from service.errors import ApiError
from service.schemas import PredictRequest, parse, to_matrix
from tests.server import serve_copy

COLS = 8
PAD = 200  # rows: enough to make every body here larger than fastjson.MIN_BYTES


def strict(body: bytes, dtype=np.float32) -> np.ndarray | None:
    try:
        return to_matrix(parse(PredictRequest, body).inputs, "inputs", COLS, 10_000, dtype)
    except ApiError:
        return None


def fast(body: bytes, dtype=np.float32) -> np.ndarray | None:
    got = fastjson.predict_request(body)
    return None if got is None else got.matrix(COLS, 10_000, dtype)


number = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda v: round(v, 3)),
)
odd = st.one_of(st.booleans(), st.none(), st.just("1.5"), st.just([1.0]), st.just([]))
cell = st.one_of(number, number, number, odd)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(cell, min_size=COLS - 1, max_size=COLS + 1), min_size=1, max_size=3),
    flat=st.booleans(),
    extra=st.sampled_from([{}, {"model": "digits"}, {"version": 1}, {"version": True}]),
)
def test_fast_accepts_only_what_strict_accepts_with_the_same_values(rows, flat, extra):
    filler = [[0.5] * COLS] * PAD
    inputs = rows[0] if flat else rows + filler
    body = json.dumps({"inputs": inputs, **extra}).encode()
    if flat:
        body += b" " * fastjson.MIN_BYTES  # whitespace: still the same document
    for dtype in (np.float32, np.float64):
        got = fast(body, dtype)
        if got is not None:
            want = strict(body, dtype)
            assert want is not None, body[:200]
            assert want.dtype == got.dtype and np.array_equal(want, got), body[:200]


@pytest.mark.parametrize(
    "text",
    [
        '{"inputs": [[1, [2], 3, 4, 5, 6, 7, 8], ROWS]}',  # a nested element, right count
        '{"inputs": [ROWS], "inputs": [[1, 2, 3, 4, 5, 6, 7, 8]]}',  # duplicate key
        '{"inputs": [ROWS], "model": "dig\\u0069ts"}',  # an escape
        '{"inputs": [ROWS], "extra": 1}',
        '{"inputs": [[true, 2, 3, 4, 5, 6, 7, 8], ROWS]}',
    ],
)
def test_refused_shapes_go_the_strict_way(text):
    rows = ", ".join(["[0, 1, 2, 3, 4, 5, 6, 7]"] * PAD)
    assert fastjson.predict_request(text.replace("ROWS", rows).encode()) is None


def test_big_rows_are_taken_and_small_bodies_are_not():
    rows = np.random.default_rng(0).uniform(0, 16, size=(PAD, COLS)).round(2).tolist()
    body = json.dumps({"inputs": rows}).encode()
    assert np.array_equal(fast(body), strict(body))
    assert fastjson.predict_request(json.dumps({"inputs": rows[:1]}).encode()) is None


def test_v2_header_split_matches_strict():
    data = np.random.default_rng(1).uniform(0, 16, size=(PAD, COLS)).round(3)
    for payload in (data.ravel().tolist(), data.tolist()):
        head = json.dumps(
            {
                "id": "a",
                "inputs": [
                    {"name": "input", "shape": [PAD, COLS], "datatype": "FP32", "data": payload}
                ],
                "outputs": [{"name": "output"}],
            }
        ).encode()
        assert fastjson.infer_header(head) is not None
        got = v2_codec.parse_header(head)
        want = v2_codec.InferRequest.model_validate_json(head)
        assert got.id == want.id and got.outputs == want.outputs
        assert np.array_equal(
            np.asarray(got.inputs[0].data, dtype="<f4").ravel(),
            np.asarray(want.inputs[0].data, dtype="<f4").ravel(),
        )
    ragged = data.tolist()
    ragged[0] = [*ragged[0][:-1], [ragged[0][-1]]]  # same count, one value nested deeper
    head = json.dumps(
        {"inputs": [{"name": "input", "shape": [PAD, COLS], "datatype": "FP32", "data": ragged}]}
    ).encode()
    assert fastjson.infer_header(head) is None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_copy(tmp_path_factory.mktemp("fast"), log_requests="false")


def big(first: list, n: int = 100) -> list:
    return [first] + [[0.5] * 64] * n


@pytest.mark.parametrize(
    "inputs,code",
    [
        (big([0.0] * 63), "ragged_rows"),
        ([[0.0] * 63] * 100, "wrong_feature_count"),
        (big([1e39] * 64), "non_finite_input"),
        # not all numbers: the cell path (service/cells.py) names the cell
        (big([[1.0]] + [0.0] * 63), "invalid_cell"),
        (big(["a"] * 64), "invalid_cell"),
        ([[0.5] * 64] * 10_001, "too_many_rows"),
    ],
)
def test_large_bad_bodies_keep_their_errors(server, inputs, code):
    status, reply = server.request("POST", "/predict", {"inputs": inputs})
    assert status == 422 and reply["error"]["code"] == code, reply


def test_large_body_same_outputs_as_the_model(server):
    from training.store import ModelStore

    model, _ = ModelStore(server.models_dir).load("digits")
    x = np.random.default_rng(2).uniform(0, 16, size=(500, 64)).round(2)
    status, reply = server.request("POST", "/predict", {"inputs": x.tolist()})
    assert status == 200 and len(reply["labels"]) == 500
    want = model.predict(x.astype(np.float32))
    assert np.array_equal(np.asarray(reply["outputs"], dtype=np.float32), want)
    status, v2 = server.request(
        "POST",
        "/v2/models/digits/infer",
        {"inputs": [{"name": "input", "shape": [500, 64], "datatype": "FP32", "data": x.tolist()}]},
    )
    assert status == 200
    got = np.asarray(v2["outputs"][0]["data"], dtype=np.float32).reshape(500, 10)
    assert np.array_equal(got, want)
