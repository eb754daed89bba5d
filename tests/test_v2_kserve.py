"""The Open Inference Protocol, spoken to by a second client no one here wrote: the KServe
Python SDK's REST client (``kserve.InferenceRESTClient``), beside tritonclient (test_v2.py).

It reads the health bodies (``{"live": true}``), not only the status; its REST client has no
metadata call, so the metadata replies are checked against the SDK's own V2 data models.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest.v2_datamodels import (
    ModelMetadataResponse,
    ModelReadyResponse,
    ServerLiveResponse,
    ServerMetadataResponse,
    ServerReadyResponse,
)

from tests.server import Server, make_store, serve_copy
from training.data import load_digits


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_copy(tmp_path_factory.mktemp("kserve"), snapshot_every=0)


def run(server, call):
    """Run ``call(client, base_url)`` on a fresh client in its own event loop."""

    async def go():
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
        try:
            return await call(client, f"http://127.0.0.1:{server.port}")
        finally:
            await client.close()

    return asyncio.run(go())


def test_health_through_the_sdk(server):
    async def call(c, url):
        return (
            await c.is_server_live(url),
            await c.is_server_ready(url),
            (await c.is_model_ready(url, "digits")),
        )

    assert run(server, call) == (True, True, True)
    assert server.request("GET", "/v2/health/live") == (200, {"live": True})
    assert server.request("GET", "/v2/health/ready") == (200, {"ready": True})


def test_metadata_matches_the_sdk_models(server):
    status, body = server.request("GET", "/v2")
    assert status == 200
    assert ServerMetadataResponse.model_validate(body).name == "bpserve"
    ServerLiveResponse.model_validate(server.request("GET", "/v2/health/live")[1])
    ServerReadyResponse.model_validate(server.request("GET", "/v2/health/ready")[1])
    meta = ModelMetadataResponse.model_validate(server.request("GET", "/v2/models/digits")[1])
    assert [t.name for t in meta.inputs] == ["input"] and meta.inputs[0].shape == [-1, 64]
    assert [t.name for t in meta.outputs] == ["output", "label"]
    ready = ModelReadyResponse.model_validate(server.request("GET", "/v2/models/digits/ready")[1])
    assert ready.ready is True


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_through_the_sdk_equals_predict(server, binary):
    x = load_digits().x[:7].astype(np.float32)
    inp = InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    req = InferRequest(
        "digits",
        [inp],
        request_id="k-1",
        request_outputs=[RequestedOutput("output", {"binary_data": binary})],
    )

    async def call(c, url):
        return await c.infer(url, req, model_name="digits")

    res = run(server, call)
    got = res.outputs[0].as_numpy()
    _, mine = server.request("POST", "/predict", {"inputs": x.tolist()})
    assert res.id == "k-1" and res.outputs[0].name == "output"
    assert got.shape == (7, 10)
    assert np.array_equal(got.astype(np.float32), np.array(mine["outputs"], dtype=np.float32))


def test_not_ready_is_false_with_the_protocol_body(tmp_path):
    """Before the default model is there, /v2/health/ready says so in its body (503)."""
    store = make_store(tmp_path / "models")
    with Server(store, default_model="absent").start(ready=False) as s:
        status, body = s.request("GET", "/v2/health/ready")
        assert (status, body) == (503, {"ready": False})
        assert s.request("GET", "/v2/health/live") == (200, {"live": True})
