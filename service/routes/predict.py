from __future__ import annotations

from flask import Blueprint, current_app, g, request

from service import auth, consistency, metrics
from service.routes.common import body_of, state
from service.schemas import PredictRequest, PredictResponse, parse, to_matrix

bp = Blueprint("predict", __name__)


@bp.post("/predict")
@bp.post("/models/<name>/predict")
@bp.post("/models/<name>/versions/<int:version>/predict")
def predict(name: str | None = None, version: int | None = None):
    st = state()
    auth.require(st.predict_secret, "/predict")
    req = parse(PredictRequest, body_of(request))
    name = name or req.model or st.settings.default_model
    version = version if version is not None else req.version
    if version is None:
        served = consistency.served_at_least(st.registry, name, st.settings.min_step_wait)
        model, version = served.model, served.version
    else:
        model, version = st.registry.version(name, version)
    g.model, g.version = name, version
    x = to_matrix(req.inputs, "inputs", model.n_features, st.settings.max_rows, model.network.dtype)
    outputs = model.output(x)
    g.rows = len(x)
    metrics.predicted(name, version, len(x))
    values = outputs.tolist()
    resp = PredictResponse.model_construct(
        model=name, version=version, outputs=values, labels=model.predict_labels(outputs, values)
    )
    return current_app.response_class(resp.model_dump_json(), mimetype="application/json")
