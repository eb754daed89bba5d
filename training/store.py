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
dtypes, and raises ``StoreError`` naming the file and the problem.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from training.data import Standardizer
from training.model import Model
from training.network import Network
from training.optimizers import SGD

FORMAT_VERSION = 1
WEIGHTS, OPTIMIZER, MANIFEST, PINS = (
    "weights.safetensors",
    "optimizer.safetensors",
    "manifest.json",
    "pins.json",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Test hook: called with the name of each publish step as it completes, so a test can
# kill the publishing process between any two steps.  None in normal use.
on_publish_step: Callable[[str], None] | None = None


class StoreError(Exception):
    """A model version that cannot be used: names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Architecture(_Strict):
    sizes: list[int] = Field(min_length=2)
    activations: list[str]
    loss: str


class Inputs(_Strict):
    n_features: int = Field(ge=1)
    feature_names: list[str] | None = None


class Preprocessing(_Strict):
    mean: list[float]
    scale: list[float]


class OptimizerConfig(_Strict):
    learning_rate: float
    momentum: float
    nesterov: bool = False
    weight_decay: float = 0.0
    clip_norm: float | None = None


class Manifest(_Strict):
    format_version: Literal[1]
    name: str
    version: int = Field(ge=1)
    parent_version: int | None = None
    online_steps: int = 0
    created_at: datetime
    architecture: Architecture
    dtype: Literal["float32", "float64"]
    inputs: Inputs
    labels: list[str] | None = None
    preprocessing: Preprocessing
    optimizer: OptimizerConfig
    training: dict[str, Any] = {}
    data_fingerprint: str | None = None
    metrics: dict[str, float | int | None] = {}
    files: dict[str, str]


def check_name(name: object) -> str:
    """A model name from outside: no separators, no traversal, nothing hidden."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise StoreError(
            str(name)[:80], "invalid model name (letters, digits, '.', '_', '-'; no '..')"
        )
    return name


