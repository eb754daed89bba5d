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
    stream = request.environ["wsgi.input"]
    length = request.content_length
    if length is not None:
        # Read straight from the server's stream: the length is checked against the cap
        # already, and werkzeug's own reader (a limiting wrapper around the stream, built
        # per request) would only check it again.
        data = stream.read(length)
        if len(data) < length:
            raise ApiError(
                400, "incomplete_body", f"the body ended after {len(data)} of {length} bytes"
            )
        return data
    limit = current_app.extensions["bpserve"].settings.max_body_bytes
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "body_too_large", f"body exceeds the limit of {limit} bytes")
    return data
