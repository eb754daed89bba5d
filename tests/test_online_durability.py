"""Online learning under crashes, across workers: SIGKILL at random moments, then the
step count and the weights must match a clean replay of the acknowledged steps."""

from __future__ import annotations

import http.client
import json
import random
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from tests.server import Server, make_store
from training.data import load_digits
from training.online import apply_step
from training.store import ModelStore

TOKEN = "durable"


def batch(k: int, digits) -> tuple[np.ndarray, list[str]]:
    """Step k always sends the same rows, so a replay knows what step k was."""
    idx = np.arange(k * 8, k * 8 + 8) % len(digits.x)
    return digits.x[idx], [str(v) for v in digits.y[idx]]


class Replayer:
    """Applies steps 1..n in one process, the way a clean replay would."""

    def __init__(self, store_dir, digits) -> None:
        self.model, _ = ModelStore(store_dir).load("digits", 1)
        self.digits = digits
        self.done = 0

    def digest_after(self, n: int) -> str:
        import hashlib

        assert n >= self.done
        with threadpool_limits(1, user_api="blas"):  # as in the server's workers
            while self.done < n:
                x, labels = batch(self.done, self.digits)
                m = self.model
                self.model = apply_step(
                    m,
                    x.astype(m.network.dtype),
                    m.targets_from_labels(labels),
                    m.optimizer.learning_rate,
                    m.optimizer.momentum,
                ).model
                self.done += 1
        h = hashlib.sha256(self.model.network.params.tobytes())
        h.update(self.model.optimizer_state["velocity"].tobytes())
        return h.hexdigest()


