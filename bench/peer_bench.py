"""bpserve beside MLServer, the V2 server KServe uses for scikit-learn, in one run.

MLServer 1.7.1 (with mlserver-sklearn; ``uvloop<0.22``, without which its default
inference pool's process fails to start) is installed by this script into its own
virtual environment, once (kept under the temporary folder for later runs).  It serves a
scikit-learn ``MLPClassifier`` of the digits model's shape (64-256-10, ReLU, softmax),
trained there for a few epochs on scikit-learn's digits, in two settings: its default
(``parallel_workers`` left alone: an inference pool in a second process) and
``parallel_workers: 0`` (in-process).  bpserve runs with its defaults (2 workers x 4
threads) on the committed digits model.

Every server takes the same V2 JSON infer bytes (1, 100 and 1,000 rows; no ``outputs``
asked, so MLServer answers its default output, the labels, and bpserve both its
probabilities and labels), and bpserve's /predict and V2 binary take the same rows, all
in the same rounds of wrk -t1 (``serve_bench.rounds_of_wrk``: every case once per round,
the order reversed every other round).  Each MLServer case is paired with its better
setting per row count (by median requests/s); every ratio is the median of the rounds'
ratios against that setting's rps in the same round.  MLServer's REST API has no binary
tensor extension (its binary path is gRPC, which wrk cannot drive), so the binary case
is bpserve's alone.

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
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve_bench import rounds_of_wrk, v2_binary_header  # noqa: E402
from wrk import ensure_wrk, lua_post_bytes  # noqa: E402

from tests.server import Server, free_port, make_store  # noqa: E402

PINS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"]
VENV = Path(tempfile.gettempdir()) / "bpserve-peer-mlserver-1.7.1"
ROWS = (1, 100, 1000)

TRAIN = textwrap.dedent(
    """
    import sys, joblib, warnings
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier
    warnings.simplefilter("ignore")
    x, y = load_digits(return_X_y=True)
    m = MLPClassifier(hidden_layer_sizes=(256,), activation="relu", max_iter=20,
                      random_state=0).fit(x, y)
    print([w.shape for w in m.coefs_], round(m.score(x, y), 3))
    joblib.dump(m, sys.argv[1])
    """
)


def mlserver_venv() -> Path:
    """MLServer's own virtual environment, created and pinned on first use."""
    stamp = VENV / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, *PINS], check=True)
        stamp.write_text("\n".join(PINS) + "\n")
    return VENV


def versions(venv: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True
    ).stdout
    want = ("mlserver", "mlserver-sklearn", "scikit-learn", "uvloop", "uvicorn", "fastapi")
    return {
        k: v
        for k, v in (line.split("==", 1) for line in out.splitlines() if "==" in line)
        if k.lower() in want
    }


def mlserver(venv: Path, folder: Path, parallel: int | None) -> tuple[subprocess.Popen, int]:
    """One MLServer on a free loopback port, serving the joblib model in ``folder``."""
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,
    }
    if parallel is not None:
        settings["parallel_workers"] = parallel
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "digits",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1"},
            }
        )
    )
    log = open(folder / "mlserver.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(venv / "bin" / "mlserver"), "start", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"mlserver exited:\n{(folder / 'mlserver.log').read_text()[-3000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/v2/models/digits/ready")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"mlserver not ready:\n{(folder / 'mlserver.log').read_text()[-3000:]}")


def post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, body=body, headers=headers)
    r = c.getresponse()
    return r.status, r.read()


def summary(results: list[dict]) -> list[dict]:
    """Per row count: every case against MLServer's better setting, round by round."""
    out = []
    for n in ROWS:
        group = [r for r in results if r["rows"] == n]
        peers = [r for r in group if r["endpoint"].startswith("MLServer")]
        best = max(peers, key=lambda r: r["rps"])
        for r in group:
            ratios = [a / b for a, b in zip(r["rps_each_round"], best["rps_each_round"])]
            out.append(
                {
                    "rows": n,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    wrk = ensure_wrk()
    venv = mlserver_venv()
    rng = np.random.default_rng(0)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_file = tmp / "model.joblib"
        trained = subprocess.run(
            [str(venv / "bin" / "python"), "-c", TRAIN, str(model_file)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(json.dumps({"mlserver": versions(venv), "sklearn_mlp": trained}), flush=True)
        bp = Server(make_store(tmp / "models"), log_requests="false").start()
        try:
            ports = {}
            for label, parallel in (("pool (default)", None), ("in-process", 0)):
                folder = tmp / f"mlserver-{parallel}"
                folder.mkdir()
                (folder / "model.joblib").symlink_to(model_file)
                proc, ports[label] = mlserver(venv, folder, parallel)
                procs.append(proc)
            cases = []
            for n in ROWS:
                x = rng.uniform(0, 16, size=(n, 64)).round(2).astype(np.float32)
                v2 = json.dumps(
                    {
                        "inputs": [
                            {
                                "name": "input",
                                "shape": [n, 64],
                                "datatype": "FP32",
                                "data": x.tolist(),
                            }
                        ]
                    }
                ).encode()
                jhead = {"Content-Type": "application/json"}
                for label, port in ports.items():
                    status, reply = post(port, "/v2/models/digits/infer", v2, jhead)
                    assert status == 200, reply[:300]
                    url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
                    script = lua_post_bytes(tmp / f"m{port}-{n}.lua", v2, jhead)
                    cases.append((f"MLServer {label}, V2 JSON", url, n, script))
                base = f"http://127.0.0.1:{bp.port}"
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
                    status, reply = post(bp.port, path, body, hdrs)
                    assert status == 200, reply[:300]
                    script = lua_post_bytes(tmp / f"b{len(cases)}.lua", body, hdrs)
                    cases.append((label, base + path, n, script))
            results = rounds_of_wrk(wrk, "", cases, args.seconds, args.connections, args.rounds)
            for r in results:
                r["connections"] = args.connections
                r.pop("ratio"), r.pop("ratio_each_round")
                print(json.dumps(r), flush=True)
            for s in summary(results):
                print(json.dumps(s), flush=True)
        finally:
            bp.stop()
            for proc in procs:  # each in its own process group: the pool's process too
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
