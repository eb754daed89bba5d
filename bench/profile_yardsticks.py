"""bench/serve_profile.py's parts 6 and 7, the yardsticks the goals were set by: a plain
Flask + pydantic + numpy /predict against bpserve's, and a bare route taking a 1,000-row
V2 binary body beside bpserve's V2 binary infer and JSON /predict, in the same rounds."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
from profile_apps import BARE_APP, STEPS_APP, start_gunicorn
from profile_common import ROOT, ROW
from serve_bench import lua_post, lua_post_bytes, rounds_of_wrk, v2_binary_header

from tests.server import Server, make_store


def plain(wrk: str, tmp: Path, seconds: int, rounds: int = 3) -> dict:
    """The issue's yardstick itself: a plain Flask + pydantic + numpy /predict (the steps
    app's full route: parse, array, forward of the digits model, reply with labels) against
    a trivial GET of the same app, beside bpserve's /predict against its /healthz; both
    under bpserve's benchmark settings (1 worker x 4 threads, wrk 8 connections), the four
    cases in the same rounds (bench/serve_bench.py's ``rounds_of_wrk``)."""
    journal = make_store(tmp / "models-plain") / "digits" / "journal.log"
    app = STEPS_APP.format(root=str(ROOT), models=str(ROOT / "models"), journal=str(journal))
    (tmp / "plain_app.py").write_text(app)
    port, proc = start_gunicorn(tmp, "plain_app", threads=4)
    script = lua_post(tmp / "plain.lua", {"inputs": ROW})
    try:
        with Server(make_store(tmp / "models-bpserve"), log_requests="false", workers=1) as s:
            time.sleep(3)
            ours, theirs = f"http://127.0.0.1:{s.port}", f"http://127.0.0.1:{port}"
            cases = [
                ("plain GET /trivial", f"{theirs}/trivial", 0, None),
                ("plain POST /6", f"{theirs}/6", 1, script),
                ("bpserve GET /healthz", f"{ours}/healthz", 0, None),
                ("bpserve POST /predict", f"{ours}/predict", 1, script),
            ]
            runs = rounds_of_wrk(wrk, "", cases, seconds, 8, rounds)
    finally:
        proc.terminate()
        proc.wait()
    rps = [r["rps_each_round"] for r in runs]

    def ratios(top: list[float], bottom: list[float]) -> list[float]:
        return [round(a / b, 3) for a, b in zip(top, bottom)]

    plain_r, ours_r = ratios(rps[1], rps[0]), ratios(rps[3], rps[2])
    return {
        "case": "1-row /predict / trivial endpoint, 1 worker x 4 threads, same rounds",
        "plain_flask_pydantic_numpy": statistics.median(plain_r),
        "plain_each_round": plain_r,
        "bpserve": statistics.median(ours_r),
        "bpserve_each_round": ours_r,
        "requests_per_s": {r["endpoint"]: r["rps"] for r in runs},
        "cpu_steal": runs[0]["cpu_steal_all_cases"],
    }


def transport(wrk: str, tmp: Path, seconds: int, rounds: int = 3) -> dict:
    """What the V2 binary path's 5x goal is bounded by: a bare Flask route that only takes
    the same 1,000-row binary body and answers with as many bytes as bpserve's reply,
    beside bpserve's V2 binary infer and its 1,000-row JSON /predict, in the same rounds."""
    (tmp / "bare_app.py").write_text(BARE_APP)
    port, proc = start_gunicorn(tmp, "bare_app", threads=4)
    x = np.random.default_rng(0).uniform(0, 16, size=(1000, 64)).round(2).astype("<f4")
    head = v2_binary_header(x)
    binary = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    body = head + x.tobytes()
    as_json = json.dumps({"inputs": x.astype(float).round(2).tolist()}).encode()
    try:
        with Server(make_store(tmp / "models-transport"), log_requests="false", workers=1) as s:
            time.sleep(3)
            ours, bare = f"http://127.0.0.1:{s.port}", f"http://127.0.0.1:{port}"
            cases = [
                (
                    "bpserve POST /predict, 1,000 rows as JSON",
                    f"{ours}/predict",
                    1000,
                    lua_post_bytes(
                        tmp / "t-json.lua", as_json, {"Content-Type": "application/json"}
                    ),
                ),
                (
                    "bpserve V2 infer, 1,000 rows binary",
                    f"{ours}/v2/models/digits/infer",
                    1000,
                    lua_post_bytes(tmp / "t-v2.lua", body, binary),
                ),
                (
                    "bare Flask, the same body in, 40,000 bytes out",
                    f"{bare}/binary",
                    1000,
                    lua_post_bytes(tmp / "t-bare.lua", body, binary),
                ),
            ]
            runs = rounds_of_wrk(wrk, "", cases, seconds, 8, rounds)
    finally:
        proc.terminate()
        proc.wait()
    v2_rps, bare_rps = runs[1]["rps_each_round"], runs[2]["rps_each_round"]
    return {
        "case": "1,000-row requests, 1 worker x 4 threads, same rounds",
        "requests_per_s": {r["endpoint"]: r["rps"] for r in runs},
        "v2_over_json": runs[1]["ratio"],
        "v2_over_json_each_round": runs[1]["ratio_each_round"],
        "v2_over_bare": statistics.median(round(a / b, 3) for a, b in zip(v2_rps, bare_rps)),
        "v2_over_bare_each_round": [round(a / b, 3) for a, b in zip(v2_rps, bare_rps)],
        "cpu_steal": runs[0]["cpu_steal_all_cases"],
    }
