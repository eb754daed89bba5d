"""Where a /predict request's time goes, piece by piece (the figures behind BENCHMARKS.md).

1. In process: each step of the 1-row handler, timed with timeit.
2. The 1,000-row forward pass in a fresh process, with glibc's default thresholds and
   after service.malloc.keep_freed_memory() (what each worker does after fork).
3. A bare Flask app under the same gunicorn settings: GET against POST with the same
   1-row body, to see what a body alone costs the stack.
4. bpserve's own /healthz and /predict under gunicorn with 1, 2 and 4 threads.
5. The same bare app with /predict's steps added one at a time (read, parse, array,
   forward, reply), 1 thread: what each step costs in a live worker; the reply with
   labels by numpy's argmax and picked in Python; and reading the body plus one stat
   of a journal file, what each request did before the journal's change counter.
6. That app's whole route (a plain Flask + pydantic + numpy /predict) against a trivial
   GET of the same app, with bpserve's benchmark settings: the yardstick the issue's
   0.85 goal was set by.
7. A bare route that only takes a 1,000-row V2 binary body and answers with as many
   bytes, beside bpserve's V2 binary infer and JSON /predict: what bounds the 5x goal.

    .venv/bin/python bench/serve_profile.py
    .venv/bin/python bench/serve_profile.py --parts 6 --rounds 5    # part 6 alone
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve_bench import (  # noqa: E402
    ensure_wrk,
    lua_post,
    lua_post_bytes,
    rounds_of_wrk,
    run_wrk,
    v2_binary_header,
)

from tests.server import Server, free_port, make_store  # noqa: E402

ROW = np.random.default_rng(0).uniform(0, 16, size=(1, 64)).round(2).tolist()


def us(fn, n: int = 3000) -> float:
    return round(min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6, 1)


def handler_pieces() -> dict:
    from service import metrics
    from service.schemas import PredictRequest, PredictResponse, parse, to_matrix
    from training.store import ModelStore

    model, _ = ModelStore(ROOT / "models").load("digits")
    body = json.dumps({"inputs": ROW}).encode()
    req = parse(PredictRequest, body)
    x = to_matrix(req.inputs, "inputs", 64, 10_000, np.float32)
    out = model.predict(x)

    def reply(out: np.ndarray) -> str:  # as service/routes/predict.py builds it
        values = out.tolist()
        return PredictResponse.model_construct(
            model="digits", version=1, outputs=values, labels=model.predict_labels(out, values)
        ).model_dump_json()

    return {
        "case": "1-row handler pieces, in process (us)",
        "parse_and_validate": us(lambda: parse(PredictRequest, body)),
        "to_array": us(lambda: to_matrix(req.inputs, "inputs", 64, 10_000, np.float32)),
        "forward": us(lambda: model.predict(x)),
        "reply": us(lambda: reply(out)),
        "metrics": us(
            lambda: (
                metrics.request("/predict", 200, 0.001, "digits", "1"),
                metrics.predicted("digits", 1, 1),
            )
        ),
    }


FORWARD_CHILD = textwrap.dedent("""
    import sys, timeit, numpy as np
    sys.path.insert(0, {root!r})
    from threadpoolctl import threadpool_limits
    from training.store import ModelStore
    if sys.argv[1] == "raised":
        from service.malloc import keep_freed_memory
        assert keep_freed_memory()
    model, _ = ModelStore({models!r}).load("digits")
    x = np.random.default_rng(0).uniform(0, 16, size=(1000, 64)).astype(np.float32)
    with threadpool_limits(1, user_api="blas"):
        print(min(timeit.repeat(lambda: model.predict(x), number=300, repeat=3)) / 300 * 1e3)
""")


def forward_malloc() -> dict:
    code = FORWARD_CHILD.format(root=str(ROOT), models=str(ROOT / "models"))
    ms = {
        mode: float(
            subprocess.run(
                [sys.executable, "-c", code, mode], capture_output=True, text=True, check=True
            ).stdout
        )
        for mode in ("default", "raised")
    }
    return {
        "case": "1,000-row forward pass (ms), one BLAS thread",
        "glibc_defaults": round(ms["default"], 3),
        "keep_freed_memory": round(ms["raised"], 3),
    }


INTERLEAVED_CHILD = textwrap.dedent("""
    import json, os, sys, tempfile, time
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, {root!r})
    from threadpoolctl import threadpool_limits
    from tests.server import make_store
    os.environ["BPSERVE_MODELS_DIR"] = str(make_store(Path(tempfile.mkdtemp())))
    os.environ["BPSERVE_LOG_REQUESTS"] = "false"
    from service.app import create_app
    from service.schemas import PredictRequest, parse, to_matrix
    from training.store import ModelStore
    threadpool_limits(1, user_api="blas")
    client = create_app().test_client()
    model, _ = ModelStore({models!r}).load("digits")
    req = parse(PredictRequest, json.dumps({{"inputs": {row!r}}}).encode())
    def numpy_steps():
        x = to_matrix(req.inputs, "inputs", 64, 10_000, np.float32)
        out = model.output(x)
        return out.tolist(), model.predict_labels(out)
    result = {{}}
    for between in (0, 1, 3, 0, 1, 3):
        spent = 0.0
        for _ in range(1000):
            for _ in range(between):
                client.get("/healthz")
            t0 = time.perf_counter()
            numpy_steps()
            spent += time.perf_counter() - t0
        us = round(spent / 1000 * 1e6, 1)
        result[between] = min(us, result.get(between, us))
    print(json.dumps(result))
