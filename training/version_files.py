"""A model to and from the files of one version folder: the tensors and the manifest.

The store (training/store.py) decides where and when a version is written and makes
it complete or absent; this module says what the files hold.  ``weights.safetensors``
has each layer's ``layerN.weight`` and ``layerN.bias``, ``optimizer.safetensors`` the
optimizer state (``velocity``, ``step``), and ``manifest.json`` the rest
(training/manifest.py), with the sha256 of every other file.  ``read_model`` checks all
of it (listed files, hashes, architecture, shapes, dtypes) before building the model,
and raises ``CorruptVersion`` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from training.engine.network import Network
from training.engine.optimizers import SGD
from training.errors import CorruptVersion
from training.manifest import (
    FORMAT_VERSION,
    Architecture,
    Inputs,
    Manifest,
    OptimizerConfig,
    Preprocessing,
)
from training.model import Model
from training.preprocessing import prep_from_manifest, prep_to_manifest

WEIGHTS, OPTIMIZER, MANIFEST = "weights.safetensors", "optimizer.safetensors", "manifest.json"


def weights_blob(model: Model) -> bytes:
    net = model.network
    tensors = {}
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        tensors[f"layer{i}.weight"] = np.ascontiguousarray(w)
        tensors[f"layer{i}.bias"] = np.ascontiguousarray(b)
    return save(tensors)


def optimizer_blob(model: Model) -> bytes:
    state = model.optimizer_state or model.optimizer.init_state(model.network.params)
    velocity = np.ascontiguousarray(state["velocity"])
    steps = np.asarray(state["step"], dtype=np.int64).reshape(1)
    return save({"velocity": velocity, "step": steps})


def manifest_fields(
    model: Model,
    name: str,
    parent_version: int | None,
    online_steps: int,
    training: dict[str, Any] | None,
    data_fingerprint: str | None,
    metrics: dict[str, float | int | None] | None,
) -> dict[str, Any]:
    """The manifest of ``model`` but for its version number and its files' hashes."""
    net = model.network
    o = model.optimizer
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "parent_version": parent_version,
        "online_steps": online_steps,
        "created_at": datetime.now(UTC),
        "architecture": Architecture(
            sizes=net.sizes, activations=net.activation_names, loss=net.loss.name
        ),
        "dtype": str(net.dtype),
        "inputs": Inputs(n_features=model.n_features, feature_names=model.feature_names),
        "labels": model.labels,
        "preprocessing": Preprocessing(**prep_to_manifest(model.preprocessing)),
        "targets": model.targets.to_manifest() if model.targets is not None else None,
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
    }


def sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise CorruptVersion(path, f"unreadable ({exc.strerror})") from None


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptVersion(path, f"unreadable safetensors file ({exc})") from None


def read_model(vdir: Path, manifest: Manifest) -> Model:
    """The model a checked manifest describes, from the files beside it, all verified."""
    for fname in (WEIGHTS, OPTIMIZER):
        if fname not in manifest.files:
            raise CorruptVersion(vdir / MANIFEST, f"does not list {fname}")
    present = {p.name for p in vdir.iterdir()} - {MANIFEST}
    for fname in sorted(present - set(manifest.files)):
        raise CorruptVersion(vdir / fname, "file not listed in the manifest")
    for fname, digest in manifest.files.items():
        fpath = vdir / fname
        if "/" in fname or not fpath.is_file() or fpath.is_symlink():
            raise CorruptVersion(fpath, "missing file")
        if sha256(fpath) != digest:
            raise CorruptVersion(fpath, "sha256 does not match the manifest (corrupt or changed)")
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
        raise CorruptVersion(vdir / MANIFEST, f"invalid architecture: {exc}") from None
    tensors = _read_tensors(vdir / WEIGHTS)
    expected = {}
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        expected[f"layer{i}.weight"], expected[f"layer{i}.bias"] = w, b
    if set(tensors) != set(expected):
        raise CorruptVersion(
            vdir / WEIGHTS, f"tensors {sorted(tensors)} do not match the architecture"
        )
    for key, dst in expected.items():
        src = tensors[key]
        if src.shape != dst.shape or src.dtype != dst.dtype:
            raise CorruptVersion(
                vdir / WEIGHTS,
                f"{key} is {src.dtype} {src.shape}, the manifest says {dst.dtype} {dst.shape}",
            )
        dst[...] = src
    opt = _read_tensors(vdir / OPTIMIZER)
    velocity, step = opt.get("velocity"), opt.get("step")
    if (
        velocity is None
        or step is None
        or velocity.shape != net.params.shape
        or velocity.dtype != net.dtype
    ):
        raise CorruptVersion(vdir / OPTIMIZER, "optimizer state does not match the architecture")
    try:
        pre, targets = prep_from_manifest(
            manifest.preprocessing.model_dump(exclude_none=True), manifest.targets
        )
        if manifest.inputs.n_features != pre.n_columns:
            raise ValueError(f"inputs do not match the {pre.n_columns} preprocessed columns")
        model = Model(
            net,
            pre,
            manifest.labels,
            manifest.inputs.feature_names,
            SGD(**manifest.optimizer.model_dump()),
            {"velocity": velocity.copy(), "step": np.asarray(step[0], dtype=np.int64).copy()},
            targets,
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptVersion(vdir / MANIFEST, str(exc)) from None
    return model
