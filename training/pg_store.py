"""The version store in PostgreSQL; the models folder becomes a local cache.

``PgStore`` keeps ``ModelStore``'s interface.  The database holds every version: one
row in ``bpserve_versions`` (with the sha256 of its manifest) and its files as
``bytea`` in ``bpserve_version_files``, written in one transaction, so a version is
complete or absent there too.  The folder keeps a copy of the versions this replica has
used, published with the folder store's own "complete or absent" rename; a cached copy
is used only when its manifest's sha256 equals the database's (and ``ModelStore.load``
then checks every file against the manifest), otherwise it is fetched again.

Version numbers come from the database: a publisher takes the model's advisory lock in
its transaction, so concurrent publishers on different hosts get distinct numbers.  On
start, versions found in the folder and absent from the database are published to it
(``sync``), so the committed default model seeds an empty database; a replica whose
folder is empty serves what the database holds.

A snapshot's version is published ``pending`` (``save_pending``) and only the journal
compaction onto it makes it ``live``, in that compaction's transaction: until then no
replica lists or loads it, so a compaction that fails (and a withdraw that fails with
it) cannot lead another replica to reload past steps the old journal still holds.  Its
local copy waits in ``.pending/`` and is moved into the cache once it is live.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from training import durable_io as dio
from training.errors import CorruptVersion, StorageUnavailable, UnknownVersion
from training.model import Model
from training.pg_db import Database
from training.store import MANIFEST, Manifest, ModelStore, StoreError, check_name, check_version

log = logging.getLogger("bpserve")
STAGING = ".pending"  # not a model name: ModelStore's listing and ``sync`` skip it


def _lock(conn, name: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"bpserve.store.{name}"])


class PgStore(ModelStore):
    def __init__(self, root: str | Path, db: Database) -> None:
        super().__init__(root)
        self.db = db
        self._staging = ModelStore(self.root / STAGING)

    # -- listing, from the database ----------
    # While the database is away, listings come from the cache (what this replica has
    # used), so that GET /models and the reloader go on without it.
    def names(self) -> list[str]:
        try:
            with self.db.reader() as conn:
                rows = conn.execute(
                    "SELECT DISTINCT model FROM bpserve_versions WHERE state = 'live' ORDER BY 1"
                )
                return [r[0] for r in rows.fetchall()]
        except StorageUnavailable:
            return super().names()

    def versions(self, name: str) -> list[int]:
        check_name(name)
        try:
            with self.db.reader() as conn:
                rows = conn.execute(
                    "SELECT version FROM bpserve_versions WHERE model = %s AND state = 'live' "
                    "ORDER BY 1",
                    [name],
                ).fetchall()
        except StorageUnavailable:
            return super().versions(name)
        return [r[0] for r in rows]

    def has(self, name: str, version: int) -> bool:
        return check_version(version) in self.versions(name)

    def withdraw(self, name: str, version: int) -> None:
        """Take back a snapshot's version whose compaction failed: its staged copy first
        (no database needed), then its row while still ``pending`` (a compaction whose
        commit was reported lost may have landed: then it is live and stays).  If the
        row cannot go, it stays pending, never listed, and the next snapshot drops it."""
        shutil.rmtree(self._staging.version_dir(name, version), ignore_errors=True)
        with self.db.connection() as conn:
            conn.execute(
                "DELETE FROM bpserve_versions WHERE model = %s AND version = %s "
                "AND state = 'pending'",
                [name, version],
            )

    def _digest(self, name: str, version: int) -> str | None:
        with self.db.reader() as conn:
            row = conn.execute(
                "SELECT manifest_sha256 FROM bpserve_versions "
                "WHERE model = %s AND version = %s AND state = 'live'",
                [name, version],
            ).fetchone()
        return row[0] if row else None

    # -- loading: the cache, verified, or a fetch ----------
    def load(self, name: str, version: int | None = None) -> tuple[Model, Manifest]:
        if version is None:
            version = self.latest(name)
            if version is None:
                raise UnknownVersion(self.model_dir(name), "no versions of this model")
        version = check_version(version)
        local = self.version_dir(name, version) / MANIFEST
        try:
            digest = self._digest(name, version)
        except StorageUnavailable:
            if local.is_file():  # the database is away: a cached copy still verifies itself
                return super().load(name, version)
            raise
        if digest is None:
            raise UnknownVersion(self.version_dir(name, version), "no such version")
        cached = local.is_file() and _sha256(local.read_bytes()) == digest
        if not cached and not self._promote(name, version, digest):
            self._fetch(name, version)
        return super().load(name, version)

    def _promote(self, name: str, version: int, digest: str) -> bool:
        """Move this replica's staged copy of a snapshot into the cache, once the
        database says it is live with that very manifest."""
        staged = self._staging.version_dir(name, version)
        if not (staged / MANIFEST).is_file() or _sha256((staged / MANIFEST).read_bytes()) != digest:
            return False
        model_dir = self.model_dir(name)
        dio.mkdir(model_dir, parents=True, exist_ok=True)
        with self._lock(name):
            self._discard_cached(name, version, quiet=True)
            dio.rename(staged, model_dir / str(version))
            dio.fsync_path(model_dir)
        return True

    def _fetch(self, name: str, version: int) -> None:
        """Copy a version from the database into the cache (complete or absent)."""
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT file, sha256, data FROM bpserve_version_files "
                "WHERE model = %s AND version = %s",
                [name, version],
            ).fetchall()
        model_dir = self.model_dir(name)
        dio.mkdir(model_dir, parents=True, exist_ok=True)
        tmp = model_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        dio.mkdir(tmp)
        try:
            for fname, digest, data in rows:
                data = bytes(data)
                if "/" in fname or fname.startswith(".") or _sha256(data) != digest:
                    raise CorruptVersion(f"database {name}/{version}/{fname}", "sha256 mismatch")
                dio.write_file(tmp / fname, data)
            dio.fsync_path(tmp)
            with self._lock(name):
                self._discard_cached(name, version, quiet=True)  # a stale copy: out first
                dio.rename(tmp, model_dir / str(version))
                dio.fsync_path(model_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("version fetched", extra={"event": "fetched", "model": name, "version": version})

    # -- publishing ----------
    def save(self, name: str, model: Model, **fields: Any) -> int:
        """Publish the next version, live: numbered by the database, committed before
        return (bptrain)."""
        return self._publish(name, model, False, fields)

    def save_pending(self, name: str, model: Model, **fields: Any) -> int:
        """Publish a snapshot's version as ``pending``: no replica lists or loads it
        until the journal compaction onto it commits and makes it live.  The caller holds
        the model's journal lock, so any other pending version is one whose compaction
        failed: it goes first (its number may be reused; no replica has a copy)."""
        return self._publish(name, model, True, fields)

    def _publish(self, name: str, model: Model, pending: bool, fields: dict[str, Any]) -> int:
        if fields.pop("version", None) is not None:
            raise ValueError("the database numbers the versions")
        # A pending version waits in a staging folder that the cache never lists or seeds.
        into: ModelStore = self._staging if pending else self
        saved: int | None = None
        try:
            with self.db.connection() as conn, conn.transaction():
                _lock(conn, name)
                if pending:
                    conn.execute(
                        "DELETE FROM bpserve_versions WHERE model = %s AND state = 'pending'",
                        [name],
                    )
                    shutil.rmtree(self._staging.model_dir(name), ignore_errors=True)
                row = conn.execute(
                    "SELECT max(version) FROM bpserve_versions WHERE model = %s", [name]
                ).fetchone()
                version = int(row[0] or 0) + 1
                self._discard_cached(name, version)  # a local version the database never had
                saved = ModelStore.save(into, name, model, version=version, **fields)
                self._insert(conn, name, version, into, "pending" if pending else "live")
        except BaseException:
            if saved is not None and pending:  # not committed: the staged copy goes
                shutil.rmtree(into.version_dir(name, saved), ignore_errors=True)
            elif saved is not None:  # not committed: never to be seeded on a restart
                self._discard_cached(name, saved, quiet=True)
            raise
        return version

    def _discard_cached(self, name: str, version: int, quiet: bool = False) -> None:
        dest = self.version_dir(name, version)
        if dest.exists():
            trash = dest.with_name(f".del-{version}-{uuid.uuid4().hex}")
            dio.rename(dest, trash)
            shutil.rmtree(trash, ignore_errors=True)
            if quiet:
                return
            log.warning(
                "unpublished cached version replaced",
                extra={"event": "cache_replaced", "model": name, "version": version},
            )

    @staticmethod
    def _insert(conn, name: str, version: int, source: ModelStore, state: str = "live") -> None:
        vdir = source.version_dir(name, version)
        files = {p.name: p.read_bytes() for p in sorted(vdir.iterdir()) if p.is_file()}
        conn.execute(
            "INSERT INTO bpserve_versions (model, version, manifest_sha256, state) "
            "VALUES (%s, %s, %s, %s)",
            [name, version, _sha256(files[MANIFEST]), state],
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO bpserve_version_files (model, version, file, sha256, data) "
                "VALUES (%s, %s, %s, %s, %s)",
                [(name, version, f, _sha256(d), d) for f, d in files.items()],
            )

    def sync(self) -> list[tuple[str, int]]:
        """Publish the folder's versions that the database lacks (verified first)."""
        local = ModelStore(self.root)
        published = []
        for name in local.names():
            for version in local.versions(name):
                with self.db.connection() as conn, conn.transaction():
                    _lock(conn, name)
                    row = conn.execute(
                        "SELECT manifest_sha256 FROM bpserve_versions "
                        "WHERE model = %s AND version = %s",
                        [name, version],
                    ).fetchone()
                    if row is not None:
                        mine = _sha256((local.version_dir(name, version) / MANIFEST).read_bytes())
                        if row[0] != mine:
                            log.warning(
                                "cached version differs from the database's; the database wins",
                                extra={"event": "cache_stale", "model": name, "version": version},
                            )
                        continue
                    try:
                        local.load(name, version)  # only a whole, verified version goes up
                    except StoreError as exc:
                        log.error("not published: %s", exc)
                        continue
                    self._insert(conn, name, version, local)
                    published.append((name, version))
        for name, version in published:
            log.info("seeded", extra={"event": "seeded", "model": name, "version": version})
        return published


def open_store(root: str | Path, database_url: str) -> PgStore:
    """The database's store with the folder as its cache, for one process (bptrain)."""
    db = Database(database_url, pool_size=1)
    db.open(attempts=3)
    return PgStore(root, db)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
