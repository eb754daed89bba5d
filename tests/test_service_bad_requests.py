"""The service over real HTTP (tests/server.py): bad requests get a clear 4xx, and the
limits on body size and rows."""

from __future__ import annotations

import json
import socket

import pytest

from tests.server import Server

BAD_REQUESTS = [
    # (method, path, body or raw, headers, status, code)
    ("POST", "/predict", b'{"inputs": [[1, 2,', None, 400, "malformed_json"),
    (
        "POST",
        "/predict",
        b'{"inputs": [[0]]}',
        {"Content-Type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    ("GET", "/predict", None, None, 405, "method_not_allowed"),
    ("GET", "/nowhere", None, None, 404, "not_found"),
    ("POST", "/predict", {"inputs": [[0.0] * 63]}, None, 422, "wrong_feature_count"),
    # Rows that are not all numbers take the cell path (service/cells.py), which names
    # the row and the column (holes are filled: tests/test_tables.py; a format-1 model
    # refuses them: tests/test_format1.py).
    ("POST", "/predict", {"inputs": [[None] * 63]}, None, 422, "wrong_feature_count"),
    ("POST", "/predict", {"inputs": [{"pixel_0_0": "x"}]}, None, 422, "invalid_cell"),
    ("POST", "/predict", {"inputs": [{"pixel_0_0": 1, "nope": 2}]}, None, 422, "unknown_column"),
    ("POST", "/predict", {"inputs": [[1e39] * 64]}, None, 422, "non_finite_input"),
    ("POST", "/predict", {"inputs": []}, None, 422, "empty_batch"),
    ("POST", "/predict", {"inputs": [[0.0] * 64, [0.0] * 3]}, None, 422, "ragged_rows"),
    ("POST", "/predict", {"inputs": [["a"] * 64]}, None, 422, "invalid_cell"),
    ("POST", "/predict", {"inputs": [[0.0] * 64], "extra": 1}, None, 422, "invalid_request"),
    ("POST", "/predict", {"inputs": [[0.0] * 64], "model": "nope"}, None, 404, "unknown_model"),
    (
        "POST",
        "/models/digits/versions/9/predict",
        {"inputs": [[0.0] * 64]},
        None,
        404,
        "unknown_version",
    ),
    ("POST", "/predict", {"inputs": [[0.0] * 64], "model": "../etc"}, None, 404, "unknown_model"),
    ("POST", "/predict", b"[1, 2]", None, 422, "invalid_request"),
]


@pytest.mark.parametrize(
    "method,path,body,headers,status,code",
    BAD_REQUESTS,
    ids=[f"{c[4]}-{c[5]}" for c in BAD_REQUESTS],
)
def test_bad_requests_get_a_clear_4xx(server, method, path, body, headers, status, code):
    raw = body if isinstance(body, bytes) else None
    got, reply, head = server.call(method, path, None if raw else body, raw=raw, headers=headers)
    assert got == status, reply
    assert int(head["X-Bpserve-Worker"]) > 0  # errors name their worker too
    assert reply["error"]["code"] == code and reply["error"]["message"]
    assert "Traceback" not in str(reply)


def test_limits_body_size_and_rows(store_dir):
    with Server(store_dir, max_body_bytes=2048, max_rows=3) as s:
        status, reply = s.request("POST", "/predict", {"inputs": [[0.0] * 64] * 40})
        assert status == 413 and reply["error"]["code"] in (
            "body_too_large",
            "request_entity_too_large",
        )
        status, reply = s.request("POST", "/predict", {"inputs": [[0] * 64] * 4})
        assert status == 422 and reply["error"]["code"] == "too_many_rows"


@pytest.mark.parametrize("path", ["/predict", "/v2/models/digits/infer"])
def test_a_body_shorter_than_its_length_is_refused(server, path):
    # The client says 200 bytes, sends 19 and stops sending: the body is read from the
    # server's stream directly (service/bodies.py), and a short one is a 400, not a
    # parse error of half a body and never a 500.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 200\r\n\r\n"
        )
        s.sendall(head.encode() + b'{"inputs": [[0.0, 1')
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.split()[1] == b"400", reply
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    message = body["error"]["message"] if path == "/predict" else body["error"]
    assert "after 19 of 200 bytes" in message
