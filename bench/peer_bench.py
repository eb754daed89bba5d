"""bpserve beside MLServer, the V2 server KServe uses for scikit-learn, in one run.

MLServer 1.7.1 (with mlserver-sklearn; ``uvloop<0.22``, without which its default
inference pool's process fails to start) is installed by this script into its own
virtual environment, once (kept under the temporary folder for later runs).  It serves a
scikit-learn ``MLPClassifier`` of the digits model's shape (64-256-10, ReLU, softmax),
trained there for a few epochs on scikit-learn's digits, in two settings: its default
(``parallel_workers`` left alone: an inference pool in a second process) and
``parallel_workers: 0`` (in-process).  bpserve runs with its defaults (2 workers x 4
threads) on the committed digits model.

Two kinds of client, all cases of both in the same rounds (``serve_bench.rounds_of_wrk``:
every case once per round, the order reversed every other round):

- wrk -t1 -cN: every server takes the same V2 JSON infer bytes (1, 100 and 1,000 rows;
  no ``outputs`` asked, so MLServer answers its default output, the labels, and bpserve
  both its probabilities and labels), and bpserve's /predict and V2 binary (over HTTP)
  take the same rows.
- bench/grpc_load.py, a closed-loop Python client (N threads, a connection each, like
  wrk -t1 -cN, run by MLServer's python), for the binary paths: MLServer's REST API has
  no binary tensor extension, its binary path is gRPC ``ModelInfer``, which wrk cannot
  drive.  MLServer's gRPC in both settings, with the rows as ``raw_input_contents``
  (binary; it answers ``raw_output_contents``) and as ``contents.fp32_contents``, and
  bpserve's V2 binary over HTTP/1.1 driven by the same script.  Before timing, each
  setting's gRPC labels (both encodings) are checked equal to its REST answer's.

Figures are comparable within a client, not across: a Python client spends more CPU per
request than wrk, on the same 2 cores as the servers, so its rps are lower for the same
server.  Each case is paired with MLServer's better case of its own client at that row
count (wrk: the better setting's V2 JSON; Python: the best of the four gRPC cases), by
median requests/s; every ratio is the median of the rounds' ratios against that case's
rps in the same round.  bpserve's V2 binary under both clients shows what the Python
client itself costs.

    .venv/bin/python bench/peer_bench.py                      # 3 rounds of 5 s per case
    .venv/bin/python bench/peer_bench.py --seconds 3 --rounds 3
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from mlserver_peer import VENV, mlserver, mlserver_venv, train_model, versions  # noqa: E402
from serve_bench import rounds_of_wrk, v2_binary_header  # noqa: E402
from wrk import ensure_wrk, lua_post_bytes, run_wrk  # noqa: E402

from tests.server import Server, make_store  # noqa: E402

ROWS = (1, 100, 1000)
LOAD = ROOT / "bench" / "grpc_load.py"
PYTHON_CLIENT = "Python client"


def post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, body=body, headers=headers)
    r = c.getresponse()
    return r.status, r.read()


def run_case(wrk: str, url: str, seconds: int, connections: int, script) -> dict:
    """A case under wrk when its script is a Lua file; under bench/grpc_load.py, run by
    MLServer's python, when it is that script's arguments (a list)."""
    if not isinstance(script, list):
        return run_wrk(wrk, url, seconds, connections, script)
    cmd = [str(VENV / "bin" / "python"), str(LOAD), *script]
    cmd += ["--seconds", str(seconds), "--connections", str(connections)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def grpc_labels(grpc_port: int, rows: Path, contents: str) -> list[int]:
    """MLServer's gRPC ModelInfer answer for the rows, as labels (bench/grpc_load.py)."""
    cmd = [str(VENV / "bin" / "python"), str(LOAD), "grpc", "--port", str(grpc_port)]
    cmd += ["--rows", str(rows), "--contents", contents, "--labels"]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def summary(results: list[dict]) -> list[dict]:
    """Per row count and client: every case against MLServer's better case of that
    client (by median rps), round by round.  A client's cases are compared only with
    each other: wrk's V2 JSON with wrk's, the Python client's gRPC with its own."""
    out = []
    for n in ROWS:
        for client in dict.fromkeys(r["client"] for r in results):
            group = [r for r in results if r["rows"] == n and r["client"] == client]
            peers = [r for r in group if r["endpoint"].startswith("MLServer")]
            if not peers:
                continue
            best = max(peers, key=lambda r: r["rps"])
            for r in group:
                ratios = [a / b for a, b in zip(r["rps_each_round"], best["rps_each_round"])]
                out.append(
                    {
                        "rows": n,
                        "client": client,
                        "case": r["endpoint"],
                        "rps": r["rps"],
                        "p50_ms": r["p50_ms"],
                        "p99_ms": r["p99_ms"],
                        "vs": best["endpoint"],
                        "ratio": round(statistics.median(ratios), 2),
                        "ratio_each_round": [round(x, 2) for x in ratios],
                        "p99_below_peer": r["p99_ms"] < best["p99_ms"],
                        "non_2xx": r["non_2xx"],
                    }
                )
    return out


