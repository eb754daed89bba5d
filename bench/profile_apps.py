"""The bare apps bench/serve_profile.py's live parts run under gunicorn, and how they are
started: BARE_APP (parts 3 and 7) and STEPS_APP, /predict's steps one at a time (parts 5
and 6)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import profile_common  # noqa: F401  (puts the repository on the import path)

from tests.server import free_port

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
