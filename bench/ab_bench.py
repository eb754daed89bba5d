"""This checkout against another (the code before a change), side by side in one run.

Both run as real gunicorn servers at once, each from its own checkout (its own working
folder and PYTHONPATH, this checkout's virtual environment), 1 worker x 4 threads each
(one worker: the figures are the work per request, not how wrk's connections happened to
spread over workers), on copies of the committed digits model.  The same bodies go to
both in the same rounds of wrk (``serve_bench.rounds_of_wrk``); each ratio is the median
of the rounds' after / before requests/s.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/ab_bench.py --before /tmp/before
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve_bench import rounds_of_wrk  # noqa: E402
from wrk import ensure_wrk, lua_post_bytes  # noqa: E402

import tests.server as ts  # noqa: E402


def start_at(root: Path, store: Path) -> ts.Server:
    """A server running the code of the checkout at ``root``."""
    server = ts.Server(store, log_requests="false", workers=1)
    server.env["PYTHONPATH"] = str(root)
    saved, ts.ROOT = ts.ROOT, root  # Server.start runs gunicorn with cwd=ROOT
    try:
        return server.start()
    finally:
        ts.ROOT = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    wrk = ensure_wrk()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Each side serves its own checkout's committed default model: the model's
        # format may have changed between the two.
        (tmp / "before" / "digits").mkdir(parents=True)
        shutil.copytree(args.before / "models" / "digits" / "1", tmp / "before" / "digits" / "1")
        before = start_at(args.before.resolve(), tmp / "before")
        after = start_at(ROOT, ts.make_store(tmp / "after"))
        try:
            for s, name in ((before, "before"), (after, "after")):
                worker = [ln for ln in s.log.read_text().splitlines() if "Using worker" in ln]
                print(json.dumps({"side": name, "cwd": s.env["PYTHONPATH"], "log": worker}))
            cases = []
            for n in (1, 1000):
                x = rng.uniform(0, 16, size=(n, 64)).round(2).tolist()
                bodies = {
                    "/predict": {"inputs": x},
                    "/v2/models/digits/infer": {
                        "inputs": [
                            {"name": "input", "shape": [n, 64], "datatype": "FP32", "data": x}
                        ]
                    },
                }
                for path, body in bodies.items():
                    data = json.dumps(body).encode()
                    for side, s in (("before", before), ("after", after)):
                        script = lua_post_bytes(
                            tmp / f"{side}{len(cases)}.lua",
                            data,
                            {"Content-Type": "application/json"},
                        )
                        url = f"http://127.0.0.1:{s.port}{path}"
                        cases.append((f"{side}: POST {path}", url, n, script))
            results = rounds_of_wrk(wrk, "", cases, args.seconds, args.connections, args.rounds)
            for b, a in zip(results[::2], results[1::2]):
                ratios = [x / y for x, y in zip(a["rps_each_round"], b["rps_each_round"])]
                print(
                    json.dumps(
                        {
                            "case": a["endpoint"].removeprefix("after: "),
                            "rows": a["rows"],
                            "rounds": a["rounds"],
                            "connections": args.connections,
                            "cpu_steal_all_cases": a["cpu_steal_all_cases"],
                            "before_rps": b["rps"],
                            "after_rps": a["rps"],
                            "before_p50_p99_ms": [b["p50_ms"], b["p99_ms"]],
                            "after_p50_p99_ms": [a["p50_ms"], a["p99_ms"]],
                            "after_over_before": round(statistics.median(ratios), 3),
                            "each_round": [round(r, 3) for r in ratios],
                            "non_2xx": a["non_2xx"] + b["non_2xx"],
                        }
                    ),
                    flush=True,
                )
        finally:
            before.stop()
            after.stop()


if __name__ == "__main__":
    main()