def check_version(version: object) -> int:
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise StoreError(str(version)[:80], "invalid version (a positive integer)")
    return version


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
            raise StoreError(path, "model folder is a symlink; refusing to follow it")
        return path

    def version_dir(self, name: str, version: int) -> Path:
        path = self.model_dir(name) / str(check_version(version))
        if path.is_symlink():
            raise StoreError(path, "version folder is a symlink; refusing to follow it")
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

    def latest(self, name: str) -> int | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    # -- saving --------------------------------------------------------------------------
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
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            net = model.network
            tensors = {}
            for i, (w, b) in enumerate(zip(net.weights, net.biases)):
                tensors[f"layer{i}.weight"] = np.ascontiguousarray(w)
                tensors[f"layer{i}.bias"] = np.ascontiguousarray(b)
            save_file(tensors, str(tmp / WEIGHTS))
            _step("weights_written")
            state = model.optimizer_state or model.optimizer.init_state(net.params)
            save_file(
                {
                    "velocity": np.ascontiguousarray(state["velocity"]),
                    "step": np.asarray(state["step"], dtype=np.int64).reshape(1),
                },
                str(tmp / OPTIMIZER),
            )
            _step("optimizer_written")
            for fname, data in (extra_files or {}).items():
                if "/" in fname or fname.startswith(".") or fname == MANIFEST:
                    raise StoreError(fname, "invalid extra file name")
                (tmp / fname).write_bytes(data)
            files = {}
            for f in sorted(tmp.iterdir()):
                os.chmod(f, 0o644)  # safetensors writes 0600; other users (a container) read
                _fsync_path(f)
                files[f.name] = _sha256(f)
            _step("files_synced")
            o = model.optimizer
            fields = {
                "format_version": FORMAT_VERSION,
                "name": name,
                "parent_version": parent_version,
                "online_steps": online_steps,
                "created_at": datetime.now(UTC),
                "architecture": Architecture(
                    sizes=net.sizes, activations=net.activation_names, loss=net.loss.name
                ),
                "dtype": str(net.dtype),
                "inputs": Inputs(n_features=net.n_inputs, feature_names=model.feature_names),
                "labels": model.labels,
                "preprocessing": Preprocessing(
                    mean=model.standardizer.mean.tolist(), scale=model.standardizer.scale.tolist()
                ),
                "optimizer": OptimizerConfig(
                    learning_rate=o.learning_rate,
                    momentum=o.momentum,
                    nesterov=o.nesterov,
                    weight_decay=o.weight_decay,
                    clip_norm=o.clip_norm,
                ),
                "training": training or {},
                "data_fingerprint": data_fingerprint,
                "metrics": metrics or {},
                "files": files,
            }
            with self._lock(name):
                _step("locked")
                self._remove_stale_tmp(model_dir)
                if version is None:
                    version = (self.latest(name) or 0) + 1
                elif (model_dir / str(version)).exists():
                    raise StoreError(model_dir / str(version), "version exists already")
                manifest = Manifest(version=version, **fields)
                mpath = tmp / MANIFEST
                mpath.write_text(manifest.model_dump_json(indent=2))
                _fsync_path(mpath)
                _fsync_path(tmp)
                _step("manifest_written")
                os.rename(tmp, model_dir / str(version))
                _step("renamed")
                _fsync_path(model_dir)
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
            raise StoreError(vdir, "no such version")
        try:
            raw = json.loads(mpath.read_bytes())
        except FileNotFoundError:
            raise StoreError(mpath, "missing file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(mpath, f"bad JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise StoreError(mpath, "bad JSON (not an object)")
        if raw.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                mpath,
                f"unknown format version {raw.get('format_version')!r}; "
                f"this bpserve reads {FORMAT_VERSION}",
            )
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise StoreError(mpath, f"invalid manifest at {where}: {first['msg']}") from None
        if manifest.name != name or manifest.version != version:
            raise StoreError(mpath, f"manifest says {manifest.name}/{manifest.version}")
        return manifest

    def load(self, name: str, version: int | None = None) -> tuple[Model, Manifest]:
        """Load and verify a version (the latest when ``version`` is None)."""
        if version is None:
            version = self.latest(name)
            if version is None:
                raise StoreError(self.model_dir(name), "no versions of this model")
        manifest = self.read_manifest(name, version)
        vdir = self.version_dir(name, version)
        for fname in (WEIGHTS, OPTIMIZER):
            if fname not in manifest.files:
                raise StoreError(vdir / MANIFEST, f"does not list {fname}")
        present = {p.name for p in vdir.iterdir()} - {MANIFEST}
        for fname in sorted(present - set(manifest.files)):
            raise StoreError(vdir / fname, "file not listed in the manifest")
        for fname, digest in manifest.files.items():
            fpath = vdir / fname
            if "/" in fname or not fpath.is_file() or fpath.is_symlink():
                raise StoreError(fpath, "missing file")
            if _sha256(fpath) != digest:
                raise StoreError(fpath, "sha256 does not match the manifest (corrupt or changed)")
        arch = manifest.architecture
        try:
            net = Network(
                arch.sizes,
                arch.activations[:-1],
                arch.activations[-1],
                arch.loss,
                dtype=manifest.dtype,
                seed=None,
            )
        except (ValueError, TypeError) as exc:
            raise StoreError(vdir / MANIFEST, f"invalid architecture: {exc}") from None
        tensors = self._read_tensors(vdir / WEIGHTS)
        expected = {}
        for i, (w, b) in enumerate(zip(net.weights, net.biases)):
            expected[f"layer{i}.weight"], expected[f"layer{i}.bias"] = w, b
        if set(tensors) != set(expected):
            raise StoreError(
                vdir / WEIGHTS, f"tensors {sorted(tensors)} do not match the architecture"
            )
        for key, dst in expected.items():
            src = tensors[key]
            if src.shape != dst.shape or src.dtype != dst.dtype:
                raise StoreError(
                    vdir / WEIGHTS,
                    f"{key} is {src.dtype} {src.shape}, the manifest says {dst.dtype} {dst.shape}",
                )
            dst[...] = src
        opt = self._read_tensors(vdir / OPTIMIZER)
        velocity, step = opt.get("velocity"), opt.get("step")
        if (
            velocity is None
            or step is None
            or velocity.shape != net.params.shape
            or velocity.dtype != net.dtype
        ):
            raise StoreError(vdir / OPTIMIZER, "optimizer state does not match the architecture")
        pre = manifest.preprocessing
        n = arch.sizes[0]
        if len(pre.mean) != n or len(pre.scale) != n or manifest.inputs.n_features != n:
            raise StoreError(vdir / MANIFEST, f"preprocessing or inputs do not match {n} features")
        try:
            model = Model(
                net,
                Standardizer(np.array(pre.mean), np.array(pre.scale)),
                manifest.labels,
                manifest.inputs.feature_names,
                SGD(**manifest.optimizer.model_dump()),
                {"velocity": velocity.copy(), "step": np.asarray(step[0], dtype=np.int64).copy()},
            )
        except ValueError as exc:
            raise StoreError(vdir / MANIFEST, str(exc)) from None
        return model, manifest

    @staticmethod
    def _read_tensors(path: Path) -> dict[str, np.ndarray]:
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise StoreError(path, f"unreadable safetensors file ({exc})") from None

    # -- pins and retention --------------------------------------------------------------
    def pinned(self, name: str) -> set[int]:
        path = self.model_dir(name) / PINS
        try:
            return {int(v) for v in json.loads(path.read_text())}
        except FileNotFoundError:
            return set()
        except (ValueError, TypeError) as exc:
            raise StoreError(path, f"bad pins file ({exc})") from None

    def pin(self, name: str, version: int, pinned: bool = True) -> None:
        """Mark a version as kept by retention (or unmark it)."""
        version = check_version(version)
        with self._lock(name):
            pins = self.pinned(name)
            pins = pins | {version} if pinned else pins - {version}
            path = self.model_dir(name) / PINS
            tmp = path.with_name(f".{PINS}.{os.getpid()}")
            tmp.write_text(json.dumps(sorted(pins)))
            _fsync_path(tmp)
            os.replace(tmp, path)
            _fsync_path(path.parent)

    def retain(
        self, name: str, keep: int, protect: set[int] | frozenset[int] = frozenset()
    ) -> list[int]:
        """Delete versions beyond the newest ``keep``, sparing pinned and protected ones
        (the one being served) and always the newest; return what was deleted."""
        if keep < 1:
            raise ValueError("keep must be >= 1")
        with self._lock(name):
            versions = self.versions(name)
            spare = set(versions[-keep:]) | self.pinned(name) | set(protect)
            doomed = [v for v in versions if v not in spare]
            for v in doomed:
                vdir = self.version_dir(name, v)
                trash = vdir.with_name(f".del-{v}-{uuid.uuid4().hex}")
                os.rename(vdir, trash)  # vanish atomically, then delete at leisure
                shutil.rmtree(trash)
            if doomed:
                _fsync_path(self.model_dir(name))
        return doomed
