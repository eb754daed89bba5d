"""The service over real HTTP (tests/server.py): the train and predict tokens' rules."""

from __future__ import annotations

from tests.server import Server
from tests.train_token import TOKEN


def test_token_rules(server, store_dir):
    step = {"inputs": [[0.0] * 64], "targets": ["3"]}
    assert server.request("POST", "/train-step", step)[0] == 401
    status, reply = server.request("POST", "/train-step", step, token="wrong")
    assert status == 401 and reply["error"]["message"] == "wrong token"
    assert (
        server.request("POST", "/train-step", step, headers={"Authorization": "Basic abc"})[0]
        == 401
    )
    assert server.request("POST", "/models/digits/load", {"version": 1})[0] == 401
    assert server.request("POST", "/models/digits/snapshot")[0] == 401
    assert server.request("POST", "/train-step", step, token=TOKEN)[0] == 200
    # no token configured: state-changing endpoints are off
    with Server(store_dir) as open_server:
        status, reply = open_server.request("POST", "/train-step", step, token=TOKEN)
        assert status == 403 and "online training disabled" in reply["error"]["message"]
    # a predict token, read from the environment
    with Server(store_dir, predict_token="p") as guarded:
        assert guarded.request("POST", "/predict", {"inputs": [[0.0] * 64]})[0] == 401
        assert guarded.request("POST", "/predict", {"inputs": [[0.0] * 64]}, token="p")[0] == 200


def test_token_from_file(store_dir, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    with Server(store_dir, train_token_file=secret) as s:
        step = {"inputs": [[0.0] * 64], "targets": ["1"]}
        assert s.request("POST", "/train-step", step, token="from-file")[0] == 200
