"""Throughput and latency of the service under a bounded load on loopback, side by side.

Starts the real gunicorn server with one worker (4 threads) on a free
loopback port with a temporary copy of the default model, then drives each endpoint
with wrk (Debian's package; installed with apt-get when missing and root) for a fixed
time and connection count, in rounds (see ``rounds_of_wrk``).  One worker, because
with two the figures measure how wrk's kept-alive connections happened to spread over
the workers (seen: /predict at 1.9x /healthz), not the work per request.  The trivial
endpoint (GET /healthz, same app, same hooks, same server) is the stack's ceiling; every
case is quoted as a ratio of it.

    .venv/bin/python bench/serve_bench.py                 # 3 rounds of 5 s per case
    .venv/bin/python bench/serve_bench.py --seconds 2 --rounds 1   # a quick look
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spread import spread  # noqa: E402
from steal import Steal  # noqa: E402
from wrk import ensure_wrk, lua_post, lua_post_bytes, run_wrk  # noqa: E402

from tests.server import Server, make_store  # noqa: E402

TOKEN = "bench-token"


def rounds_of_wrk(
    wrk: str,
    url: str,
    cases: list[tuple],
    seconds: int,
    connections: int,
    rounds: int,
    run=run_wrk,
) -> list[dict]:
    """Each case under wrk once per round, the order reversed every other round; each
    figure is the median over the rounds, and ``ratio`` the median of each round's rps
    over the first case's rps in that same round.

    Why rounds: these machines are shared and their speed drifts within minutes; a case
    measured only after another would carry that drift into their ratio.  A case's path
    is appended to ``url``; with ``url=""`` the paths may be whole URLs of several servers.
    ``run`` (``run_wrk``'s signature and answer) lets another load generator take cases
    in the same rounds (bench/peer_bench.py's gRPC cases).
    """
    runs: list[list[dict]] = [[] for _ in cases]
    steal = Steal()
    for r in range(rounds):
        order = list(range(len(cases)))
        for i in order if r % 2 == 0 else order[::-1]:
            _label, path, _rows, script = cases[i]
            runs[i].append(run(wrk, url + path, seconds, connections, script))
    stolen = steal.fraction()
    out = []
    for (label, _path, rows, _script), rs in zip(cases, runs):
        out.append(
            {
                "endpoint": label,
                "rows": rows,
                "rounds": rounds,
                "cpu_steal_all_cases": stolen,
                "rps": round(statistics.median(x["rps"] for x in rs), 1),
                "p50_ms": round(statistics.median(x["p50_ms"] for x in rs), 3),
                "p99_ms": round(statistics.median(x["p99_ms"] for x in rs), 3),
                "non_2xx": sum(x["non_2xx"] for x in rs),
                "socket_errors": [x["socket_errors"] for x in rs if x["socket_errors"]] or None,
                "ratio": round(
                    statistics.median(x["rps"] / ref["rps"] for x, ref in zip(rs, runs[0])), 3
                ),
                "ratio_each_round": [
                    round(x["rps"] / ref["rps"], 3) for x, ref in zip(rs, runs[0])
                ],
                "rps_each_round": [x["rps"] for x in rs],
            }
        )
    return out


def v2_binary_header(x: np.ndarray) -> bytes:
    """The JSON header of a V2 infer request whose FP32 input and output travel as binary."""
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
        }
    ).encode()


def sequential_latency(server: Server, body: dict, n: int, path: str = "/predict") -> list[float]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    return sequential_raw(server, path, json.dumps(body).encode(), headers, n)


def sequential_raw(server: Server, path: str, body: bytes, headers: dict, n: int) -> list[float]:
    """Client-side round-trip times, one request at a time on a kept-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        times.append(time.perf_counter() - t0)
        assert resp.status == 200, resp.status
    conn.close()
    return times


def spread_cases(wrk: str, args, body: dict) -> None:
    """The default 2 workers under -c4 and -c16 of 1-row /predict, ``args.spread`` runs of
    3 s each: does every worker get work in every run (bench/spread.py)?"""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = Server(make_store(tmp / "models"), log_requests="false")
        server.env["GUNICORN_CMD_ARGS"] = args.gunicorn_args
        server.start()
        try:
            script = lua_post(tmp / "p1.lua", body)
            url = f"http://127.0.0.1:{server.port}/predict"
            for c in (4, 16):
                r = spread(run_wrk, wrk, url, script, server.proc.pid, c, args.spread, 3)
                r["gunicorn_args"] = args.gunicorn_args
                print(json.dumps(r), flush=True)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--spread", type=int, metavar="RUNS", help="only: keep-alive spread")
    parser.add_argument("--gunicorn-args", default="", help="GUNICORN_CMD_ARGS for --spread")
    args = parser.parse_args()
    wrk = ensure_wrk()
    rng = np.random.default_rng(0)
    row = lambda n: rng.uniform(0, 16, size=(n, 64)).round(2).tolist()  # noqa: E731
    if args.spread:
        return spread_cases(wrk, args, {"inputs": row(1)})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = make_store(tmp / "models")
        server = Server(store, train_token=TOKEN, log_requests="false", workers=1).start()
        try:
            url = f"http://127.0.0.1:{server.port}"
            cases = [
                ("GET /healthz (trivial)", "/healthz", 0, None),
                ("POST /predict", "/predict", 1, lua_post(tmp / "p1.lua", {"inputs": row(1)})),
                (
                    "POST /predict",
                    "/predict",
                    100,
                    lua_post(tmp / "p100.lua", {"inputs": row(100)}),
                ),
                (
                    "POST /train-step",
                    "/train-step",
                    32,
                    lua_post(
                        tmp / "t32.lua",
                        {
                            "inputs": row(32),
                            "targets": [str(i % 10) for i in range(32)],
                            "learning_rate": 1e-4,
                        },
                        TOKEN,
                    ),
                ),
            ]
            for r in rounds_of_wrk(wrk, url, cases, args.seconds, args.connections, args.rounds):
                r["ratio_vs_trivial"] = r.pop("ratio")
                print(json.dumps(r), flush=True)
            big = {"inputs": row(1000)}
            times = json_times = sequential_latency(server, big, 50)
            print(
                json.dumps(
                    {
                        "endpoint": "POST /predict, one client, sequential",
                        "rows": 1000,
                        "body_kb": round(len(json.dumps(big)) / 1024, 1),
                        "p50_ms": round(statistics.median(times) * 1000, 2),
                        "p99_ms": round(float(np.percentile(times, 99)) * 1000, 2),
                        "rows_per_s": round(1000 / statistics.median(times)),
                    }
                )
            )
            # The same 1,000 rows through the Open Inference Protocol's binary extension.
            x = np.asarray(big["inputs"], dtype="<f4")
            head = v2_binary_header(x)
            times = sequential_raw(
                server,
                "/v2/models/digits/infer",
                head + x.tobytes(),
                {"Inference-Header-Content-Length": str(len(head))},
                50,
            )
            json_rows = 1000 / statistics.median(json_times)
            v2_rows = 1000 / statistics.median(times)
            print(
                json.dumps(
                    {
                        "endpoint": "POST /v2/models/digits/infer, binary tensors, one client",
                        "rows": 1000,
                        "body_kb": round((len(head) + x.nbytes) / 1024, 1),
                        "p50_ms": round(statistics.median(times) * 1000, 2),
                        "rows_per_s": round(v2_rows),
                        "ratio_vs_json_predict": round(v2_rows / json_rows, 2),
                    }
                )
            )
            # Rows per second of the two under the same wrk load (no Python client in the
            # way): the figure the binary path's goal (5x the JSON path) is judged on.
            loads = [
                (
                    "POST /predict, 1,000 rows as JSON, wrk",
                    "/predict",
                    lua_post_bytes(
                        tmp / "j1000.lua",
                        json.dumps(big).encode(),
                        {"Content-Type": "application/json"},
                    ),
                ),
                (
                    "POST /v2/models/digits/infer, 1,000 rows as binary tensors, wrk",
                    "/v2/models/digits/infer",
                    lua_post_bytes(
                        tmp / "b1000.lua",
                        head + x.tobytes(),
                        {
                            "Content-Type": "application/octet-stream",
                            "Inference-Header-Content-Length": str(len(head)),
                        },
                    ),
                ),
            ]
            loads = [(label, path, 1000, script) for label, path, script in loads]
            results = rounds_of_wrk(wrk, url, loads, args.seconds, args.connections, args.rounds)
            for r in results:
                r["connections"] = args.connections
                r["rows_per_s"] = round(r["rps"] * 1000)
                r["ratio_vs_json_predict"] = r.pop("ratio")  # 1.0 for the JSON case itself
                print(json.dumps(r), flush=True)
            # Durability: each 200 is a step whose journal record was fsynced first.
            step = {
                "inputs": row(8),
                "targets": [str(i % 10) for i in range(8)],
                "learning_rate": 1e-4,
            }
            times = sequential_latency(server, step, 300, "/train-step")
            print(
                json.dumps(
                    {
                        "endpoint": "POST /train-step, one client, sequential (fsynced)",
                        "rows": 8,
                        "acknowledged_steps_per_s": round(len(times) / sum(times), 1),
                        "p50_ms": round(statistics.median(times) * 1000, 2),
                        "p99_ms": round(float(np.percentile(times, 99)) * 1000, 2),
                    }
                )
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
