from __future__ import annotations

import os

from flask import Blueprint, jsonify, request

from service import auth, consistency, idempotency
from service.routes.common import body_of, state
from service.schemas import LoadRequest, parse

bp = Blueprint("models", __name__)


@bp.get("/models")
def list_models():
    st = state()
    out = []
    served_now = st.registry.all()
    for name in st.registry.names():
        served = served_now.get(name)
        out.append(
            {
                "name": name,
                "versions": st.registry.stored_versions(name),
                "served_version": served.version if served else None,
                "online_steps": served.online_steps if served else 0,
                "pinned": served.pinned if served else False,
            }
        )
    return jsonify({"models": out})


@bp.get("/models/<name>")
def describe(name: str):
    st = state()
    served = consistency.served_at_least(st.registry, name, st.settings.min_step_wait)
    m = served.manifest
    return jsonify(
        {
            "name": name,
            "served_version": served.version,
            "pinned": served.pinned,
            "online_steps": served.online_steps,
            "online": served.online.as_dict(),
            "weights_sha256": served.weights_digest(),
            "parent_version": m.parent_version,
            "created_at": m.created_at.isoformat(),
            "inputs": m.inputs.model_dump(),
            "columns": served.model.preprocessing.columns(m.inputs.feature_names),
            "labels": m.labels,
            "architecture": m.architecture.model_dump(),
            "dtype": m.dtype,
            "metrics": m.metrics,
            "versions": st.registry.stored_versions(name),
            "load_error": st.registry.load_error(name),
            "learning": st.registry.learning_status(name),
            "worker": os.getpid(),
            "watcher": st.registry.watcher_stats(),
        }
    )


@bp.post("/models/<name>/load")
@auth.train_required
def load(name: str):
    req = parse(LoadRequest, body_of(request))
    served = state().registry.pin(name, req.version)
    return jsonify({"model": name, "version": served.version, "pinned": True})


@bp.post("/models/<name>/snapshot")
@auth.train_required
def snapshot(name: str):
    result = state().registry.snapshot(name, idempotency.key_of(request))
    consistency.note(state().registry, name)
    return jsonify(result)
