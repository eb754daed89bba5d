"""A real PostgreSQL 15 server for the tests: initdb, pg_ctl, a fresh database per test.

PostgreSQL refuses to run as root, and CI runs as root, so as root the cluster is made
and run by the ``postgres`` user (its data folder chowned to it); as anyone else, by
the current user.  The server listens on a free loopback port and on a socket in its
own folder, with ``fsync`` on: the crash tests (``crash``: ``pg_ctl stop -m immediate``)
must see what a real power cut would leave.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.server import free_port

BIN = Path(os.environ.get("BPSERVE_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


def _as_owner(args: list[str]) -> list[str]:
    """Run a server binary as ``postgres`` when we are root, else as ourselves."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PgServer:
    """One PostgreSQL cluster in a temporary folder; ``start``/``stop``/``crash``."""

    def __init__(self) -> None:
        if not (BIN / "initdb").is_file():
            raise RuntimeError(f"PostgreSQL server binaries not found in {BIN} (BPSERVE_PG_BIN)")
        # Not under pytest's tmp_path: its folders are 0700 root, which postgres cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="bpserve-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            _as_owner(
                [
                    str(BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",  # loopback and a private socket folder, tests only
                    "--no-sync",  # the cluster's creation; the server itself runs with fsync on
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )
        self.running = False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _ctl(self, *args: str) -> None:
        proc = subprocess.run(
            _as_owner([str(BIN / "pg_ctl"), "-D", str(self.data), *args]),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            tail = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {proc.stderr}\n{tail}")

    def start(self) -> PgServer:
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=on -c synchronous_commit=on -c max_connections=200 "
            "-c shared_buffers=16MB"
        )
        self._ctl("-w", "-t", "60", "-l", str(self.log), "-o", opts, "start")
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self._ctl("-w", "-t", "60", "-m", "fast", "stop")
            self.running = False

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: no checkpoint, no clean shutdown; WAL replay on start."""
        self._ctl("-w", "-t", "60", "-m", "immediate", "stop")
        self.running = False

    def restart(self) -> None:
        self.start()

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            if self.running:
                self._ctl("-w", "-t", "30", "-m", "immediate", "stop")
        finally:
            self.running = False
            shutil.rmtree(self.root, ignore_errors=True)
