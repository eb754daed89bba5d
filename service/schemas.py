"""Request and response models; the one place where JSON becomes numpy.

Bodies are parsed and validated by pydantic's Rust core straight from the bytes
(``model_validate_json``), then converted to an array in one ``np.asarray`` call: no
Python loop per value.  Malformed JSON is a 400, valid JSON with bad content a 422.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.cells import CellRows
from service.errors import ApiError, validation_problems

Row = list[float]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# A real row of the default digits model, so that clients and fuzzers reach the model.
# fmt: off
_EXAMPLE_ROW = [
    0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0,
    0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0,
    0, 6, 13, 10, 0, 0, 0,
]
# fmt: on


class PredictRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"inputs": [_EXAMPLE_ROW]}]})

    # Numbers first (the fast path); rows with objects, text or nulls: service/cells.py.
    inputs: list[Row] | Row | CellRows = Field(
        description="feature rows, one row as a flat list, or rows as objects keyed by "
        "column name (text categories and nulls allowed)",
        union_mode="left_to_right",
    )
    model: str | None = None
    version: int | None = Field(default=None, ge=1)


class PredictResponse(BaseModel):
    model: str
    version: int
    outputs: list[list[float]]
    labels: list[str] | None = None


class StepParameters(_Request):
    """Per-step overrides of the model's optimizer settings (both train endpoints)."""

    learning_rate: float | None = Field(default=None, gt=0, le=100)
    momentum: float | None = Field(default=None, ge=0, lt=1)


class TrainStepRequest(StepParameters):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"inputs": [_EXAMPLE_ROW], "targets": ["0"], "learning_rate": 0.001}]
        }
    )

    inputs: list[Row] | Row | CellRows = Field(union_mode="left_to_right")
    targets: list[str | int] | list[Row] | list[float] = Field(
        description="class labels, target vectors, or one number per row (regression)"
    )
    model: str | None = None


class TrainStepResponse(BaseModel):
    model: str
    version: int
    step: int
    loss_before: float
    loss_after: float


class LoadRequest(_Request):
    version: int = Field(ge=1)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def parse(model: type[BaseModel], body: bytes) -> Any:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise ApiError(
                400, "malformed_json", f"request body is not valid JSON: {errors[0]['msg']}"
            ) from None
        details = validation_problems(exc)
        first = details[0]
        raise ApiError(
            422, "invalid_request", f"{first['loc'] or 'body'}: {first['msg']}", details
        ) from None


def to_matrix(
    rows: list[Row] | Row, field: str, n_cols: int, max_rows: int, dtype: np.dtype
) -> np.ndarray:
    """Rows to a (n x n_cols) array, with errors that say which field and what was expected."""
    if rows and not isinstance(rows[0], list):
        rows = [rows]  # type: ignore[list-item]
    if not rows:
        raise ApiError(422, "empty_batch", f"{field} is empty: send at least one row")
    if len(rows) > max_rows:
        raise ApiError(
            422, "too_many_rows", f"{field} has {len(rows)} rows; the limit is {max_rows}"
        )
    try:
        arr = np.asarray(rows, dtype=dtype)
    except ValueError:
        lengths = sorted({len(r) for r in rows})  # type: ignore[arg-type]
        raise ApiError(
            422,
            "ragged_rows",
            f"{field} rows have different lengths {lengths[:5]}; every row needs {n_cols} values",
        ) from None
    if arr.shape[1] != n_cols:
        raise ApiError(
            422,
            "wrong_feature_count",
            f"{field} rows have {arr.shape[1]} values; the model expects {n_cols}",
            {"expected": n_cols, "got": int(arr.shape[1])},
        )
    if not np.isfinite(arr).all():  # finite JSON numbers can still overflow float32
        raise ApiError(
            422, "non_finite_input", f"{field} holds values out of range for {arr.dtype}"
        )
    return arr


def openapi() -> dict[str, Any]:
    """OpenAPI 3.1 generated from the pydantic models above."""
    models = [
        PredictRequest,
        PredictResponse,
        TrainStepRequest,
        TrainStepResponse,
        LoadRequest,
        ErrorResponse,
    ]
    schemas: dict[str, Any] = {}
    for m in models:
        schema = m.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[m.__name__] = schema

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def op(
        summary: str,
        req: str | None,
        resp: str | None,
        auth: bool = False,
        params: list | None = None,
    ):
        o: dict[str, Any] = {
            "summary": summary,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": ref(resp)}}}
                if resp
                else {"description": "OK"},
                "4XX": {
                    "description": "client error",
                    "content": {"application/json": {"schema": ref("ErrorResponse")}},
                },
            },
        }
        if req:
            o["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(req)}},
            }
        if auth:
            o["security"] = [{"bearer": []}]
        if params:
            o["parameters"] = params
        return o

    name_p = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "example": "digits",
    }
    ver_p = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
        "example": 1,
    }
    from service.openapi_v2 import paths as v2_paths  # here: it imports the V2 routes

    v2, v2_schemas = v2_paths()
    schemas.update(v2_schemas)
    key_p = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": 255},
    }
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "bpserve", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/predict": {
                "post": op(
                    "Predict with the default or named model", "PredictRequest", "PredictResponse"
                )
            },
            "/models/{name}/predict": {
                "post": op("Predict", "PredictRequest", "PredictResponse", params=[name_p])
            },
            "/models/{name}/versions/{version}/predict": {
                "post": op(
                    "Predict with one version",
                    "PredictRequest",
                    "PredictResponse",
                    params=[name_p, ver_p],
                )
            },
            "/train-step": {
                "post": op(
                    "One online optimizer step", "TrainStepRequest", "TrainStepResponse", True
                )
            },
            "/models/{name}/train-step": {
                "post": op(
                    "One online optimizer step",
                    "TrainStepRequest",
                    "TrainStepResponse",
                    True,
                    [name_p],
                )
            },
            "/models": {"get": op("Models, versions and what is served", None, None)},
            "/models/{name}": {
                "get": op("A model's manifest, public part", None, None, params=[name_p])
            },
            "/models/{name}/load": {
                "post": op("Serve (pin) a version", "LoadRequest", None, True, [name_p])
            },
            "/models/{name}/snapshot": {
                "post": op("Publish the online weights", None, None, True, [name_p])
            },
            "/healthz": {"get": op("Liveness", None, None)},
            "/readyz": {"get": op("Readiness: the default model is loaded", None, None)},
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "OK"}},
                }
            },
        },
    }
    for path in ("/train-step", "/models/{name}/train-step", "/models/{name}/snapshot"):
        post = doc["paths"][path]["post"]
        post["parameters"] = [*post.get("parameters", []), key_p]
    doc["paths"].update(v2)
    return doc
