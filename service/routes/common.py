"""What every route needs: the app's state and a checked request body."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Request, current_app

from service.errors import ApiError
from service.registry import Registry
from service.settings import Settings


@dataclass
class AppState:
    settings: Settings
    registry: Registry
    train_secret: bytes | None
    predict_secret: bytes | None


def state() -> AppState:
    return current_app.extensions["bpserve"]


def body_of(request: Request) -> bytes:
    """The body, once its type is JSON (415 otherwise); size is capped by the app (413)."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send Content-Type: application/json (got {mimetype or 'none'!r})",
        )
    if request.content_length is None:
        # A chunked body: werkzeug would silently cut it at the limit (and the client
        # would hear "malformed JSON"), so read one byte past the limit and say 413.
        limit = state().settings.max_body_bytes
        data = request.environ["wsgi.input"].read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, "body_too_large", f"body exceeds the limit of {limit} bytes")
        return data
    return request.get_data(cache=False)
