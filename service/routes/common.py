"""What every route needs: the app's state, a checked request body (``service.bodies``),
and the one online step both train APIs take."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flask import current_app, g, request

from service import consistency, idempotency
from service.bodies import body_of, read_body
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


__all__ = ["AppState", "body_of", "read_body", "state", "step"]


def state() -> AppState:
    return current_app.extensions["bpserve"]


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
