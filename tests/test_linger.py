"""A thread that answered a kept-alive connection waits briefly on it for the next
request (service/worker.py ``handle``): requests that arrive together, late or on a busy
worker are all answered, in order, and no connection waits behind a lingering one."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

from tests.server import Server, make_store

HEADERS = {"Content-Type": "application/json"}


def body(value: float) -> bytes:
    return json.dumps({"inputs": [[value] * 64]}).encode()


def raw_request(value: float) -> bytes:
    b = body(value)
    head = (
        "POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(b)}\r\n\r\n"
    )
    return head.encode() + b


def answer(port: int, value: float) -> list:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/predict", body=body(value), headers=HEADERS)
        return json.loads(conn.getresponse().read())["outputs"]
    finally:
        conn.close()


def read_replies(sock: socket.socket, count: int) -> list[dict]:
    """``count`` HTTP replies read off one socket, bodies parsed."""
    out, buf = [], b""
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(out)} replies"
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = int(
            next(
                ln.split(b":", 1)[1]
                for ln in head.split(b"\r\n")
                if ln.lower().startswith(b"content-length:")
            )
        )
        while len(buf) < length:
            buf += sock.recv(65536)
        out.append(json.loads(buf[:length]))
        buf = buf[length:]
    return out


def test_pipelined_requests_are_all_answered_in_order(tmp_path):
    values = [0.0, 3.0, 7.0, 11.0, 15.0]
    with Server(make_store(tmp_path / "models"), workers=1, log_requests="false") as srv:
        expected = [answer(srv.port, v) for v in values]
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            sock.sendall(b"".join(raw_request(v) for v in values))  # one write, five requests
            got = read_replies(sock, len(values))
    assert [r["outputs"] for r in got] == expected
    assert len({json.dumps(e) for e in expected}) == len(values)  # the order is visible


def test_a_request_after_a_pause_is_answered_on_the_same_connection(tmp_path):
    # Longer than the thread lingers: the connection has gone back to gthread's poller.
    with Server(make_store(tmp_path / "models"), workers=1, log_requests="false") as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        try:
            names = []
            for pause in (0, 0.05, 0.3, 0):
                time.sleep(pause)
                conn.request("POST", "/predict", body=body(1.0), headers=HEADERS)
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
                names.append(conn.sock.getsockname())
        finally:
            conn.close()
    assert len(set(names)) == 1  # never reconnected


def test_no_connection_waits_behind_lingering_threads(tmp_path):
    # Two threads, two clients that keep a second request in flight behind the one
    # being answered (pipelined), and no recycling: if both threads stayed with their
    # clients, a third connection would never get a thread.
    with Server(
        make_store(tmp_path / "models"),
        workers=1,
        threads=2,
        keepalive_requests=0,
        log_requests="false",
    ) as srv:
        stop = threading.Event()
        served = [0, 0]

        def hammer(i: int) -> None:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
                sock.sendall(raw_request(2.0) * 2)
                while not stop.is_set():
                    read_replies(sock, 1)
                    served[i] += 1
                    sock.sendall(raw_request(2.0))

        busy = [threading.Thread(target=hammer, args=(i,)) for i in range(2)]
        for t in busy:
            t.start()
        try:
            while min(served) < 20:
                time.sleep(0.01)
            t0 = time.monotonic()
            for _ in range(5):
                assert answer(srv.port, 4.0)
            waited = time.monotonic() - t0
        finally:
            stop.set()
            for t in busy:
                t.join(30)
    assert min(served) >= 20
    # Seen here: 0.03 s with the rule, 8 and 16 s with lingering unbounded (the third
    # connection got a thread only when a client happened to stall).
    assert waited < 2, f"five requests on new connections took {waited:.1f} s"
