"""Prometheus metrics, correct under several gunicorn workers.

gunicorn.conf.py points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the
workers start; prometheus_client then keeps each worker's values in memory-mapped
files and ``/metrics`` sums them.  Without that variable (a plain ``flask run``) the
ordinary in-process registry is used.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_MP = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REQUESTS = Counter(
    "bpserve_requests_total", "HTTP requests", ["endpoint", "status", "model", "version"]
)
LATENCY = Histogram(
    "bpserve_request_duration_seconds",
    "Request latency",
    ["endpoint", "model", "version"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ROWS = Counter("bpserve_rows_predicted_total", "Rows predicted", ["model", "version"])
STEPS = Counter("bpserve_train_steps_total", "Online train-steps applied", ["model", "version"])
REFUSED = Counter(
    "bpserve_train_steps_refused_total", "Train-steps refused as non-finite", ["model"]
)
ONLINE_LOSS = Gauge(
    "bpserve_online_loss",
    "Progressive-validation loss (before each step)",
    ["model", "version"],
    multiprocess_mode="livemax",
)
ONLINE_ACC = Gauge(
    "bpserve_online_accuracy",
    "Progressive-validation accuracy",
    ["model", "version"],
    multiprocess_mode="livemax",
)
LOADS = Counter("bpserve_model_loads_total", "Model versions loaded", ["model", "version"])
LOAD_FAILURES = Counter(
    "bpserve_model_load_failures_total", "Model versions that failed to load", ["model", "version"]
)
SERVED = Gauge(
    "bpserve_served_version", "Version served per model", ["model"], multiprocess_mode="livemax"
)
STORAGE_ERRORS = Counter(
    "bpserve_storage_errors_total",
    "Steps or snapshots refused because the store could not be written",
    ["model", "code"],
)
LEARNING_PAUSED = Gauge(
    "bpserve_learning_paused",
    "1 while online learning is paused by a storage failure (per worker, as it last saw)",
    ["model"],
    multiprocess_mode="livemax",
)


# Each metric's child per label set, looked up once per worker: ``labels()`` checks and
# joins the label values and takes a lock on every call, and a request's labels recur.
# prometheus_client keeps the same children itself (nothing here removes one), so this
# holds no more than it does.
_children: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    child = _children.get((metric, labels))
    if child is None:
        child = _children[(metric, labels)] = metric.labels(*labels)
    return child


def request(endpoint: str, status: int, seconds: float, model: str, version: str) -> None:
    _child(REQUESTS, endpoint, str(status), model, version).inc()
    _child(LATENCY, endpoint, model, version).observe(seconds)


def predicted(model: str, version: int, rows: int) -> None:
    _child(ROWS, model, str(version)).inc(rows)


def train_step(model: str, version: int, loss: float, online) -> None:
    STEPS.labels(model, str(version)).inc()
    stats = online.as_dict()
    ONLINE_LOSS.labels(model, str(version)).set(
        stats["loss"] if stats["loss"] is not None else loss
    )
    if stats["accuracy"] is not None:
        ONLINE_ACC.labels(model, str(version)).set(stats["accuracy"])


def step_refused(model: str) -> None:
    REFUSED.labels(model).inc()


def loaded(model: str, version: int) -> None:
    LOADS.labels(model, str(version)).inc()


def load_failed(model: str, version: int) -> None:
    LOAD_FAILURES.labels(model, str(version)).inc()


def served_version(model: str, version: int) -> None:
    SERVED.labels(model).set(version)


def storage_failed(model: str, code: str) -> None:
    STORAGE_ERRORS.labels(model, code).inc()
    LEARNING_PAUSED.labels(model).set(1)


def learning_paused(model: str, paused: bool) -> None:
    LEARNING_PAUSED.labels(model).set(1 if paused else 0)


def exposition() -> tuple[bytes, str]:
    if _MP:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
