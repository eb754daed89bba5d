"""schemathesis on more seeds, on the routes issue 17 touched (V2, train-step and
snapshot with their Idempotency-Key), with and without the token: no 5xx."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import serve_copy

TOKEN = "fuzz-seeds"
ST = Path(sys.executable).parent / "st"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_copy(tmp_path_factory.mktemp("seeds"), train_token=TOKEN, snapshot_every=0)


@pytest.mark.parametrize(("seed", "with_token"), [(2, True), (3, False)], ids=["token", "no-token"])
def test_schemathesis_v2_and_training_routes(server, seed, with_token, tmp_path):
    cmd = [
        str(ST),
        "run",
        f"http://127.0.0.1:{server.port}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--include-path-regex",
        "^/v2|train-step|snapshot",
        "--max-examples",
        "10",
        "--workers",
        "1",
        "--seed",
        str(seed),
    ]
    if with_token:
        cmd += ["-H", f"Authorization: Bearer {TOKEN}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-4000:]
    selected = re.search(r"Selected: (\d+)/", out.stdout)
    assert selected and int(selected.group(1)) == 13, out.stdout[-4000:]  # 10 V2 + 3 training
