from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service import metrics
from service.routes.common import state
from service.schemas import openapi

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    st = state()
    name = st.settings.default_model
    served = st.registry.all().get(name)
    if served is None:
        return jsonify(
            {"status": "not ready", "model": name, "load_error": st.registry.load_error(name)}
        ), 503
    learning = st.registry.learning_status(name)
    return jsonify(
        {"status": "ready", "model": name, "version": served.version, "learning": learning}
    )


@bp.get("/metrics")
def prometheus():
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi())
