"""Online learning on PostgreSQL against the file journal, over HTTP, on real servers.

Starts its own PostgreSQL 15 (tests/pg.py: as the postgres user when root, fsync on)
and gunicorn servers (tests/server.py), all on loopback, one sequential client:

- steps/s: acknowledged /train-step calls a second, file journal vs PostgreSQL (one
  replica, 2 workers each), in paired rounds that alternate the two;
- replica lag: a step acknowledged by replica A, then replica B polled (GET
  /models/digits, no header) until it serves that step: time from the ack to B
  serving it (p50, p99), and the time B takes to answer with X-Bpserve-Min-Step;
- /predict: 1-row prediction latency with and without the database configured, paired.

    flock /tmp/bench.lock .venv/bin/python bench/pg_bench.py [--steps 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from steal import Steal  # noqa: E402

from tests.pg import PgServer  # noqa: E402
from tests.replicas import PROBE, TOKEN, batch, call  # noqa: E402
from tests.server import Server, make_store  # noqa: E402


def steps_per_s(server: Server, start: int, n: int) -> float:
    t0 = time.perf_counter()
    for k in range(start, start + n):
        x, labels = batch(k)
        status, reply, _ = call(
            server.port, "POST", "/train-step", {"inputs": x.tolist(), "targets": labels}
        )
        assert status == 200, reply
    return n / (time.perf_counter() - t0)


def predict_ms(server: Server, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, _, _ = call(server.port, "POST", "/predict", {"inputs": PROBE[:1]})
        times.append(time.perf_counter() - t0)
        assert status == 200
    return statistics.median(times) * 1000


def lag(a: Server, b: Server, start: int, n: int) -> tuple[list[float], list[float]]:
    polled, waited = [], []
    for k in range(start, start + n):
        x, labels = batch(k)
        body = {"inputs": x.tolist(), "targets": labels}
        status, reply, hdrs = call(a.port, "POST", "/train-step", body)
        acked = time.perf_counter()
        assert status == 200, reply
        if k % 2:  # every other step: poll without the header
            for _ in range(10_000):
                info = call(b.port, "GET", "/models/digits")[1]
                if info["online_steps"] >= reply["step"]:
                    break
            polled.append(time.perf_counter() - acked)
        else:  # the others: one request that waits for the step
            head = {"X-Bpserve-Min-Step": hdrs["X-Bpserve-Step"]}
            status, info, _ = call(b.port, "GET", "/models/digits", headers=head)
            assert status == 200 and info["online_steps"] >= reply["step"], info
            waited.append(time.perf_counter() - acked)
    return polled, waited


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    steal = Steal()
    pg = PgServer().start()
    tmp = Path(tempfile.mkdtemp(prefix="bpserve-pgbench-"))
    env = {"train_token": TOKEN, "snapshot_every": 0, "workers": 2, "log_requests": False}
    url = pg.create_database()
    servers = {
        "file": Server(make_store(tmp / "file"), **env),
        "pg_a": Server(make_store(tmp / "a"), database_url=url, **env),
    }
    (tmp / "b").mkdir()
    servers["pg_b"] = Server(tmp / "b", database_url=url, **env)
    try:
        for s in servers.values():
            s.start()
        rounds = []
        k = 0
        for r in range(args.rounds):
            order = ["file", "pg_a"] if r % 2 == 0 else ["pg_a", "file"]
            row: dict[str, float] = {}
            for side in order:
                row[f"{side}_steps_per_s"] = steps_per_s(servers[side], k, args.steps)
                k += args.steps
                row[f"{side}_predict_ms"] = predict_ms(servers[side], args.steps)
            row["steps_ratio_pg_vs_file"] = row["pg_a_steps_per_s"] / row["file_steps_per_s"]
            row["predict_ratio_pg_vs_file"] = row["pg_a_predict_ms"] / row["file_predict_ms"]
            rounds.append({key: round(v, 3) for key, v in row.items()})
        polled, waited = lag(servers["pg_a"], servers["pg_b"], k, args.steps)
    finally:
        for s in servers.values():
            s.stop()
        pg.destroy()
    result = {
        "rounds": rounds,
        "steps_ratio_pg_vs_file_median": statistics.median(
            r["steps_ratio_pg_vs_file"] for r in rounds
        ),
        "predict_ratio_pg_vs_file_median": statistics.median(
            r["predict_ratio_pg_vs_file"] for r in rounds
        ),
        "lag_polled_ms": {"p50": pct(polled, 0.5), "p99": pct(polled, 0.99), "n": len(polled)},
        "lag_min_step_ms": {"p50": pct(waited, 0.5), "p99": pct(waited, 0.99), "n": len(waited)},
        "steal": steal.fraction(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