def v2_json(x: np.ndarray) -> bytes:
    """The V2 JSON infer request for these rows, the same bytes to every server."""
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def cases_for(
    x: np.ndarray, peers: dict[str, tuple[int, int]], bp: int, tmp: Path, floors: dict[str, int]
) -> list:
    """The cases of one row count, each checked once before timing: wrk's (V2 JSON to
    every server, bpserve's /predict and V2 binary, and at 1 row the floor apps) and the
    Python client's (MLServer's gRPC in both encodings, bpserve's V2 binary).
    ``peers``: label -> (REST, gRPC) port; ``floors``: label -> port."""
    n = len(x)
    v2 = v2_json(x)
    rows = tmp / f"x{n}.npy"
    np.save(rows, x)
    jhead = {"Content-Type": "application/json"}
    cases, grpc = [], []
    for label, (port, grpc_port) in peers.items():
        status, reply = post(port, "/v2/models/digits/infer", v2, jhead)
        assert status == 200, reply[:300]
        rest = json.loads(reply)["outputs"][0]["data"]
        url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
        script = lua_post_bytes(tmp / f"m{port}-{n}.lua", v2, jhead)
        cases.append((f"MLServer {label}, V2 JSON", url, n, script))
        url = f"grpc://127.0.0.1:{grpc_port}"  # for the record: grpc_load.py takes the port
        for contents, name in (("raw", "raw_input_contents"), ("fp32", "FP32 contents")):
            got = grpc_labels(grpc_port, rows, contents)
            if got != rest:
                sys.exit(f"MLServer {label} gRPC {contents} at {n} rows: {got[:10]} != {rest[:10]}")
            argv = ["grpc", "--port", str(grpc_port), "--rows", str(rows), "--contents", contents]
            grpc.append((f"MLServer {label}, gRPC {name} ({PYTHON_CLIENT})", url, n, argv))
    base = f"http://127.0.0.1:{bp}"
    predict = json.dumps({"inputs": x.tolist()}).encode()
    head = v2_binary_header(x)
    binary = head + x.tobytes()
    bhead = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    for label, path, body, hdrs in (
        ("bpserve, V2 JSON", "/v2/models/digits/infer", v2, jhead),
        ("bpserve, /predict JSON", "/predict", predict, jhead),
        ("bpserve, V2 binary", "/v2/models/digits/infer", binary, bhead),
    ):
        status, reply = post(bp, path, body, hdrs)
        assert status == 200, reply[:300]
        script = lua_post_bytes(tmp / f"b{n}-{len(cases)}.lua", body, hdrs)
        cases.append((label, base + path, n, script))
    for label, port in floors.items() if n == 1 else ():
        status, reply = post(port, "/v2/models/digits/infer", v2, jhead)
        assert status == 200, reply[:300]
        script = lua_post_bytes(tmp / f"f{port}.lua", v2, jhead)
        cases.append((label, f"http://127.0.0.1:{port}/v2/models/digits/infer", n, script))
    (tmp / f"binary{n}.body").write_bytes(binary)
    argv = ["http", "--port", str(bp), "--path", "/v2/models/digits/infer"]
    argv += ["--body", str(tmp / f"binary{n}.body")]
    argv += [f"--header={k}={v}" for k, v in bhead.items()]
    grpc.append(
        (f"bpserve, V2 binary ({PYTHON_CLIENT})", base + "/v2/models/digits/infer", n, argv)
    )
    return cases + grpc


def start_floors(bp: int, x: np.ndarray, tmp: Path, started: list[Server]) -> dict[str, int]:
    """bench/floor_app.py's two apps under bpserve's gunicorn settings and worker (2
    workers), answering bpserve's own V2 reply for these rows: label -> port."""
    status, reply = post(bp, "/v2/models/digits/infer", v2_json(x), {})
    assert status == 200, reply[:300]
    floors = {}
    for label, app in (
        ("floor: bare WSGI, fixed reply", "bench.floor_app:app"),
        ("floor: Flask route, fixed reply", "bench.floor_app:flask_app"),
    ):
        store = make_store(tmp / f"floor-{len(floors)}")
        server = Server(store, app=app, log_requests="false", floor_reply=reply.decode())
        started.append(server.start())
        floors[label] = server.port
    return floors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--no-floor", action="store_true", help="leave out the floor apps")
    args = parser.parse_args()
    wrk = ensure_wrk()
    venv = mlserver_venv()
    rng = np.random.default_rng(0)
    procs: list[subprocess.Popen] = []
    floor_servers: list[Server] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_file = tmp / "model.joblib"
        trained = train_model(venv, model_file)
        print(json.dumps({"mlserver": versions(venv), "sklearn_mlp": trained}), flush=True)
        bp = Server(make_store(tmp / "models"), log_requests="false").start()
        try:
            peers = {}
            for label, parallel in (("pool (default)", None), ("in-process", 0)):
                folder = tmp / f"mlserver-{parallel}"
                folder.mkdir()
                (folder / "model.joblib").symlink_to(model_file)
                proc, port, grpc_port = mlserver(venv, folder, parallel)
                procs.append(proc)
                peers[label] = (port, grpc_port)
            xs = [rng.uniform(0, 16, size=(n, 64)).round(2).astype(np.float32) for n in ROWS]
            floors = {} if args.no_floor else start_floors(bp.port, xs[0], tmp, floor_servers)
            cases = []
            for x in xs:
                cases += cases_for(x, peers, bp.port, tmp, floors)
            results = rounds_of_wrk(
                wrk, "", cases, args.seconds, args.connections, args.rounds, run=run_case
            )
            for r in results:
                r["connections"] = args.connections
                r["client"] = PYTHON_CLIENT if PYTHON_CLIENT in r["endpoint"] else "wrk -t1"
                r.pop("ratio"), r.pop("ratio_each_round")
                print(json.dumps(r), flush=True)
            for s in summary(results):
                print(json.dumps(s), flush=True)
        finally:
            bp.stop()
            for server in floor_servers:
                server.stop()
            for proc in procs:  # each in its own process group: the pool's process too
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
