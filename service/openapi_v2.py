"""The Open Inference Protocol routes in ``/openapi.json``, so that clients and fuzzers
(schemathesis) see them as they see the native API.  Error bodies are the protocol's
``{"error": "..."}``."""

from __future__ import annotations

from typing import Any

from service.v2_codec import InferRequest

_ROW = [0.0] * 64


def paths() -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, component schemas) for the V2 routes."""
    schemas: dict[str, Any] = {}
    infer = InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(infer.pop("$defs", {}))
    schemas["V2InferRequest"] = infer
    schemas["V2Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }

    def op(summary: str, body: str | None = None, example: Any = None, **extra: Any):
        o: dict[str, Any] = {
            "summary": summary,
            "responses": {
                "200": {"description": "OK"},
                "4XX": {
                    "description": "client error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/V2Error"}}
                    },
                },
            },
            **extra,
        }
        if body:
            media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{body}"}}
            if example is not None:
                media["example"] = example
            o["requestBody"] = {"required": True, "content": {"application/json": media}}
        return o

    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
            "example": "digits"}  # fmt: skip
    version = {"name": "version", "in": "path", "required": True,
               "schema": {"type": "string"}, "example": "1"}  # fmt: skip
    key = {"name": "Idempotency-Key", "in": "header", "required": False,
           "schema": {"type": "string", "maxLength": 255}}  # fmt: skip
    tensor = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": _ROW}
    infer_example = {"inputs": [tensor]}
    train_example = {
        "inputs": [tensor, {"name": "target", "shape": [1], "datatype": "BYTES", "data": ["0"]}]
    }
    return {
        "/v2": {"get": op("Server metadata")},
        "/v2/health/live": {"get": op("Liveness")},
        "/v2/health/ready": {"get": op("Readiness")},
        "/v2/models/{name}": {"get": op("Model metadata", parameters=[name])},
        "/v2/models/{name}/ready": {"get": op("Model readiness", parameters=[name])},
        "/v2/models/{name}/versions/{version}": {
            "get": op("Version metadata", parameters=[name, version])
        },
        "/v2/models/{name}/versions/{version}/ready": {
            "get": op("Version readiness", parameters=[name, version])
        },
        "/v2/models/{name}/infer": {
            "post": op("Inference", "V2InferRequest", infer_example, parameters=[name])
        },
        "/v2/models/{name}/versions/{version}/infer": {
            "post": op(
                "Inference with one version",
                "V2InferRequest",
                infer_example,
                parameters=[name, version],
            )
        },
        "/v2/models/{name}/train": {
            "post": op(
                "bpserve extension: one online step",
                "V2InferRequest",
                train_example,
                parameters=[name, key],
                security=[{"bearer": []}],
            )
        },
    }, schemas
