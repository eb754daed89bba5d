"""bench/serve_profile.py's parts 3, 4 and 5, under gunicorn and wrk: a bare Flask app's
GET against POST, bpserve with 1, 2 and 4 threads, and the bare app with /predict's steps
added one at a time."""

from __future__ import annotations

import time
from pathlib import Path

from profile_apps import BARE_APP, STEPS_APP, start_gunicorn
from profile_common import ROOT, ROW
from serve_bench import lua_post, run_wrk

from tests.server import Server, make_store


def bare_flask(wrk: str, tmp: Path, seconds: int) -> dict:
    (tmp / "bare_app.py").write_text(BARE_APP)
    port, proc = start_gunicorn(tmp, "bare_app", threads=4)
    try:
        time.sleep(2)
        get = run_wrk(wrk, f"http://127.0.0.1:{port}/a", seconds, 8, None)["rps"]
        post = run_wrk(
            wrk,
            f"http://127.0.0.1:{port}/b",
            seconds,
            8,
            lua_post(tmp / "bare.lua", {"inputs": ROW}),
        )["rps"]
    finally:
        proc.terminate()
        proc.wait()
    return {
        "case": "bare Flask, gunicorn 1 worker x 4 threads (requests/s)",
        "get": get,
        "post_1_row": post,
        "ratio": round(post / get, 3),
    }


def threads(wrk: str, tmp: Path, seconds: int) -> list[dict]:
    script = lua_post(tmp / "p1.lua", {"inputs": ROW})
    out = []
    for n in (1, 2, 4):
        with Server(
            make_store(tmp / f"models-{n}"), log_requests="false", workers=1, threads=n
        ) as s:
            url = f"http://127.0.0.1:{s.port}"
            h = run_wrk(wrk, url + "/healthz", seconds, 8, None)["rps"]
            p = run_wrk(wrk, url + "/predict", seconds, 8, script)["rps"]
        out.append(
            {
                "case": f"bpserve, 1 worker x {n} threads (requests/s)",
                "healthz": h,
                "predict_1_row": p,
                "ratio": round(p / h, 3),
            }
        )
    return out


def steps(wrk: str, tmp: Path, seconds: int) -> dict:
    journal = make_store(tmp / "models-steps") / "digits" / "journal.log"
    journal.write_bytes(b"")
    app = STEPS_APP.format(root=str(ROOT), models=str(ROOT / "models"), journal=str(journal))
    (tmp / "steps_app.py").write_text(app)
    port, proc = start_gunicorn(tmp, "steps_app", threads=1)
    script = lua_post(tmp / "steps.lua", {"inputs": ROW})
    out = {"case": "bare app + /predict's steps, 1 worker x 1 thread (us per request)"}
    names = ["read_body", "+parse", "+to_array", "+forward", "+reply", "+reply_python_labels"]
    try:
        time.sleep(3)
        for path, name in [*enumerate(names, 1), ("stat", "read_body_and_stat")]:
            rps = run_wrk(wrk, f"http://127.0.0.1:{port}/{path}", seconds, 8, script)["rps"]
            out[name] = round(1e6 / rps)
    finally:
        proc.terminate()
        proc.wait()
    return out
