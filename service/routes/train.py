from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from service import auth, targets
from service.cells import model_rows
from service.routes.common import body_of, state, step
from service.schemas import TrainStepRequest, parse, to_matrix

bp = Blueprint("train", __name__)


@bp.post("/train-step")
@bp.post("/models/<name>/train-step")
@auth.train_required
def train_step(name: str | None = None):
    st = state()
    req = parse(TrainStepRequest, body_of(request))
    name = name or req.model or st.settings.default_model
    model = st.registry.get(name).model
    g.model = name
    x = model_rows(req.inputs, "inputs", model, st.settings.max_rows, to_matrix)
    y = targets.from_json(model, req.targets, st.settings.max_rows)
    targets.check_rows(x, y, 422)
    g.rows = len(x)
    return jsonify(step(name, model, x, y, req.learning_rate, req.momentum))
