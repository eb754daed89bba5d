"""``bpserve``: start gunicorn with the package's configuration (``BPSERVE_`` variables)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:service.gunicorn_conf",
        *sys.argv[1:],
    ]
    # Replace this process, so that signals from a supervisor reach gunicorn directly.
    os.execv(sys.executable, args)  # noqa: S606
