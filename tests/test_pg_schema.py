"""The PostgreSQL schema against a real server (tests/pg.py): created once, migrated from
schema 1, a newer one refused; and the session settings of every pooled connection."""

from __future__ import annotations

import psycopg
import pytest

from training.pg_db import MIGRATIONS, SCHEMA_VERSION, migrate


def test_schema_created_once_and_a_newer_one_refused(pg_url, db):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn) == SCHEMA_VERSION  # a second start: nothing to do
        versions = conn.execute("SELECT version FROM bpserve_schema").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        conn.execute("INSERT INTO bpserve_schema VALUES (%s)", [SCHEMA_VERSION + 1])
        with pytest.raises(RuntimeError, match="newer than this bpserve"):
            migrate(conn)


def test_a_schema_1_database_migrates_its_versions_to_live(pg_url, db):
    """Versions published before the pending state existed stay listed and loadable."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE bpserve_version_files, bpserve_versions, bpserve_journal, bpserve_schema"
        )
        conn.execute(MIGRATIONS[1])
        conn.execute("CREATE TABLE bpserve_schema (version integer PRIMARY KEY)")
        conn.execute("INSERT INTO bpserve_schema VALUES (1)")
        conn.execute(
            "INSERT INTO bpserve_versions (model, version, manifest_sha256) VALUES "
            "('old', 1, 'x'), ('old', 2, 'y')"
        )
        assert migrate(conn) == SCHEMA_VERSION == 2
        rows = conn.execute("SELECT version, state FROM bpserve_versions ORDER BY 1").fetchall()
    assert rows == [(1, "live"), (2, "live")]


def test_the_server_probes_a_writer_that_may_vanish_with_the_lock(db):
    """A replica cut off while holding a model's advisory lock must lose its session (and
    the lock) in seconds: the server-side keepalives of every pooled connection."""
    with db.connection() as conn:
        got = conn.execute(
            "SELECT current_setting('tcp_keepalives_idle'), "
            "current_setting('tcp_keepalives_interval'), current_setting('tcp_keepalives_count'), "
            "current_setting('lock_timeout'), inet_server_addr() IS NOT NULL"
        ).fetchone()
    assert got == ("5", "2", "3", "10s", True)  # over TCP, where keepalives apply
