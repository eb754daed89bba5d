"""Request bodies, read once with their limits: a JSON body for the native API, the raw
bytes for V2 (whose binary extension is not JSON)."""

from __future__ import annotations

from flask import Request, current_app

from service.errors import ApiError


def body_of(request: Request) -> bytes:
    """The body, once its type is JSON (415 otherwise); size is capped by the app (413)."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send Content-Type: application/json (got {mimetype or 'none'!r})",
        )
    return read_body(request)


def read_body(request: Request) -> bytes:
    """The raw body, capped at BPSERVE_MAX_BODY_BYTES (413 over it).

    A body with Content-Length over the cap is refused before reading (a before_request
    hook); a chunked one is read one byte past the cap here, because werkzeug would cut
    it silently at the limit and the client would hear "malformed JSON" instead.
    """
    if request.content_length is not None:
        return request.get_data(cache=False)
    limit = current_app.extensions["bpserve"].settings.max_body_bytes
    data = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "body_too_large", f"body exceeds the limit of {limit} bytes")
    return data
