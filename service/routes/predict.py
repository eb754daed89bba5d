from __future__ import annotations

from flask import Blueprint, current_app, g, request

from service import auth, consistency, fastjson, metrics
from service.cells import column_space, model_rows
from service.routes.common import body_of, state
from service.schemas import PredictRequest, parse, to_matrix
from training.model import FEW_ROWS

bp = Blueprint("predict", __name__)


@bp.post("/predict")
@bp.post("/models/<name>/predict")
@bp.post("/models/<name>/versions/<int:version>/predict")
@auth.predict_required("/predict")
def predict(name: str | None = None, version: int | None = None):
    st = state()
    body = body_of(request)
    # A plain numeric body skips pydantic's float per value; anything else, and any body
    # the fast path would refuse, goes the strict way, which words the error.
    fast = fastjson.predict_request(body)
    req = None if fast else parse(PredictRequest, body)
    asked_name, asked_version = (fast.model, fast.version) if fast else (req.model, req.version)
    name = name or asked_name or st.settings.default_model
    version = version if version is not None else asked_version
    if version is None:
        served = consistency.served_at_least(st.registry, name, st.settings.min_step_wait)
        model, version = served.model, served.version
    else:
        model, version = st.registry.version(name, version)
    g.model, g.version = name, version
    dtype, max_rows = model.network.dtype, st.settings.max_rows
    x = fast.matrix(model.n_features, max_rows, dtype) if fast else None
    if x is None:
        req = req or parse(PredictRequest, body)
        x = model_rows(req.inputs, "inputs", model, max_rows, to_matrix)
    else:
        x = column_space(model, x)
    outputs = model.output(x)
    g.rows = len(x)
    metrics.predicted(name, version, len(x))
    few = outputs.tolist() if len(outputs) <= FEW_ROWS else None
    reply = {
        "model": name,
        "version": version,
        "outputs": few if few is not None else fastjson.reply_values(outputs),
        "labels": model.predict_labels(outputs, few),
    }
    return current_app.response_class(fastjson.dumps(reply), mimetype="application/json")