def send_steps(port: int, start: int, digits, replies: list, stop: threading.Event) -> None:
    """Send steps start+1, start+2, ... until stopped or the server dies under us.

    Only records what came back, as ``(step sent, status, body bytes)``; a connection
    error ends the run as ``(step sent, None, error)``.  The test's own thread judges
    them after ``join``: an assert failing here would only be a pytest warning."""
    k = start
    while not stop.is_set():
        x, labels = batch(k, digits)
        body = json.dumps({"inputs": x.tolist(), "targets": labels}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(
                "POST",
                "/train-step",
                body=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            )
            resp = conn.getresponse()
            replies.append((k + 1, resp.status, resp.read()))
        except (OSError, http.client.HTTPException) as exc:
            replies.append((k + 1, None, repr(exc)))  # this step may or may not have landed
            return
        finally:
            conn.close()
        k += 1


def acknowledged(replies: list, start: int) -> int:
    """Check the sender's replies (in the test's thread); the last step acknowledged."""
    last = start
    for i, (sent, status, body) in enumerate(replies):
        assert sent == start + i + 1, replies[: i + 1]
        if status is None:  # only a connection error counts as the server dying
            assert i == len(replies) - 1, f"sent on after a crash: {replies[i:]}"
            break
        assert status == 200, (status, body[:300])
        reply = json.loads(body)
        assert reply["step"] == sent, reply  # consecutive, no gaps
        last = sent
    return last


def test_acknowledged_steps_survive_sigkill(tmp_path):
    digits = load_digits()
    store_dir = make_store(tmp_path / "models")
    replay = Replayer(store_dir, digits)
    rng = random.Random(7)
    acked_total = 0
    for _ in range(20):  # 20 crashes, each at a random moment of a run of steps
        server = Server(store_dir, train_token=TOKEN, workers=2, snapshot_every=0).start()
        status, info = server.request("GET", "/models/digits")
        assert status == 200, info
        steps = info["online_steps"]
        # everything acknowledged is there; at most one unacknowledged step on top
        assert steps in (acked_total, acked_total + 1), (steps, acked_total)
        assert info["weights_sha256"] == replay.digest_after(steps)
        replies: list = []
        stop = threading.Event()
        sender = threading.Thread(
            target=send_steps, args=(server.port, steps, digits, replies, stop)
        )
        sender.start()
        time.sleep(rng.uniform(0.05, 0.6))  # when to crash, not a bound on anything
        server.kill()
        stop.set()
        sender.join(timeout=60)
        assert not sender.is_alive()
        acked_total = acknowledged(replies, steps)
    with Server(store_dir, train_token=TOKEN, workers=2, snapshot_every=0) as server:
        info = server.request("GET", "/models/digits")[1]
        assert info["online_steps"] in (acked_total, acked_total + 1)
        assert info["weights_sha256"] == replay.digest_after(info["online_steps"])
    assert acked_total > 20  # the run did train, not only restart


def test_automatic_snapshot_compacts_the_journal(tmp_path):
    digits = load_digits()
    store_dir = make_store(tmp_path / "models")
    with Server(store_dir, train_token=TOKEN, workers=2, snapshot_every=3) as s:
        for k in range(7):
            x, labels = batch(k, digits)
            status, reply = s.request(
                "POST", "/train-step", {"inputs": x.tolist(), "targets": labels}, token=TOKEN
            )
            assert status == 200, reply
        info = s.request("GET", "/models/digits")[1]
    store = ModelStore(store_dir)
    assert store.versions("digits") == [1, 2, 3]
    assert [
        (
            store.read_manifest("digits", v).parent_version,
            store.read_manifest("digits", v).online_steps,
        )
        for v in (2, 3)
    ] == [(1, 3), (2, 3)]
    assert info["served_version"] == 3 and info["online_steps"] == 1
    # the journal holds the new base and the one step since, nothing older
    from training.journal import FileJournal

    kinds = [r.kind for _, r in FileJournal(store_dir / "digits").read(None)[0]]
    assert kinds == ["base", "step"]


def server_side_unread(port: int, client_port: int) -> int | None:
    """Bytes the server has not read yet from our connection (its socket's receive
    queue in /proc/net/tcp), or None while no such established socket exists."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if (
            state == "01"
            and int(local.split(":")[1], 16) == port
            and int(remote.split(":")[1], 16) == client_port
        ):
            return int(fields[4].split(":")[1], 16)
    return None


def connection_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_finishes_a_step_in_flight_and_exits_0(tmp_path):
    """A step is half sent when SIGTERM arrives: the worker has read its headers and
    part of its body (evidence: the kernel's receive queue of the server's socket is
    empty), and is waiting for the rest.  The server stops taking connections, the rest
    of the body goes out, and the client still gets a whole 200; the master exits 0 and
    the step is in the journal."""
    digits = load_digits()
    store_dir = make_store(tmp_path / "models")
    replay = Replayer(store_dir, digits)
    server = Server(store_dir, train_token=TOKEN, workers=2, snapshot_every=0).start()
    x, labels = batch(0, digits)
    body = json.dumps({"inputs": x.tolist(), "targets": labels}).encode()
    head = (
        "POST /train-step HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    half = len(body) // 2
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    try:
        sock.sendall(head + body[:half])
        client_port = sock.getsockname()[1]
        for _ in range(600):  # a count: until a worker has read what was sent
            if server_side_unread(server.port, client_port) == 0:
                break
            time.sleep(0.01)
        assert server_side_unread(server.port, client_port) == 0, "no worker read the request"
        proc = server.proc
        proc.send_signal(signal.SIGTERM)
        for _ in range(600):  # a count: until the listening sockets are closed
            if connection_refused(server.port):
                break
            time.sleep(0.05)
        assert connection_refused(server.port), "still accepting connections after SIGTERM"
        assert proc.poll() is None  # still draining the step in flight
        sock.sendall(body[half:])
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        status, reply = resp.status, resp.read()
    finally:
        sock.close()
    assert status == 200, reply
    assert json.loads(reply)["step"] == 1  # whole: the JSON parses
    code = server.stop()  # already signalled: waits for the exit
    assert code == 0
    with Server(store_dir, train_token=TOKEN, workers=2) as again:
        info = again.request("GET", "/models/digits")[1]
    assert info["online_steps"] == 1
    assert info["weights_sha256"] == replay.digest_after(1)
