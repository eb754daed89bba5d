"""What every route needs: the app's state, a checked request body, and the one online
step both train APIs take."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flask import Request, current_app, g, request

from service import consistency, idempotency
from service.errors import ApiError
from service.registry import Registry
from service.schemas import TrainStepResponse
from service.settings import Settings
from training.model import Model


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
    return read_body(request)


def read_body(request: Request) -> bytes:
    """The raw body, capped at BPSERVE_MAX_BODY_BYTES (413 over it).

    A body with Content-Length over the cap is refused before reading (a before_request
    hook); a chunked one is read one byte past the cap here, because werkzeug would cut
    it silently at the limit and the client would hear "malformed JSON" instead.
    """
    if request.content_length is not None:
        return request.get_data(cache=False)
    limit = state().settings.max_body_bytes
    data = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "body_too_large", f"body exceeds the limit of {limit} bytes")
    return data


def step(
    name: str,
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    learning_rate: float | None,
    momentum: float | None,
) -> dict:
    """One online step through the registry, answered the same way by both train APIs
    (with an Idempotency-Key already applied: the answer it had).

    ``y`` is in the targets' own units; it is scaled here, before ``apply_step``, so the
    journal records what the step trained on and a replay repeats it bit for bit.  The
    losses answered are the training loss, on the scaled targets.
    """
    y = model.scale_targets(y)
    key = idempotency.key_of(request)
    result = state().registry.train_step(name, x, y, learning_rate, momentum, key)
    g.version = result["version"]
    consistency.note(state().registry, name)
    return TrainStepResponse(model=name, **result).model_dump()
