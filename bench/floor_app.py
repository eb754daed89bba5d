"""The floor under any server built as the design card asks (Flask on gunicorn): bpserve's
own gunicorn settings and worker serving apps that do no inference at all, for
bench/peer_bench.py.  What bpserve's 1-row rate is to these says how much of a request's
cost is the model server's own, and what no Flask/gunicorn server could go below.

- ``app``: a bare WSGI callable that reads the body and answers fixed bytes;
- ``flask_app``: a Flask route doing the same (Flask's own cost on top).
"""

from __future__ import annotations

import os

from flask import Flask, Response, request

REPLY = os.environ.get("BPSERVE_FLOOR_REPLY", '{"ok": true}').encode()
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(REPLY)))]


def app(environ: dict, start_response) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("200 OK", HEADERS)
    return [REPLY]


flask_app = Flask(__name__)


@flask_app.route("/<path:path>", methods=["GET", "POST"])
def answer(path: str) -> Response:
    request.get_data()
    return Response(REPLY, content_type="application/json")
