"""A kept-alive connection is closed after BPSERVE_KEEPALIVE_REQUESTS requests or
BPSERVE_KEEPALIVE_SECONDS seconds, its last request answered in full (service/worker.py).
"""

from __future__ import annotations

import http.client
import json
import time

import pytest

from tests.server import Server, make_store, serve_copy

ROW = json.dumps({"inputs": [[0.5] * 64]}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_copy(
        tmp_path_factory.mktemp("recycle"), keepalive_requests=5, log_requests="false"
    )


def send(conn: http.client.HTTPConnection) -> tuple[int, str | None]:
    conn.request("POST", "/predict", body=ROW, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert len(body["outputs"]) == 1
    return resp.status, resp.getheader("Connection")


def test_every_fifth_reply_closes_the_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    sockets, closes = [], []
    try:
        for i in range(12):
            if conn.sock is None:
                conn.connect()
            name = conn.sock.getsockname()
            status, connection = send(conn)
            assert status == 200
            sockets.append(name)
            closes.append(i if (connection or "").lower() == "close" else None)
    finally:
        conn.close()
    assert [i for i in closes if i is not None] == [4, 9]
    # Five requests on each connection, then a new one (the client reconnected).
    assert len(set(sockets[0:5])) == 1 and len(set(sockets[5:10])) == 1
    assert len({sockets[0], sockets[5], sockets[10]}) == 3


def test_a_connection_older_than_keepalive_seconds_is_closed(tmp_path):
    with Server(
        make_store(tmp_path / "models"), keepalive_requests=0, keepalive_seconds=0.5
    ) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        try:
            assert send(conn)[1] != "close"
            time.sleep(1.0)
            status, connection = send(conn)
            assert status == 200 and (connection or "").lower() == "close"
        finally:
            conn.close()