""")


def interleaved() -> dict:
    """The 1-row handler's numpy steps, alone in a loop and with whole in-process requests
    (Flask's test client, /healthz) run between them, as a live worker runs them."""
    code = INTERLEAVED_CHILD.format(root=str(ROOT), models=str(ROOT / "models"), row=ROW)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    us = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "case": "1-row numpy steps (to array, forward, reply values), us, best of 2 rounds",
        "alone": us["0"],
        "after_1_request": us["1"],
        "after_3_requests": us["3"],
    }


BARE_APP = textwrap.dedent("""
    from flask import Flask, Response, jsonify, request
    app = Flask(__name__)
    REPLY_BYTES = 1000 * 10 * 4  # the digits model's 1,000 x 10 FP32 outputs
    @app.get("/a")
    def a():
        return jsonify({"status": "ok"})
    @app.post("/b")
    def b():
        request.get_data()
        return jsonify({"status": "ok"})
    @app.post("/binary")
    def binary():
        # part 7: take a V2 binary request's body, answer with as many bytes as its reply
        request.get_data()
        return Response(bytes(REPLY_BYTES), mimetype="application/octet-stream")
""")


def start_gunicorn(tmp: Path, module: str, threads: int) -> tuple[int, subprocess.Popen]:
    """``module:app`` from ``tmp`` under gunicorn, 1 gthread worker, on a free port."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        str(threads),
        "--no-control-socket",
        "-b",
        f"127.0.0.1:{port}",
        f"{module}:app",
    ]
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return port, proc


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


STEPS_APP = textwrap.dedent("""
    import os
    import sys
    sys.path.insert(0, {root!r})
    import numpy as np
    from flask import Flask, Response, request
    from threadpoolctl import threadpool_limits
    from service.schemas import PredictRequest, PredictResponse, parse, to_matrix
    from training.store import ModelStore
    threadpool_limits(1, user_api="blas")
    model, _ = ModelStore({models!r}).load("digits")
    app = Flask(__name__)
    OK = '{{"status":"ok"}}'

    @app.post("/<int:upto>")
    def step(upto):
        body = request.get_data()
        if upto >= 2:
            req = parse(PredictRequest, body)
        if upto >= 3:
            x = to_matrix(req.inputs, "inputs", 64, 10_000, np.float32)
        if upto >= 4:
            out = model.predict(x)
        if upto >= 5:
            values = out.tolist()
            # 5: labels by numpy's argmax (as before); 6: picked from the reply's values
            labels = model.predict_labels(out, values if upto >= 6 else None)
            reply = PredictResponse.model_construct(model="digits", version=1, outputs=values,
                                                   labels=labels)
            return Response(reply.model_dump_json(), mimetype="application/json")
        return Response(OK, mimetype="application/json")

    @app.get("/trivial")
    def trivial():
        return Response(OK, mimetype="application/json")

    @app.post("/stat")
    def stat():
        # what every request did before the journal's change counter: one stat of a file
        request.get_data()
        try:
            os.stat({journal!r})
        except FileNotFoundError:
            pass
        return Response(OK, mimetype="application/json")
""")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk case (and round)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of parts 6 and 7")
    parser.add_argument("--parts", default="1,2,3,4,5,6,7", help="which parts, e.g. 2 or 6,7")
    args = parser.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if 1 in parts:
            print(json.dumps(handler_pieces()), flush=True)
            print(json.dumps(interleaved()), flush=True)
        if 2 in parts:
            print(json.dumps(forward_malloc()), flush=True)
        wrk = ensure_wrk() if parts & {3, 4, 5, 6, 7} else ""
        if 3 in parts:
            print(json.dumps(bare_flask(wrk, tmp, args.seconds)), flush=True)
        if 4 in parts:
            for row in threads(wrk, tmp, args.seconds):
                print(json.dumps(row), flush=True)
        if 5 in parts:
            print(json.dumps(steps(wrk, tmp, args.seconds)), flush=True)
        if 6 in parts:
            print(json.dumps(plain(wrk, tmp, args.seconds, args.rounds)), flush=True)
        if 7 in parts:
            print(json.dumps(transport(wrk, tmp, args.seconds, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
