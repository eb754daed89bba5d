"""V2 (Open Inference Protocol) tensors: request bodies to arrays, arrays to reply bodies.

Split out of ``service/routes/v2.py`` so that the routes hold the protocol's endpoints
and this module the encodings: JSON ``data`` (flat or nested), the binary tensor data
extension (``Inference-Header-Content-Length`` says how long the JSON header is, raw
little-endian bytes follow), and the numeric fast path of ``service.fastjson`` for
large JSON tensors.  Errors are ``ApiError`` with the protocol's 400s.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np
from flask import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service import fastjson
from service.errors import ApiError, validation_problems
from service.routes.common import read_body

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


def _validate(head: bytes) -> InferRequest:
    try:
        return InferRequest.model_validate_json(head)
    except ValidationError as exc:
        first = validation_problems(exc)[0]
        where = first["loc"] or "body"
        raise ApiError(
            400, "bad_request", f"invalid inference request at {where}: {first['msg']}"
        ) from None


def parse_header(head: bytes) -> InferRequest:
    """The JSON header as an ``InferRequest``.

    Where every input's ``data`` is a plain list of numbers (flat, or equal-length
    rows), pydantic validates the header without them and the numbers arrive as one
    float64 array each; otherwise, or if that small header fails, the whole header
    goes through pydantic as before, which words the error.
    """
    split = fastjson.infer_header(head)
    if split is not None:
        small, data = split
        try:
            req = InferRequest.model_validate_json(small)
        except ValidationError:
            return _validate(head)
        for i, values in data.items():
            req.inputs[i].data = values
        return req
    return _validate(head)


def read(request: Request, limit: int) -> tuple[InferRequest, memoryview]:
    """The JSON header and the binary part, with size, encoding and header checks."""
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
    return parse_header(head), rest


class Binary:
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


def tensor_array(
    t: Tensor, binary: Binary, cols: int, dtype: np.dtype, max_rows: int, holes: bool = False
) -> np.ndarray:
    """A checked (n x cols) array of ``dtype`` from a JSON or binary input tensor; with
    ``holes`` a NaN is a missing cell (the model's preprocessing fills it), Inf is not."""
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
    if (np.isinf(arr) if holes else ~np.isfinite(arr)).any():
        raise ApiError(400, "bad_data", f"input {t.name!r} holds NaN, Inf or values out of range")
    return arr


def find(req: InferRequest, name: str) -> Tensor:
    for t in req.inputs:
        if t.name == name:
            return t
    raise ApiError(
        400, "missing_input", f"no input tensor named {name!r}; got {[t.name for t in req.inputs]}"
    )


def bytes_tensor(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in (v.encode() for v in values))


def reply(
    head: dict[str, Any], entries: list[tuple[dict[str, Any], Any, bytes | None]]
) -> tuple[bytes, list[bytes]]:
    """The reply's JSON header and its binary parts.

    ``entries`` are (output's metadata, its JSON values, its binary payload or None):
    numpy values are written by orjson directly, as float64 so that each value's text
    reads back as the same double that ``tolist`` gave.
    """
    outputs, blobs = [], []
    for entry, values, payload in entries:
        if payload is not None:
            entry["parameters"] = {"binary_data_size": len(payload)}
            blobs.append(payload)
        elif isinstance(values, np.ndarray):
            entry["data"] = fastjson.reply_values(values.ravel())
        else:
            entry["data"] = values
        outputs.append(entry)
    return fastjson.dumps({**head, "outputs": outputs}), blobs
