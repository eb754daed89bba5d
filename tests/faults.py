"""Real storage faults for the service tests: a small tmpfs, read-only remounts, and
strace attached to live gunicorn workers to make chosen system calls fail."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from tests.server import DEFAULT_MODEL, Server
from training.online import apply_step
from training.store import ModelStore

STRACE = shutil.which("strace")


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")


def need_strace() -> None:
    if STRACE is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    if os.geteuid() != 0:
        pytest.skip("attaching strace to the server's workers needs root (or ptrace rights)")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` holding a copy of the default store."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        (path / "digits").mkdir()
        shutil.copytree(DEFAULT_MODEL, path / "digits" / "1")
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def batch(k: int, digits) -> tuple[np.ndarray, list[str]]:
    """The k-th acknowledged step always sends the same rows, so a replay knows it."""
    idx = np.arange(k * 8, k * 8 + 8) % len(digits.x)
    return digits.x[idx], [str(v) for v in digits.y[idx]]


def step_body(k: int, digits) -> dict:
    x, labels = batch(k, digits)
    return {"inputs": x.tolist(), "targets": labels}


def replay_digest(store_dir: Path, n: int, digits) -> str:
    """weights_sha256 after steps 0..n-1 on version 1, replayed in this process."""
    model, _ = ModelStore(store_dir).load("digits", 1)
    with threadpool_limits(1, user_api="blas"):  # as in the server's workers
        for k in range(n):
            x, labels = batch(k, digits)
            model = apply_step(
                model,
                x.astype(model.network.dtype),
                model.targets_from_labels(labels),
                model.optimizer.learning_rate,
                model.optimizer.momentum,
            ).model
    h = hashlib.sha256(model.network.params.tobytes())
    h.update(model.optimizer_state["velocity"].tobytes())
    return h.hexdigest()


def total_steps(server: Server) -> int:
    """Online steps behind what is served: its own, plus those its version's snapshot
    chain holds (read from the manifests)."""
    info = server.request("GET", "/models/digits")[1]
    steps, version = info["online_steps"], info["served_version"]
    while version is not None:
        manifest = json.loads(
            (server.models_dir / "digits" / str(version) / "manifest.json").read_text()
        )
        steps += manifest["online_steps"]
        version = manifest["parent_version"]
    return steps


def workers(server: Server) -> list[int]:
    assert server.proc is not None
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


@contextlib.contextmanager
def strace(pids: list[int], path: Path | None, *injects: str, log: Path) -> Iterator[None]:
    """strace attached to ``pids`` (all their threads), failing the system calls on
    ``path`` (any, for None) as ``injects`` say, until the block ends (then it detaches)."""
    syscalls = sorted({i.split(":")[0] for i in injects})
    cmd = [
        STRACE,
        "-f",
        "-o",
        str(log),
        *(["-P", str(path)] if path is not None else []),
        "-e",
        f"trace={','.join(syscalls)}",
    ]
    for i in injects:
        cmd += ["-e", f"inject={i}"]
    for pid in pids:
        cmd += ["-p", str(pid)]
    said = log.with_suffix(".stderr")
    with open(said, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=err)
    try:
        # strace says "Process N attached with T threads" once it has them all.
        deadline = time.monotonic() + 20  # ends a hung attach only; no timing asserted
        while said.read_text().count(" attached") < len(pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert said.read_text().count(" attached") >= len(pids), (said.read_text(), cmd)
        yield
    finally:
        proc.terminate()  # strace detaches from every tracee on SIGTERM
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # Seen after a tracee was SIGKILLed: strace waits on it. Killing strace
            # detaches the rest (the kernel ends a dead tracer's ptrace links).
            proc.kill()
            proc.wait(timeout=10)
