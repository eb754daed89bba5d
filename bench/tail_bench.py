"""The 1-row tail: threads per worker against MLServer in-process, in one run.

What it is for: bench/peer_bench.py found bpserve's 1-row p99 above in-process MLServer's
even where bpserve answers 2-3x the requests, and the Flask floor's p99 above it too.
This asks whether the tail belongs to the work per request or to how a worker runs its
threads: the same 1-row V2 JSON bytes to MLServer in-process (``parallel_workers: 0``,
one process), to bpserve with 2 workers x 1, 2 and 4 threads (4 is the default), and to
bench/floor_app.py's Flask route (a route that answers fixed bytes, no inference) with
2 workers x 1 and 4 threads, all under the same gunicorn settings and worker.  wrk -t1,
every case once per round (``serve_bench.rounds_of_wrk``), each ratio the median of the
rounds' ratios against MLServer's rate in the same round.

    nice -n -10 flock /tmp/bench.lock .venv/bin/python bench/tail_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from mlserver_peer import mlserver, mlserver_venv, train_model  # noqa: E402
from peer_bench import post, v2_json  # noqa: E402
from serve_bench import rounds_of_wrk  # noqa: E402
from wrk import ensure_wrk, lua_post_bytes  # noqa: E402

from tests.server import Server, make_store  # noqa: E402

INFER = "/v2/models/digits/infer"
BPSERVE_THREADS = (4, 2, 1)
FLOOR_THREADS = (4, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    wrk = ensure_wrk()
    venv = mlserver_venv()
    x = np.random.default_rng(0).uniform(0, 16, size=(1, 64)).round(2).astype(np.float32)
    body = v2_json(x)
    servers: list[Server] = []
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "mlserver"
        folder.mkdir()
        train_model(venv, folder / "model.joblib")
        try:
            proc, port, _grpc = mlserver(venv, folder, 0)
            targets = [("MLServer in-process", port)]
            for threads in BPSERVE_THREADS:
                s = Server(make_store(tmp / f"bp-{threads}"), log_requests="false", threads=threads)
                servers.append(s.start())
                targets.append((f"bpserve, 2 workers x {threads} threads", s.port))
            status, reply = post(servers[0].port, INFER, body, {})
            assert status == 200, reply[:300]
            for threads in FLOOR_THREADS:
                s = Server(
                    make_store(tmp / f"floor-{threads}"),
                    app="bench.floor_app:flask_app",
                    log_requests="false",
                    floor_reply=reply.decode(),
                    threads=threads,
                )
                servers.append(s.start())
                targets.append((f"floor: Flask route, 2 workers x {threads} threads", s.port))
            script = lua_post_bytes(tmp / "v2.lua", body, {"Content-Type": "application/json"})
            cases = [(label, f"http://127.0.0.1:{p}{INFER}", 1, script) for label, p in targets]
            results = rounds_of_wrk(wrk, "", cases, args.seconds, args.connections, args.rounds)
            peer_p99 = results[0]["p99_ms"]
            for r in results:
                r["connections"] = args.connections
                r["vs"] = "MLServer in-process"
                r["p99_below_peer"] = r["p99_ms"] < peer_p99
                print(json.dumps(r), flush=True)
        finally:
            for s in servers:
                s.stop()
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
