"""PgStore against a real PostgreSQL (tests/pg.py): seeding, fetching into an empty cache,
versions pending until their compaction, and bptrain publishing to the database."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.server import DEFAULT_MODEL, ROOT, make_store
from training.errors import UnknownVersion
from training.journal import Record
from training.pg_journal import PostgresJournal
from training.pg_store import PgStore
from training.store import ModelStore


def test_store_seeds_an_empty_database_and_an_empty_cache_fetches(tmp_path, db):
    seeded = tmp_path / "a"
    (seeded / "digits").mkdir(parents=True)
    shutil.copytree(DEFAULT_MODEL, seeded / "digits" / "1")
    a = PgStore(seeded, db)
    assert a.sync() == [("digits", 1)]
    assert a.sync() == []  # already there
    b = PgStore(tmp_path / "b", db)  # a replica with an empty folder
    assert b.names() == ["digits"] and b.versions("digits") == [1]
    model, _ = b.load("digits", 1)
    assert (tmp_path / "b" / "digits" / "1" / "weights.safetensors").read_bytes() == (
        DEFAULT_MODEL / "weights.safetensors"
    ).read_bytes()
    v2 = b.save("digits", model, parent_version=1)
    assert v2 == 2 and a.versions("digits") == [1, 2]
    # The seeded replica's cache lacks version 2: fetched, then verified by ModelStore.
    assert a.load("digits", 2)[1].parent_version == 1
    # A corrupt cached copy is not used: its manifest's sha256 differs from the database's.
    (seeded / "digits" / "2" / "manifest.json").write_text("{}")
    assert a.load("digits", 2)[1].version == 2
    assert ModelStore(seeded).load("digits", 2)[1].version == 2


def test_a_snapshots_version_is_hidden_until_its_compaction_commits(tmp_path, db):
    seeded = make_store(tmp_path / "a")
    a = PgStore(seeded, db)
    assert a.sync() == [("digits", 1)]
    model, _ = a.load("digits", 1)
    # Published for a snapshot, then the process dies before the compaction.
    assert a.save_pending("digits", model, parent_version=1) == 2
    for store in (a, PgStore(tmp_path / "b", db)):
        assert store.versions("digits") == [1] and store.latest("digits") == 1
        with pytest.raises(UnknownVersion):
            store.load("digits", 2)
    assert not (seeded / "digits" / "2").exists()  # staged aside, so
    assert PgStore(seeded, db).sync() == []  # a restart does not seed it
    # The next snapshot drops it and takes its number; its compaction makes it live.
    assert a.save_pending("digits", model, parent_version=1, online_steps=3) == 2
    j = PostgresJournal(db, "digits")
    with j.locked():
        j.rebase(Record("base", {"version": 2, "segment": "s2"}))
    assert a.versions("digits") == [1, 2]
    assert a.load("digits", 2)[1].online_steps == 3  # the staged copy, moved into the cache
    assert not (seeded / ".pending" / "digits" / "2").exists()
    assert PgStore(tmp_path / "b", db).load("digits", 2)[1].online_steps == 3  # fetched


def bptrain(*args: str) -> dict:
    """bptrain as a user runs it, its --json answer."""
    out = subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout)


def test_bptrain_publishes_to_the_database(tmp_path, pg_url, db):

    flags = "--format digits --name tiny --hidden 8 --epochs 2 --quiet --json"
    where = ["--models-dir", str(tmp_path / "trainer"), "--database-url", pg_url]
    assert bptrain(*flags.split(), *where)["version"] == 1
    elsewhere = PgStore(tmp_path / "replica", db)
    assert elsewhere.versions("tiny") == [1]
    manifest = elsewhere.load("tiny", 1)[1]
    assert "database_url" not in manifest.training  # the URL may hold a password
    # evaluate reads the version from the database into an empty folder of its own
    score = ["evaluate", "--name", "tiny", "--format", "digits", "--json"]
    where = ["--models-dir", str(tmp_path / "scorer"), "--database-url", pg_url]
    assert bptrain(*score, *where)["version"] == 1
