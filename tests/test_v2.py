"""The Open Inference Protocol, spoken to by a client no one here wrote: tritonclient."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.server import Server, make_store, serve_copy
from training.data import load_digits

TOKEN = "v2-token"


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_copy(tmp_path_factory.mktemp("v2"), train_token=TOKEN, snapshot_every=0)


@pytest.fixture
def client(server):
    c = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield c
    c.close()


def test_health_and_metadata(client, server):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "1")
    assert not client.is_model_ready("nope")
    meta = client.get_model_metadata("digits")
    assert meta["name"] == "digits" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["outputs"][0] == {"name": "output", "datatype": "FP32", "shape": [-1, 10]}
    assert meta["outputs"][1]["name"] == "label" and meta["outputs"][1]["datatype"] == "BYTES"
    status, body = server.request("GET", "/v2")
    assert status == 200 and "binary_tensor_data" in body["extensions"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_equals_predict(client, server, digits, binary):
    x = digits.x[:25].astype(np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("output", binary_data=binary),
        httpclient.InferRequestedOutput("label", binary_data=binary),
    ]
    result = client.infer("digits", [inp], outputs=outputs, request_id="req-7")
    got = result.as_numpy("output")
    _, mine = server.request("POST", "/predict", {"inputs": x.tolist()})
    assert got.shape == (25, 10) and got.dtype == np.float32
    assert np.array_equal(got, np.array(mine["outputs"], dtype=np.float32))
    assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")] == mine[
        "labels"
    ]
    assert result.get_response()["id"] == "req-7"
    # no outputs named: all of them, in binary (the client's default)
    result = client.infer("digits", [inp], model_version="1")
    assert np.array_equal(result.as_numpy("output"), got)


def test_fp64_input_and_nested_json_data(server, digits):
    x = digits.x[:3]
    body = {
        "inputs": [{"name": "input", "shape": [3, 64], "datatype": "FP64", "data": x.tolist()}],
        "outputs": [{"name": "output"}],
    }
    status, reply = server.request("POST", "/v2/models/digits/infer", body)
    assert status == 200 and reply["outputs"][0]["shape"] == [3, 10]
    _, mine = server.request("POST", "/predict", {"inputs": x.tolist()})
    assert np.allclose(np.array(reply["outputs"][0]["data"]).reshape(3, 10), mine["outputs"])


def v2_error(server, path, body=None, raw=None, headers=None) -> tuple[int, dict]:
    status, reply = server.request("POST", path, body, raw=raw, headers=headers)
    assert set(reply) == {"error"} and isinstance(reply["error"], str) and reply["error"], reply
    return status, reply


def infer_body(shape=(1, 64), datatype="FP32", name="input", values=None, **extra) -> dict:
    """A JSON infer request with one all-zero tensor; each error case changes one thing."""
    n = shape[0] * shape[1] if values is None else values
    tensor = {"name": name, "shape": list(shape), "datatype": datatype, "data": [0] * n}
    return {"inputs": [tensor], **extra}


@pytest.mark.parametrize(
    "path,body,status,words",
    [
        ("/v2/models/nope/infer", infer_body(), 404, "nope"),
        ("/v2/models/digits/versions/9/infer", infer_body(), 404, "9"),
        ("/v2/models/digits/infer", infer_body((1, 63)), 400, "[n, 64]"),
        ("/v2/models/digits/infer", infer_body((2, 64), values=64), 400, "64 values"),
        ("/v2/models/digits/infer", infer_body(datatype="INT8"), 400, "INT8"),
        ("/v2/models/digits/infer", infer_body(name="pixels"), 400, "pixels"),
        ("/v2/models/digits/infer", infer_body(outputs=[{"name": "logits"}]), 400, "logits"),
        ("/v2/models/digits/infer", {"inputs": "x"}, 400, "inputs"),
    ],
)
def test_protocol_errors(server, path, body, status, words):
    got, reply = v2_error(server, path, body)
    assert got == status and words in reply["error"]


def test_bad_binary_header_length(server):
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 64],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 256},
                }
            ]
        }
    ).encode()
    data = np.zeros(64, dtype="<f4").tobytes()
    for length, words in [
        (str(len(head) + 9999), "Inference-Header-Content-Length"),
        ("abc", "Inference-Header-Content-Length"),
        (str(len(head) - 5), "invalid inference request"),
    ]:
        status, reply = v2_error(
            server,
            "/v2/models/digits/infer",
            raw=head + data,
            headers={"Inference-Header-Content-Length": length},
        )
        assert status == 400 and words in reply["error"]
    # binary_data_size past the end of the body
    short = head + data[:100]
    status, reply = v2_error(
        server,
        "/v2/models/digits/infer",
        raw=short,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert status == 400 and "binary_data_size" in reply["error"]


def test_train_extension_matches_train_step_rules(server, digits):
    x = digits.x[:8]
    body = {
        "inputs": [
            {"name": "input", "shape": [8, 64], "datatype": "FP32", "data": x.ravel().tolist()},
            {
                "name": "target",
                "shape": [8],
                "datatype": "BYTES",
                "data": [str(v) for v in digits.y[:8]],
            },
        ],
        "parameters": {"learning_rate": 0.01},
    }
    status, reply = v2_error(server, "/v2/models/digits/train", body)
    assert status == 401
    before = server.request("GET", "/models/digits")[1]["online_steps"]
    status, reply = server.request("POST", "/v2/models/digits/train", body, token=TOKEN)
    assert status == 200 and reply["step"] == before + 1 and reply["version"] == 1
    assert set(reply) == {"model", "version", "step", "loss_before", "loss_after"}
    body["inputs"][1] = {
        "name": "target",
        "shape": [8, 10],
        "datatype": "FP32",
        "data": np.eye(10)[digits.y[:8]].ravel().tolist(),
    }
    assert server.request("POST", "/v2/models/digits/train", body, token=TOKEN)[0] == 200
    body["parameters"] = {"momentum": 3}
    status, reply = v2_error(
        server, "/v2/models/digits/train", body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 400 and "momentum" in reply["error"]


def test_client_raises_on_protocol_error(client):
    inp = httpclient.InferInput("input", [1, 63], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 63), dtype=np.float32), binary_data=True)
    with pytest.raises(InferenceServerException, match=r"\[n, 64\]"):
        client.infer("digits", [inp])


def test_train_extension_gives_the_weights_of_train_step(tmp_path, digits):
    """The same steps through /v2/models/digits/train on one server and /train-step on
    another, each on its own copy of the store: equal replies and equal weights."""
    steps = [
        (slice(0, 8), "labels", {}),
        (slice(8, 24), "vectors", {"learning_rate": 0.05}),
        (slice(24, 28), "labels", {"learning_rate": 0.2, "momentum": 0.5}),
    ]
    with (
        Server(make_store(tmp_path / "a"), train_token=TOKEN, snapshot_every=0) as plain,
        Server(make_store(tmp_path / "b"), train_token=TOKEN, snapshot_every=0) as v2,
    ):
        for rows, kind, params in steps:
            x, y = digits.x[rows], digits.y[rows]
            labels = [str(v) for v in y]
            vectors = np.eye(10)[y]
            targets = labels if kind == "labels" else vectors.tolist()
            body = {"inputs": x.tolist(), "targets": targets, **params}
            status, a = plain.request("POST", "/train-step", body, token=TOKEN)
            assert status == 200, a
            target = (
                {"name": "target", "shape": [len(y)], "datatype": "BYTES", "data": labels}
                if kind == "labels"
                else {
                    "name": "target",
                    "shape": [len(y), 10],
                    "datatype": "FP32",
                    "data": vectors.ravel().tolist(),
                }
            )
            tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
            v2_body = {"inputs": [{**tensor, "data": x.ravel().tolist()}, target]}
            if params:
                v2_body["parameters"] = params
            status, b = v2.request("POST", "/v2/models/digits/train", v2_body, token=TOKEN)
            assert status == 200, b
            assert a == b
            digests = [s.request("GET", "/models/digits")[1]["weights_sha256"] for s in (plain, v2)]
            assert digests[0] == digests[1], (rows, kind, params)
