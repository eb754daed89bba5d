"""The app factory: settings in, a Flask app with its blueprints, limits and hooks out."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, g, request
from threadpoolctl import threadpool_limits

from service import consistency, errors, logs, metrics
from service.backend import open_backend
from service.learning_state import LearningState
from service.registry import Registry
from service.routes import health, models, predict, train, v2
from service.routes.common import AppState
from service.settings import Settings

log = logging.getLogger("bpserve")


class BpserveFlask(Flask):
    """Flask, with the answer of ``ensure_sync`` kept per function.

    Flask asks it for every hook and view on every request, and each answer inspects the
    function's code flags again; bpserve's functions do not change once registered.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        sync = self._sync.get(func)
        if sync is None:
            sync = self._sync[func] = super().ensure_sync(func)
        return sync


def create_app(settings: Settings | None = None, *, watch: bool = True) -> Flask:
    settings = settings or Settings()
    logs.setup()
    # Each worker's BLAS to its own thread(s), so that workers do not oversubscribe cores.
    threadpool_limits(settings.blas_threads, user_api="blas")

    app = BpserveFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes  # 413 before reading the body
    app.json.sort_keys = False  # type: ignore[attr-defined]
    backend = open_backend(settings)
    registry = Registry(
        backend.store,
        settings.reload_interval,
        settings.snapshot_every,
        journals=backend.journals,
        learning=LearningState(settings.state_dir),
    )
    registry.refresh()
    if settings.default_model not in registry.all():
        log.error(
            "default model not loaded",
            extra={
                "event": "not_ready",
                "model": settings.default_model,
                "models_dir": str(settings.models_dir),
            },
        )
    app.extensions["bpserve"] = AppState(
        settings, registry, settings.train_secret(), settings.predict_secret()
    )
    errors.register(app)
    consistency.install(app)
    for bp in (predict.bp, train.bp, models.bp, health.bp, v2.bp):
        app.register_blueprint(bp)

    @app.before_request
    def _start() -> None:
        g.t0 = time.perf_counter()
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            raise errors.ApiError(
                413,
                "body_too_large",
                f"body of {length} bytes exceeds the limit of {settings.max_body_bytes}",
            )

    @app.after_request
    def _record(resp):
        # The context-local proxies resolve on every use: each is resolved once here.
        here, req = g._get_current_object(), request._get_current_object()
        seconds = time.perf_counter() - here.get("t0", time.perf_counter())
        rule = req.url_rule
        endpoint = rule.rule if rule else "unmatched"
        model, version = here.get("model", ""), here.get("version", "")
        metrics.request(endpoint, resp.status_code, seconds, model, str(version))
        # Which worker answered: lets a client (and the tests) see that all of them agree.
        resp.headers["X-Bpserve-Worker"] = str(os.getpid())
        if settings.log_requests:
            log.info(
                "request",
                extra={
                    "method": req.method,
                    "path": req.path,
                    "status": resp.status_code,
                    "ms": round(seconds * 1000, 3),
                    "model": model or None,
                    "version": version or None,
                    "rows": here.get("rows"),
                },
            )
        return resp

    if watch:
        registry.start_watching()
    return app
