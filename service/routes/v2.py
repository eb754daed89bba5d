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
import struct
import zlib
from typing import Any

import numpy as np
from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service import auth, metrics
from service.errors import ApiError
from service.routes.common import read_body, state
from service.routes.train import DISABLED, step
from service.schemas import StepParameters

bp = Blueprint("v2", __name__, url_prefix="/v2")
DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
HEADER = "Inference-Header-Content-Length"


class Tensor(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    shape: list[int]
    datatype: str
    data: Any = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


@bp.errorhandler(ApiError)
def _error(exc: ApiError):
    return Response(
        json.dumps({"error": exc.message}), status=exc.status, mimetype="application/json"
    )


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


def _model(name: str, version: str | None):
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
            "versions": [str(x) for x in state().registry.store.versions(name)],
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
def _body() -> tuple[InferRequest, memoryview]:
    """The JSON header and the binary part, with size, encoding and header checks."""
    limit = state().settings.max_body_bytes
    raw = read_body(request)
    encoding = (request.headers.get("Content-Encoding") or "").lower()
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise ApiError(
                400, "bad_encoding", f"cannot decompress the {encoding} body: {exc}"
            ) from None
        if len(raw) > limit or inflater.unconsumed_tail:
            raise ApiError(413, "body_too_large", f"decompressed body exceeds {limit} bytes")
    elif encoding not in ("", "identity"):
        raise ApiError(415, "bad_encoding", f"unsupported Content-Encoding {encoding!r}")
    header_len = request.headers.get(HEADER)
    if header_len is None:
        head, rest = raw, memoryview(b"")
    else:
        if not header_len.isdigit() or int(header_len) > len(raw):
            raise ApiError(
                400,
                "bad_header_length",
                f"{HEADER} is {header_len!r}, the body has {len(raw)} bytes",
            )
        # The tensor bytes as a view, not a slice: not copied on their way to numpy.
        head, rest = raw[: int(header_len)], memoryview(raw)[int(header_len) :]
    try:
        req = InferRequest.model_validate_json(head)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(
            400, "bad_request", f"invalid inference request at {where}: {first['msg']}"
        ) from None
    return req, rest


class _Binary:
    """Hands out the binary part tensor by tensor, in request order."""

    def __init__(self, data: memoryview) -> None:
        self.data, self.at = data, 0

    def take(self, n: int, name: str) -> memoryview:
        if n < 0 or self.at + n > len(self.data):
            raise ApiError(
                400,
                "bad_binary_size",
                f"input {name!r}: binary_data_size {n} runs past the "
                f"{len(self.data)} bytes of binary data",
            )
        out = self.data[self.at : self.at + n]
        self.at += n
        return out


def _tensor_array(
    t: Tensor, binary: _Binary, cols: int, dtype: np.dtype, max_rows: int
) -> np.ndarray:
    if t.datatype not in DTYPES:
        raise ApiError(
            400,
            "bad_datatype",
            f"input {t.name!r} has datatype {t.datatype}; expected FP32 or FP64",
        )
    wire = DTYPES[t.datatype]
    if len(t.shape) != 2 or t.shape[1] != cols or t.shape[0] < 1:
        raise ApiError(
            400, "bad_shape", f"input {t.name!r} has shape {t.shape}; expected [n, {cols}]"
        )
    if t.shape[0] > max_rows:
        raise ApiError(
            400, "too_many_rows", f"input {t.name!r} has {t.shape[0]} rows; the limit is {max_rows}"
        )
    count = t.shape[0] * cols
    size = t.parameters.get("binary_data_size")
    if size is not None:
        if size != count * wire.itemsize:
            raise ApiError(
                400,
                "bad_binary_size",
                f"input {t.name!r}: binary_data_size {size} is not "
                f"{count} x {wire.itemsize} bytes for shape {t.shape}",
            )
        arr = np.frombuffer(binary.take(size, t.name), dtype=wire)
    else:
        try:
            arr = np.asarray(t.data, dtype=wire).reshape(-1)
        except (ValueError, TypeError):
            raise ApiError(400, "bad_data", f"input {t.name!r}: data must be numbers") from None
        if arr.size != count:
            raise ApiError(
                400, "bad_shape", f"input {t.name!r}: {arr.size} values for shape {t.shape}"
            )
    arr = arr.reshape(t.shape).astype(dtype, copy=False)
    if not np.isfinite(arr).all():
        raise ApiError(400, "bad_data", f"input {t.name!r} holds NaN, Inf or values out of range")
    return arr


def _find(req: InferRequest, name: str) -> Tensor:
    for t in req.inputs:
        if t.name == name:
            return t
    raise ApiError(
        400, "missing_input", f"no input tensor named {name!r}; got {[t.name for t in req.inputs]}"
    )


def _bytes_tensor(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in (v.encode() for v in values))


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
    st = state()
    auth.require(st.predict_secret, "inference")
    req, raw = _body()
    model, v = _model(name, version)
    binary = _Binary(raw)
    for t in req.inputs:
        if t.name != "input":
            raise ApiError(
                400, "unknown_input", f"unknown input {t.name!r}; this model takes 'input'"
            )
    x = _tensor_array(
        _find(req, "input"), binary, model.n_features, model.network.dtype, st.settings.max_rows
    )
    outputs = model.output(x)
    metrics.predicted(name, v, len(x))
    available = ["output"] + (["label"] if model.labels is not None else [])
    default_binary = bool(req.parameters.get("binary_data_output", False))
    wanted = req.outputs or [RequestedOutput(name=n) for n in available]
    out_json, blobs = [], []
    for o in wanted:
        if o.name not in available:
            raise ApiError(
                400, "unknown_output", f"unknown output {o.name!r}; this model has {available}"
            )
        as_binary = bool(o.parameters.get("binary_data", default_binary))
        if o.name == "output":
            entry = {"name": "output", "datatype": _dt_name(model), "shape": list(outputs.shape)}
            payload = (
                outputs.astype(outputs.dtype.newbyteorder("<"), copy=False).tobytes()
                if as_binary
                else None
            )
            values = None if as_binary else outputs.ravel().tolist()
        else:
            labels = model.predict_labels(outputs) or []
            entry = {"name": "label", "datatype": "BYTES", "shape": [len(labels)]}
            payload = _bytes_tensor(labels) if as_binary else None
            values = None if as_binary else labels
        if as_binary:
            entry["parameters"] = {"binary_data_size": len(payload)}
            blobs.append(payload)
        else:
            entry["data"] = values
        out_json.append(entry)
    body: dict[str, Any] = {"model_name": name, "model_version": str(v), "outputs": out_json}
    if req.id is not None:
        body["id"] = req.id
    head = json.dumps(body).encode()
    if not blobs:
        return Response(head, mimetype="application/json")
    resp = Response(head + b"".join(blobs), mimetype="application/octet-stream")
    resp.headers[HEADER] = str(len(head))
    return resp


@bp.post("/models/<name>/train")
def train(name: str):
    """bpserve's extension: one online step, as /train-step, from V2 tensors."""
    st = state()
    auth.require(st.train_secret, "this endpoint", DISABLED)
    req, raw = _body()
    served = st.registry.get(name)
    model = served.model
    binary = _Binary(raw)
    net = model.network
    x = _tensor_array(
        _find(req, "input"), binary, model.n_features, net.dtype, st.settings.max_rows
    )
    target = _find(req, "target")
    if target.datatype == "BYTES":
        if target.parameters.get("binary_data_size") is not None:
            raise ApiError(400, "bad_data", "send BYTES targets as JSON data")
        if not isinstance(target.data, list):
            raise ApiError(400, "bad_data", "target data must be a list of class labels")
        try:
            y = model.targets_from_labels(target.data)
        except ValueError as exc:
            raise ApiError(400, "unknown_label", str(exc)) from None
    else:
        y = _tensor_array(target, binary, net.n_outputs, net.dtype, st.settings.max_rows)
    if len(y) != len(x):
        raise ApiError(400, "row_mismatch", f"{len(x)} input rows but {len(y)} targets")
    try:
        params = StepParameters.model_validate(
            {k: req.parameters[k] for k in ("learning_rate", "momentum") if k in req.parameters}
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ApiError(
            400, "bad_parameter", f"parameter {first['loc'][0]}: {first['msg']}"
        ) from None
    return _json(step(name, x, y, params.learning_rate, params.momentum))
