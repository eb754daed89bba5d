"""The Open Inference Protocol (KServe V2) over REST, beside bpserve's own API.

Model metadata names one input tensor, ``input`` (FP32 or FP64, shape [-1, features]),
and two outputs: ``output`` (the output activations, shape [-1, outputs]) and, for
classifiers, ``label`` (BYTES, shape [-1]).  Tensors travel as JSON ``data`` (flat or
nested) or with the binary tensor data extension: ``Inference-Header-Content-Length``
says how long the JSON header is, raw little-endian bytes follow.  Errors are
``{"error": "..."}`` as the protocol gives them.

bpserve's extension ``POST /v2/models/{name}/train`` takes ``input`` and ``target``
tensors (target vectors, or BYTES class labels) and does what ``/train-step`` does,
with the same token rule.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from flask import Blueprint, Response, g, request
from pydantic import ValidationError

from service import auth, errors, metrics, targets
from service.cells import column_space
from service.errors import ApiError, validation_problems
from service.registry import Registry
from service.routes.common import state, step
from service.schemas import StepParameters
from service.v2_codec import (
    HEADER,
    Binary,
    bytes_tensor,
    find,
    read,
    reply,
    tensor_array,
)

bp = Blueprint("v2", __name__, url_prefix="/v2")


errors.register_v2(bp)  # the one error table, in the protocol's {"error": "..."} shape


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


# -- metadata and health --------------------------------------------------------------------
@bp.get("")
def server_metadata():
    return _json(
        {
            "name": "bpserve",
            "version": "0.1.0",
            "extensions": ["binary_tensor_data", "bpserve_train"],
        }
    )


@bp.get("/health/live")
def live():
    # The protocol's REST bodies: clients such as kserve's read them, not only the status.
    return _json({"live": True})


@bp.get("/health/ready")
def ready():
    st = state()
    ok = st.settings.default_model in st.registry.all()
    return _json({"ready": ok}, 200 if ok else 503)


def _model(name: str, version: str | None, registry: Registry | None = None):
    if registry is None:
        registry = state().registry
    if version is None:
        served = registry.get(name)
        return served.model, served.version
    if not version.isdigit():
        raise ApiError(400, "bad_version", f"version must be a positive integer, got {version!r}")
    return registry.version(name, int(version))


def _metadata(name: str, version: str | None):
    model, _ = _model(name, version)
    outputs = [
        {"name": "output", "datatype": _dt_name(model), "shape": [-1, model.network.n_outputs]}
    ]
    if model.labels is not None:
        outputs.append({"name": "label", "datatype": "BYTES", "shape": [-1]})
    return _json(
        {
            "name": name,
            "versions": [str(x) for x in state().registry.stored_versions(name)],
            "platform": "bpserve_mlp",
            "inputs": [
                {"name": "input", "datatype": _dt_name(model), "shape": [-1, model.n_features]}
            ],
            "outputs": outputs,
        }
    )


def _dt_name(model) -> str:
    return "FP32" if model.network.dtype == np.float32 else "FP64"


@bp.get("/models/<name>")
def model_metadata(name: str):
    return _metadata(name, None)


@bp.get("/models/<name>/versions/<version>")
def version_metadata(name: str, version: str):
    return _metadata(name, version)


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    _model(name, version)
    return _json({"name": name, "ready": True})


# -- inference ----------------------------------------------------------------------------------
@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
@auth.predict_required("inference")
def infer(name: str, version: str | None = None):
    st = state()
    req, raw = read(request, st.settings.max_body_bytes)
    model, v = _model(name, version, st.registry)
    g.model, g.version = name, v  # the request's metrics and log line, as /predict's
    binary = Binary(raw)
    for t in req.inputs:
        if t.name != "input":
            raise ApiError(
                400, "unknown_input", f"unknown input {t.name!r}; this model takes 'input'"
            )
    x = tensor_array(
        find(req, "input"),
        binary,
        model.n_features,
        model.network.dtype,
        st.settings.max_rows,
        holes=model.preprocessing.allows_missing,
    )
    g.rows = len(x)
    outputs = model.output(column_space(model, x))
    metrics.predicted(name, v, len(x))
    available = ["output"] + (["label"] if model.labels is not None else [])
    default_binary = bool(req.parameters.get("binary_data_output", False))
    # (name, parameters) of each output asked for, or of every output the model has
    if req.outputs:
        wanted = [(o.name, o.parameters) for o in req.outputs]
    else:
        wanted = [(n, {}) for n in available]
    entries = []
    for out_name, params in wanted:
        if out_name not in available:
            raise ApiError(
                400, "unknown_output", f"unknown output {out_name!r}; this model has {available}"
            )
        as_binary = bool(params.get("binary_data", default_binary))
        if out_name == "output":
            entry = {"name": "output", "datatype": _dt_name(model), "shape": list(outputs.shape)}
            payload = (
                outputs.astype(outputs.dtype.newbyteorder("<"), copy=False).tobytes()
                if as_binary
                else None
            )
            entries.append((entry, outputs, payload))
        else:
            labels = model.predict_labels(outputs) or []
            entry = {"name": "label", "datatype": "BYTES", "shape": [len(labels)]}
            entries.append((entry, labels, bytes_tensor(labels) if as_binary else None))
    top: dict[str, Any] = {"model_name": name, "model_version": str(v)}
    if req.id is not None:
        top["id"] = req.id
    head, blobs = reply(top, entries)
    if not blobs:
        return Response(head, mimetype="application/json")
    resp = Response(head + b"".join(blobs), mimetype="application/octet-stream")
    resp.headers[HEADER] = str(len(head))
    return resp


@bp.post("/models/<name>/train")
@auth.train_required
def train(name: str):
    """bpserve's extension: one online step, as /train-step, from V2 tensors."""
    st = state()
    req, raw = read(request, st.settings.max_body_bytes)
    served = st.registry.get(name)
    model = served.model
    g.model = name
    binary = Binary(raw)
    net = model.network
    holes = model.preprocessing.allows_missing
    x = tensor_array(
        find(req, "input"), binary, model.n_features, net.dtype, st.settings.max_rows, holes
    )
    target = find(req, "target")
    if target.datatype == "BYTES":
        if target.parameters.get("binary_data_size") is not None:
            raise ApiError(400, "bad_data", "send BYTES targets as JSON data")
        if not isinstance(target.data, list):
            raise ApiError(400, "bad_data", "target data must be a list of class labels")
        y = targets.from_labels(model, target.data, 400)
    else:
        y = tensor_array(target, binary, net.n_outputs, net.dtype, st.settings.max_rows)
    targets.check_rows(x, y, 400)
    g.rows = len(x)
    try:
        params = StepParameters.model_validate(
            {k: req.parameters[k] for k in ("learning_rate", "momentum") if k in req.parameters}
        )
    except ValidationError as exc:
        first = validation_problems(exc)[0]
        raise ApiError(400, "bad_parameter", f"parameter {first['loc']}: {first['msg']}") from None
    return _json(
        step(name, model, column_space(model, x), y, params.learning_rate, params.momentum)
    )
