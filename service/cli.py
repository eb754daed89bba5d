"""``bpserve``: start gunicorn with the package's configuration."""

from __future__ import annotations

import os
import sys


def main() -> None:
    argv = ["gunicorn", "--config", "python:service.gunicorn_conf", *sys.argv[1:]]
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", *argv[1:]])
