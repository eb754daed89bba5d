"""Every error's HTTP answer, in one table, for both APIs.

Errors are typed where they arise: the engine's in ``training.errors`` (store and
storage), the registry's here.  ``answer`` turns any of them into status, code,
message, details and headers by its class alone; the native API writes the body as
``{"error": {"code", "message", "details"?}}``, the V2 API as ``{"error": "..."}``.

Storage answers: ``storage_full`` is 507 (Insufficient Storage); ``storage_error`` (an
I/O error or a failed fsync), ``read_only`` and ``storage_unavailable`` (the database is
unreachable) are 503, each with ``Retry-After``: the
step was not stored, nothing changed, and the same request (with the same
Idempotency-Key) may be sent again once the operator has made room or fixed the disk.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from training import errors as engine
from training.online import NonFiniteStep

log = logging.getLogger("bpserve")


class ApiError(Exception):
    """A request error raised by a route: it carries its own answer."""

    def __init__(
        self, status: int, code: str, message: str, details: Any = None, headers: Any = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers or {}


# -- the registry's errors ------------------------------------------------------------------
class RegistryError(Exception):
    """Something the registry refuses; ``details`` goes into the native error body."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message, self.details = message, details


class UnknownModel(RegistryError):
    """No model of that name is served."""


class ModelChanged(RegistryError):
    """The served version changed while the request was being prepared; send it again."""


class ModelUnavailable(RegistryError):
    """The model's journal or its base version cannot be read."""


class IdempotencyConflict(RegistryError):
    """An Idempotency-Key already used with a different request."""


@dataclass(frozen=True)
class Answer:
    status: int
    code: str
    message: str
    details: Any = None
    headers: dict[str, str] = field(default_factory=dict)


# class -> (status, code); the first class in the exception's MRO found here wins.
TABLE: dict[type[BaseException], tuple[int, str]] = {
    UnknownModel: (404, "unknown_model"),
    engine.UnknownVersion: (404, "unknown_version"),
    engine.InvalidName: (422, "invalid_name"),
    engine.CorruptVersion: (409, "version_unloadable"),
    engine.StoreError: (409, "version_unloadable"),
    ModelChanged: (409, "model_changed"),
    ModelUnavailable: (503, "model_unavailable"),
    IdempotencyConflict: (422, "idempotency_key_reused"),
    NonFiniteStep: (422, "non_finite_step"),
    engine.StorageFull: (507, "storage_full"),
    engine.StorageReadOnly: (503, "read_only"),
    engine.StorageIOError: (503, "storage_error"),
    engine.StorageUnavailable: (503, "storage_unavailable"),
    engine.JournalConflict: (503, "journal_conflict"),
    engine.StorageError: (503, "storage_error"),
}
READ_ONLY_RETRY_AFTER = 60


def answer(exc: BaseException) -> Answer | None:
    """The HTTP answer for a typed error, or None for an unexpected one (a 500)."""
    if isinstance(exc, ApiError):
        return Answer(exc.status, exc.code, exc.message, exc.details, exc.headers)
    for cls in type(exc).__mro__:
        if cls in TABLE:
            status, code = TABLE[cls]
            break
    else:
        return None
    headers: dict[str, str] = {}
    details = getattr(exc, "details", None)
    if isinstance(exc, engine.StoreError):
        where = "/".join(exc.path.split("/")[-3:])  # model/version/file: no server paths
        message, details = f"{where}: {exc.problem}", {"path": where, "problem": exc.problem}
    elif isinstance(exc, engine.StorageUnavailable):
        message = f"{exc}; nothing was acknowledged: retry (predictions go on being served)"
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, engine.JournalConflict):
        message, headers["Retry-After"] = f"{exc}; send it again", "1"
    elif isinstance(exc, engine.StorageError):
        where = "/".join(exc.path.split("/")[-2:])
        message = f"the model store could not be written ({where}: {exc.op} failed, "
        message += f"{exc.reason}); nothing was stored"
        retry = exc.retry_after or READ_ONLY_RETRY_AFTER
        headers["Retry-After"] = str(retry)
        details = {"op": exc.op, "errno": exc.errno}
    elif isinstance(exc, NonFiniteStep):
        message = f"{exc}; the model is unchanged (lower the learning rate?)"
    else:
        message = getattr(exc, "message", str(exc))
    return Answer(status, code, message, details, headers)


def validation_problems(exc: ValidationError) -> list[dict[str, str]]:
    """The first ten problems pydantic found, each as ``{"loc": "a.b.0", "msg": ...}``:
    the one wording of a validation error, for both APIs and every schema."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in errors[:10]]


def error_response(status: int, code: str, message: str, details: Any = None):
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    resp = jsonify({"error": body})
    resp.status_code = status
    return resp


def _unexpected(exc: BaseException) -> Answer:
    # Logged with its trace for the operator; the client gets no internals.
    log.error("unhandled error", exc_info=exc)
    return Answer(500, "internal_error", "internal server error")


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _any(exc: Exception):
        a = answer(exc) or _unexpected(exc)
        resp = error_response(a.status, a.code, a.message, a.details)
        resp.headers.update(a.headers)
        return resp


def register_v2(bp: Blueprint) -> None:
    """The same table for the V2 routes, in the protocol's ``{"error": "..."}`` shape."""

    def _any(exc: Exception):
        a = answer(exc) or _unexpected(exc)
        body = json.dumps({"error": a.message})
        return Response(body, status=a.status, headers=a.headers, mimetype="application/json")

    for cls in (ApiError, *TABLE):  # not HTTPException: those keep the app's handler
        bp.register_error_handler(cls, _any)
