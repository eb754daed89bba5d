"""A real gunicorn server on a free loopback port, and a small HTTP client for it."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "digits" / "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_store(path: Path) -> Path:
    """A temporary store holding a copy of the committed default model."""
    (path / "digits").mkdir(parents=True)
    shutil.copytree(DEFAULT_MODEL, path / "digits" / "1")
    return path


def serve_copy(tmp: Path, **env: Any) -> Iterator[Server]:
    """A running server on a fresh copy of the default store under ``tmp`` (for fixtures)."""
    with Server(make_store(tmp / "models"), **env) as server:
        yield server


class Server:
    def __init__(self, models_dir: Path, *, app: str | None = None, **env: Any) -> None:
        """``app``: another WSGI app (module:name) under the same gunicorn settings and
        worker, for the benchmarks' floor cases; bpserve's own when None."""
        self.models_dir = models_dir
        self.app = app
        self.port = free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "BPSERVE_MODELS_DIR": str(models_dir),
            "BPSERVE_BIND": f"127.0.0.1:{self.port}",
            "BPSERVE_RELOAD_INTERVAL": "0.3",
            **{f"BPSERVE_{k.upper()}": str(v) for k, v in env.items()},
        }
        self.proc: subprocess.Popen | None = None
        self.log = models_dir.parent / f"server-{self.port}.log"

    def start(self, ready: bool = True) -> Server:
        self._logf = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:service.gunicorn_conf"]
            + ([self.app] if self.app else []),
            cwd=ROOT,
            env=self.env,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so kill() takes the workers too
        )
        path = "/readyz" if ready else "/healthz"
        for _ in range(600):  # 0.1 s apart: a count that only ends a server that hangs
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()}")
            try:
                if self.request("GET", path)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready:\n{self.log.read_text()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        self._logf.close()
        return code

    def kill(self) -> None:
        """SIGKILL the master and every worker at once: a crash, nothing flushed."""
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self._logf.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        status, payload, _ = self.call(method, path, body, token=token, headers=headers, raw=raw)
        return status, payload

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, http.client.HTTPMessage]:
        """One request on a fresh connection: status, decoded body and response headers."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        hdrs = {"Content-Type": "application/json"} if (body is not None or raw is not None) else {}
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        hdrs.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        ctype = resp.getheader("Content-Type", "")
        decoded = json.loads(payload) if "json" in ctype else payload.decode()
        return resp.status, decoded, resp.headers

    def from_every_worker(
        self, method: str, path: str, body: Any = None, *, workers: int = 2, limit: int = 2000
    ) -> dict[int, list[tuple[int, Any]]]:
        """Ask on fresh connections until ``workers`` different workers have answered
        (``X-Bpserve-Worker``), at most ``limit`` times; the replies grouped by worker.
        Which worker takes a connection is the kernel's choice, hence the count."""
        seen: dict[int, list[tuple[int, Any]]] = {}
        for _ in range(limit):
            status, payload, headers = self.call(method, path, body)
            seen.setdefault(int(headers["X-Bpserve-Worker"]), []).append((status, payload))
            if len(seen) >= workers:
                break
        return seen

    def after_watchers_looked(
        self, model: str = "digits", *, workers: int = 2, limit: int = 3000
    ) -> dict[int, dict]:
        """``GET /models/<model>`` from every worker once its reload watcher has begun
        and finished a whole poll after this call (its ``polls`` grew by two since the
        first answer: the poll that ended first may have begun before the call).
        Bounded by a count of requests; the replies' last state per worker."""
        first: dict[int, int] = {}
        last: dict[int, dict] = {}
        for _ in range(limit):
            status, info, headers = self.call("GET", f"/models/{model}")
            assert status == 200, info
            pid = int(headers["X-Bpserve-Worker"])
            polls = info["watcher"]["polls"]
            first.setdefault(pid, polls)
            if polls >= first[pid] + 2:
                last[pid] = info
            if len(last) >= workers:
                return last
            time.sleep(0.01)
        raise AssertionError(f"watchers did not poll twice within {limit} requests: {first}")

    def __enter__(self) -> Server:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
