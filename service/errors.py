"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from training.journal_errors import JournalConflict, StorageUnavailable

log = logging.getLogger("bpserve")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(status: int, code: str, message: str, details: Any = None):
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    resp = jsonify({"error": body})
    resp.status_code = status
    return resp


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(StorageUnavailable)
    @app.errorhandler(JournalConflict)
    def _storage(exc: Exception):
        # The database is away or restarting: learning waits, /predict goes on serving.
        resp = error_response(503, "storage_unavailable", str(exc))
        resp.headers["Retry-After"] = "1"
        return resp

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # Logged with its trace for the operator; the client gets no internals.
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
