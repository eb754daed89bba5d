"""ONNX MLP -> ``Model``: what ``bptrain import`` publishes as a new version.

The file is parsed as protobuf (no code runs, nothing else is read: tensors stored in
external files are refused), checked with ``onnx.checker``, walked (graph.py), and built
into a network whose parameters are the graph's weights, copied bit for bit.  Metadata
that ``export_onnx`` writes (labels, loss, optimizer settings) is read back, so export
then import gives the same model; arguments override it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import onnx
from onnx import ModelProto, TensorProto
from onnx.external_data_helper import load_external_data_for_model

from training.interop.graph import walk
from training.interop.layers import InteropError, assemble, binary_to_softmax, build_model
from training.model import Model

META = "bpserve."


def load_onnx(path: str | Path, **options: Any) -> tuple[Model, dict[str, Any]]:
    """Read an ONNX file into a Model; also returns where it came from (for the manifest)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises its own DecodeError family
        raise InteropError(f"not an ONNX model ({type(exc).__name__}: {exc})") from None
    _load_external(proto, path.parent)
    model, source = import_onnx(proto, **options)
    source.update(file=Path(path).name, sha256=hashlib.sha256(data).hexdigest())
    return model, source


def import_onnx(
    data: bytes | ModelProto,
    *,
    labels: list[str] | None = None,
    loss: str | None = None,
    learning_rate: float | None = None,
    momentum: float | None = None,
) -> tuple[Model, dict[str, Any]]:
    """An ONNX MLP (bytes or a ModelProto) as a Model with a fresh optimizer state."""
    if isinstance(data, ModelProto):
        proto = data
    else:
        try:
            proto = onnx.load_model_from_string(bytes(data))
        except Exception as exc:  # protobuf raises its own DecodeError family
            raise InteropError(f"not an ONNX model ({type(exc).__name__}: {exc})") from None
    for t in proto.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            raise InteropError(
                f"tensor {t.name!r} is stored in an external file; import the file by path"
            )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise InteropError(f"onnx.checker: {str(exc).splitlines()[0]}") from None
    found = walk(proto.graph)
    layers = assemble(found.steps)
    if found.binary:
        if layers[-1].activation != "sigmoid" or layers[-1].weight.shape[1] != 1:
            raise InteropError("a [1 - p, p] tail needs a one-unit sigmoid output")
        layers[-1] = binary_to_softmax(layers[-1])
    if found.n_features is not None and found.n_features != layers[0].weight.shape[0]:
        raise InteropError(
            f"input {found.input_name!r} has {found.n_features} features, "
            f"the first layer takes {layers[0].weight.shape[0]}"
        )
    meta = _metadata(proto)
    model = build_model(
        layers,
        standardizer=found.prefix.standardizer(layers[0].weight.shape[0]),
        labels=labels if labels is not None else meta.get("labels", found.labels),
        loss=loss or meta.get("loss"),
        learning_rate=learning_rate if learning_rate is not None else meta.get("learning_rate"),
        momentum=momentum if momentum is not None else meta.get("momentum"),
        feature_names=meta.get("feature_names"),
    )
    source = {
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "opset": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
        "input": found.input_name,
    }
    return model, source


def _load_external(proto: ModelProto, folder: Path) -> None:
    """Tensors that torch.onnx.export writes beside the graph (``<file>.data``): read
    from plain files in the graph's own folder only (no paths, no symlinks)."""
    for t in proto.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        where = {e.key: e.value for e in t.external_data}
        loc = where.get("location", "")
        target = folder / loc
        if not loc or "/" in loc or "\\" in loc or loc.startswith(".") or target.is_symlink():
            raise InteropError(f"tensor {t.name!r}: external data {loc!r} is not a file beside it")
    try:
        load_external_data_for_model(proto, str(folder))
    except (OSError, ValueError) as exc:
        raise InteropError(f"external tensor data: {exc}") from None


def _metadata(proto: ModelProto) -> dict[str, Any]:
    """bpserve's own metadata_props (JSON values), as export_onnx writes them."""
    out: dict[str, Any] = {}
    for prop in proto.metadata_props:
        if not prop.key.startswith(META):
            continue
        key = prop.key[len(META) :]
        if key not in ("labels", "loss", "learning_rate", "momentum", "feature_names"):
            continue
        try:
            out[key] = json.loads(prop.value)
        except json.JSONDecodeError:
            raise InteropError(f"metadata {prop.key!r} is not JSON: {prop.value[:80]!r}") from None
    return out
