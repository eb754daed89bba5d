"""wrk, the load generator of the serve benchmarks: installing it, its scripts, one run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit("wrk is missing: apt-get install wrk (needs root)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or sys.exit("wrk did not install")


def lua_post(path: Path, body: dict, token: str | None = None) -> Path:
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if token:
        headers += f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    path.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n{headers}')
    return path


def lua_post_bytes(path: Path, body: bytes, headers: dict[str, str]) -> Path:
    """A wrk script that POSTs any bytes (kept in a file beside it, read in binary mode)."""
    data = path.with_suffix(".body")
    data.write_bytes(body)
    lines = [
        'wrk.method = "POST"',
        f'local f = assert(io.open({json.dumps(str(data))}, "rb"))',
        'wrk.body = f:read("*a")',
        "f:close()",
        *(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(wrk: str, url: str, seconds: int, connections: int, script: Path | None) -> dict:
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": round(rps, 1),
        "p50_ms": round(pct("50"), 3),
        "p99_ms": round(pct("99"), 3),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else None,
    }
