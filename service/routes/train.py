from __future__ import annotations

import numpy as np
from flask import Blueprint, g, jsonify, request

from service import auth, consistency, idempotency
from service.cells import model_rows
from service.errors import ApiError
from service.routes.common import body_of, state
from service.schemas import TrainStepRequest, TrainStepResponse, parse, to_matrix
from training.model import Model

bp = Blueprint("train", __name__)
DISABLED = "online training disabled: set BPSERVE_TRAIN_TOKEN (or BPSERVE_TRAIN_TOKEN_FILE)"


def require_token() -> None:
    auth.require(state().train_secret, "this endpoint", DISABLED)


@bp.post("/train-step")
@bp.post("/models/<name>/train-step")
def train_step(name: str | None = None):
    st = state()
    require_token()
    req = parse(TrainStepRequest, body_of(request))
    name = name or req.model or st.settings.default_model
    served = st.registry.get(name)
    model = served.model
    g.model = name
    x = model_rows(req.inputs, "inputs", model, st.settings.max_rows, to_matrix)
    targets = req.targets
    if model.labels is None and all(type(t) in (int, float) for t in targets):
        targets = [[float(t)] for t in targets]  # one number per row: a 1-output regression
    if targets and isinstance(targets[0], list):
        y = to_matrix(
            targets, "targets", model.network.n_outputs, st.settings.max_rows, model.network.dtype
        )
    else:
        if any(isinstance(t, list) for t in targets):
            raise ApiError(422, "invalid_targets", "targets must be all labels or all vectors")
        try:
            y = model.targets_from_labels(targets)
        except ValueError as exc:
            raise ApiError(422, "unknown_label", str(exc)) from None
    if len(y) != len(x):
        raise ApiError(422, "row_mismatch", f"{len(x)} input rows but {len(y)} targets")
    g.rows = len(x)
    return jsonify(step(name, model, x, y, req.learning_rate, req.momentum))


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
