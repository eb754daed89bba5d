"""bench/peer_bench.py's pairing and bench/grpc_load.py's HTTP client, so that what
BENCHMARKS.md's "bpserve beside MLServer" is made from keeps working.

Nothing here needs MLServer or wrk: the pairing is checked on given figures, and the
Python client's HTTP mode (standard library only) against a real bpserve.  Its gRPC mode
needs MLServer's own environment and is checked by the benchmark itself (labels equal
to the REST answer's before timing).  No speed is asserted: shared machines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from grpc_load import closed_loop, http_sender, percentile
from peer_bench import PYTHON_CLIENT, summary
from serve_bench import v2_binary_header

from tests.server import ROOT, serve_copy


def row(case: str, rows: int, rps: list[float], p99: float = 10.0) -> dict:
    client = PYTHON_CLIENT if PYTHON_CLIENT in case else "wrk -t1"
    return {
        "endpoint": case,
        "rows": rows,
        "client": client,
        "rps": float(np.median(rps)),
        "p50_ms": 1.0,
        "p99_ms": p99,
        "non_2xx": 0,
        "rps_each_round": rps,
    }


WRK = [
    row("MLServer pool (default), V2 JSON", 1, [100.0, 300.0, 200.0], p99=30.0),
    row("MLServer in-process, V2 JSON", 1, [200.0, 250.0, 250.0], p99=20.0),
    row("bpserve, V2 binary", 1, [600.0, 500.0, 1000.0], p99=5.0),
]
GRPC = [
    row(f"MLServer in-process, gRPC raw_input_contents ({PYTHON_CLIENT})", 1, [400.0] * 3),
    row(f"MLServer in-process, gRPC FP32 contents ({PYTHON_CLIENT})", 1, [50.0] * 3),
    row(f"bpserve, V2 binary ({PYTHON_CLIENT})", 1, [800.0, 400.0, 1200.0], p99=50.0),
]


def test_each_client_is_paired_with_mlservers_best_case_of_that_client(monkeypatch):
    monkeypatch.setattr("peer_bench.ROWS", (1,))
    out = {r["case"]: r for r in summary(WRK + GRPC)}
    # wrk: the in-process setting is the better by median rps (250 against 200)
    wrk = out["bpserve, V2 binary"]
    assert wrk["vs"] == "MLServer in-process, V2 JSON" and wrk["client"] == "wrk -t1"
    assert wrk["ratio_each_round"] == [3.0, 2.0, 4.0] and wrk["ratio"] == 3.0
    assert wrk["p99_below_peer"] is True
    # the Python client's cases against the best gRPC case, never against wrk's figures
    py = out[f"bpserve, V2 binary ({PYTHON_CLIENT})"]
    assert py["vs"] == f"MLServer in-process, gRPC raw_input_contents ({PYTHON_CLIENT})"
    assert py["ratio_each_round"] == [2.0, 1.0, 3.0] and py["ratio"] == 2.0
    assert py["p99_below_peer"] is False
    assert out[f"MLServer in-process, gRPC FP32 contents ({PYTHON_CLIENT})"]["ratio"] == 0.12


def test_the_grpc_cases_leave_the_wrk_cases_ratios_as_they_were(monkeypatch):
    monkeypatch.setattr("peer_bench.ROWS", (1,))
    assert summary(WRK + GRPC)[: len(WRK)] == summary(WRK)


def test_percentile_is_the_nearest_rank():
    ordered = [float(i) for i in range(1, 101)]
    assert percentile(ordered, 50) == 51.0 and percentile(ordered, 99) == 100.0
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) == 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_copy(
        tmp_path_factory.mktemp("load"), keepalive_requests=5, log_requests="false"
    )


def binary_request() -> tuple[bytes, dict[str, str]]:
    x = np.random.default_rng(0).uniform(0, 16, size=(3, 64)).astype(np.float32)
    head = v2_binary_header(x)
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    return head + x.tobytes(), headers


def test_the_http_client_follows_the_servers_close_of_a_kept_alive_connection(server):
    body, headers = binary_request()
    send = http_sender(server.port, "/v2/models/digits/infer", body, headers)()
    # keepalive_requests=5: the server closes after every fifth; all 12 must be answered
    assert [send() for _ in range(12)] == [True] * 12


def test_the_closed_loop_counts_every_answer_and_every_refusal(server):
    body, headers = binary_request()
    good = closed_loop(http_sender(server.port, "/v2/models/digits/infer", body, headers), 0.3, 2)
    assert good["requests"] >= 2  # each connection's first request is always answered
    assert good["non_2xx"] == 0 and good["socket_errors"] is None
    assert 0 < good["p50_ms"] <= good["p99_ms"] and good["rps"] > 0
    short = {**headers, "Inference-Header-Content-Length": str(len(body) + 1)}  # a 400
    bad = closed_loop(http_sender(server.port, "/v2/models/digits/infer", body, short), 0.3, 2)
    assert bad["requests"] >= 2 and bad["non_2xx"] == bad["requests"]


def test_the_command_line_prints_one_json_line(server, tmp_path):
    body, headers = binary_request()
    (tmp_path / "b.body").write_bytes(body)
    cmd = [sys.executable, str(ROOT / "bench" / "grpc_load.py"), "http"]
    cmd += ["--port", str(server.port), "--path", "/v2/models/digits/infer"]
    cmd += ["--body", str(tmp_path / "b.body"), "--seconds", "0.2", "--connections", "1"]
    cmd += [f"--header={k}={v}" for k, v in headers.items()]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["requests"] >= 1 and result["non_2xx"] == 0
    assert set(result) == {"rps", "p50_ms", "p99_ms", "non_2xx", "socket_errors", "requests"}
