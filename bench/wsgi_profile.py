"""A 1-row V2 JSON request through bpserve's Flask app called as a WSGI app in this
process (no HTTP, no gunicorn), beside bench/floor_app.py's Flask route: microseconds per
call, and with ``--profile`` where bpserve's own part goes (cProfile, the top functions).

What it is for: the HTTP benchmarks say how far bpserve is from its floor; this says which
of its own parts make up the difference.  Figures under cProfile are inflated; compare
them with each other only.

    .venv/bin/python bench/wsgi_profile.py
    .venv/bin/python bench/wsgi_profile.py --profile --sort cumulative --top 40
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

from profile_common import ROW

from tests.server import make_store


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=3000, help="per repetition")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--sort", default="tottime")
    p.add_argument("--top", type=int, default=35)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.environ["BPSERVE_MODELS_DIR"] = str(make_store(tmp / "models"))
    os.environ["BPSERVE_LOG_REQUESTS"] = "false"
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
    os.environ["BPSERVE_STATE_DIR"] = tempfile.mkdtemp()
    from bench.floor_app import flask_app
    from service.app import create_app

    app = create_app(watch=False)
    tensor = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ROW}
    body = json.dumps({"inputs": [tensor]}).encode()

    def call(wsgi) -> bytes:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/v2/models/digits/infer",
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_HOST": "127.0.0.1:8000",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        out = wsgi(environ, lambda status, headers, exc_info=None: None)
        data = b"".join(out)
        getattr(out, "close", lambda: None)()
        return data

    assert json.loads(call(app))["outputs"], "bpserve did not answer the request"
    for name, wsgi in (("bpserve V2 infer", app), ("floor: Flask route", flask_app)):
        us = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.calls):
                call(wsgi)
            us.append((time.perf_counter() - t0) / args.calls * 1e6)
        each = [round(v, 1) for v in us]
        print(json.dumps({"case": name, "us_per_call_median": statistics.median(us), "each": each}))
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            call(app)
        prof.disable()
        pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
