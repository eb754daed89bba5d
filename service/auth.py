"""Bearer tokens, compared in constant time."""

from __future__ import annotations

import hmac

from flask import request

from service.errors import ApiError


def require(secret: bytes | None, what: str, disabled_message: str | None = None) -> None:
    """Raise unless the request carries ``Authorization: Bearer <secret>``.

    With no secret configured: open when ``disabled_message`` is None, else 403.
    """
    if secret is None:
        if disabled_message is None:
            return
        raise ApiError(403, "forbidden", disabled_message)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", f"{what} needs 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(token.strip().encode(), secret):
        raise ApiError(401, "unauthorized", "wrong token")
