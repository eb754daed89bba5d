"""The versioned model store: ``<root>/<name>/<version>/`` as in TF Serving and Triton.

Each version folder holds ``weights.safetensors``, ``optimizer.safetensors`` and
``manifest.json`` (plus whatever the trainer adds, such as a plot); the manifest lists
the sha256 of every other file.  safetensors because it cannot execute code on load
(no pickle anywhere in the project) and is the ecosystem's standard tensor format.

Publishing writes into a hidden temporary folder on the same filesystem, fsyncs the
files and the folder, takes the model's lock, picks the next version number, writes
the manifest, renames the folder into place and fsyncs the parent: a version is
complete or absent whatever moment a crash hits, and concurrent publishers get
distinct numbers.  Loading verifies every hash, the format version, the shapes and the
dtypes, and raises a ``StoreError`` (``UnknownVersion``, ``CorruptVersion``,
``InvalidName``) naming the file and the problem.  Every write goes through
``training.durable_io``: a full, read-only or failing disk raises a ``StorageError`` and
leaves no version behind (a version whose final folder sync failed is withdrawn).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from training import durable_io as dio
from training.errors import (
    CorruptVersion,
    InvalidName,
    StorageError,
    StorageIOError,
    StoreError,
    UnknownVersion,
)
from training.manifest import (
    FORMAT_VERSION,
    READS,
    Manifest,
)
from training.model import Model
from training.version_files import (
    MANIFEST,
    OPTIMIZER,
    WEIGHTS,
    manifest_fields,
    optimizer_blob,
    read_model,
    weights_blob,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Test hook: called with the name of each publish step as it completes, so a test can
# kill the publishing process between any two steps.  None in normal use.
on_publish_step: Callable[[str], None] | None = None
__all__ = ["FORMAT_VERSION", "Manifest", "ModelStore", "StorageError", "StoreError"]


def check_name(name: object) -> str:
    """A model name from outside: no separators, no traversal, nothing hidden."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidName(
            str(name)[:80], "invalid model name (letters, digits, '.', '_', '-'; no '..')"
        )
    return name


def check_version(version: object) -> int:
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidName(str(version)[:80], "invalid version (a positive integer)")
    return version


_fsync_path = dio.fsync_path


def _write_checked(path: Path, data: bytes) -> str:
    """Write a new file whole and synced, read it back, and return its sha256: bytes
    that differ from what was sent (a write the device mangled) fail the publish."""
    dio.write_file(path, data)
    digest = hashlib.sha256(data).hexdigest()
    with dio.typed(path, "read"):
        back = hashlib.sha256(path.read_bytes()).hexdigest()
    if back != digest:
        raise StorageIOError(path, "write", None, "read back different bytes")
    return digest


def _step(name: str) -> None:
    if on_publish_step is not None:
        on_publish_step(name)


class ModelStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths, checked ----------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        path = self.root / check_name(name)
        if path.is_symlink():
            raise InvalidName(path, "model folder is a symlink; refusing to follow it")
        return path

    def version_dir(self, name: str, version: int) -> Path:
        path = self.model_dir(name) / str(check_version(version))
        if path.is_symlink():
            raise InvalidName(path, "version folder is a symlink; refusing to follow it")
        return path

    # -- listing -----------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.is_symlink() and _NAME.match(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[int]:
        """Complete versions, oldest first (a folder counts once its manifest is in place)."""
        d = self.model_dir(name)
        if not d.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in d.iterdir()
            if p.name.isdigit() and not p.is_symlink() and (p / MANIFEST).is_file()
        )

    def withdraw(self, name: str, version: int) -> None:
        """Take back a version nothing may depend on yet (its journal base failed)."""
        vdir = self.version_dir(name, version)
        trash = vdir.with_name(f".del-{version}-{uuid.uuid4().hex}")
        dio.rename(vdir, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def has(self, name: str, version: int) -> bool:
        """Whether that version is complete in the store now."""
        return (self.version_dir(name, version) / MANIFEST).is_file()

    def latest(self, name: str) -> int | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    # -- saving --------------------------------------------------------------------------
    def save_pending(self, name: str, model: Model, **fields: Any) -> int:
        """Publish a snapshot's version, whose journal compaction comes next.  Here it is
        ``save``: the file journal's base follows under the same lock, and a reload to
        it is a hot reload of this host.  A shared store hides it until then (pg_store)."""
        return self.save(name, model, **fields)

    def save(
        self,
        name: str,
        model: Model,
        *,
        parent_version: int | None = None,
        online_steps: int = 0,
        training: dict[str, Any] | None = None,
        data_fingerprint: str | None = None,
        metrics: dict[str, float | int | None] | None = None,
        extra_files: dict[str, bytes] | None = None,
        version: int | None = None,
    ) -> int:
        """Publish ``model`` as the next version of ``name`` and return its number
        (``version``: exactly that one, for a store that numbers versions elsewhere)."""
        model_dir = self.model_dir(name)
        dio.mkdir(model_dir, parents=True, exist_ok=True)
        tmp = model_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        dio.mkdir(tmp)
        try:
            files = {WEIGHTS: _write_checked(tmp / WEIGHTS, weights_blob(model))}
            _step("weights_written")
            files[OPTIMIZER] = _write_checked(tmp / OPTIMIZER, optimizer_blob(model))
            _step("optimizer_written")
            for fname, data in (extra_files or {}).items():
                if "/" in fname or fname.startswith(".") or fname == MANIFEST:
                    raise InvalidName(fname, "invalid extra file name")
                files[fname] = _write_checked(tmp / fname, data)
            files = dict(sorted(files.items()))
            _step("files_synced")
            fields = manifest_fields(
                model, name, parent_version, online_steps, training, data_fingerprint, metrics
            )
            fields["files"] = files
            with self._lock(name):
                _step("locked")
                self._remove_stale_tmp(model_dir)
                if version is None:
                    version = (self.latest(name) or 0) + 1
                elif (model_dir / str(version)).exists():
                    raise StoreError(model_dir / str(version), "version exists already")
                manifest = Manifest(version=version, **fields)
                mpath = tmp / MANIFEST
                _write_checked(mpath, manifest.model_dump_json(indent=2).encode())
                _fsync_path(tmp)
                _step("manifest_written")
                final = model_dir / str(version)
                dio.rename(tmp, final)
                _step("renamed")
                try:
                    _fsync_path(model_dir)
                except StorageError:
                    # Not durable: withdraw it (no fsync retry) rather than let a
                    # journal name a version a crash could take away.
                    dio.rename(final, tmp)
                    raise
                _step("published")
            return version
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """An exclusive lock per model, across processes (flock on a lock file)."""
        fd = os.open(self.model_dir(name) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _remove_stale_tmp(model_dir: Path) -> None:
        """Temporary folders of publishers that died (their pid is gone)."""
        for p in model_dir.glob(".tmp-*"):
            try:
                pid = int(p.name.split("-")[1])
                os.kill(pid, 0)
            except ProcessLookupError:
                shutil.rmtree(p, ignore_errors=True)
            except (ValueError, IndexError, PermissionError):
                continue

    # -- loading ------------------------------------------------------------------------
    def read_manifest(self, name: str, version: int) -> Manifest:
        vdir = self.version_dir(name, version)
        mpath = vdir / MANIFEST
        if not vdir.is_dir():
            raise UnknownVersion(vdir, "no such version")
        try:
            raw = json.loads(mpath.read_bytes())
        except FileNotFoundError:
            raise CorruptVersion(mpath, "missing file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptVersion(mpath, f"bad JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise CorruptVersion(mpath, "bad JSON (not an object)")
        if raw.get("format_version") not in READS:
            raise CorruptVersion(
                mpath,
                f"unknown format version {raw.get('format_version')!r}; "
                f"this bpserve reads {' and '.join(map(str, READS))}",
            )
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CorruptVersion(mpath, f"invalid manifest at {where}: {first['msg']}") from None
        if manifest.name != name or manifest.version != version:
            raise CorruptVersion(mpath, f"manifest says {manifest.name}/{manifest.version}")
        return manifest

    def load(self, name: str, version: int | None = None) -> tuple[Model, Manifest]:
        """Load and verify a version (the latest when ``version`` is None)."""
        if version is None:
            version = self.latest(name)
            if version is None:
                raise UnknownVersion(self.model_dir(name), "no versions of this model")
        manifest = self.read_manifest(name, version)
        return read_model(self.version_dir(name, version), manifest), manifest
