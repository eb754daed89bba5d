"""Bearer tokens, compared in constant time, and the decorators routes use them by.

Like flaskr's ``login_required``: a route states what it needs once, above it, and
the check runs before the route reads anything.  ``train_required`` guards what
changes a model (no train token configured: 403, training is off);
``predict_required`` guards reading it when a predict token is configured (open
otherwise).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request

from service.errors import ApiError

DISABLED = "online training disabled: set BPSERVE_TRAIN_TOKEN (or BPSERVE_TRAIN_TOKEN_FILE)"

View = TypeVar("View", bound=Callable[..., Any])


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


def _secrets() -> Any:
    return current_app.extensions["bpserve"]


def train_required(view: View) -> View:
    """The route changes a model: it needs the train token, and is off without one."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        require(_secrets().train_secret, "this endpoint", DISABLED)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def predict_required(what: str) -> Callable[[View], View]:
    """The route reads a model: it needs the predict token when one is configured."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            require(_secrets().predict_secret, what)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate
