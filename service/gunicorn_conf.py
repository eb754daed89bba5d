"""gunicorn settings from the BPSERVE_ environment (the top-level gunicorn.conf.py loads
this module, so that an installed package and a checkout use the same settings)."""

import os
import shutil
import tempfile

from service.settings import Settings

_s = Settings()

bind = [_s.bind]
workers = _s.workers
threads = _s.threads
worker_class = "service.worker.RecyclingThreadWorker"
timeout = _s.timeout
graceful_timeout = _s.graceful_timeout
keepalive = 5
# The control socket (gunicorn >= 25.1) has one fixed path per user: several servers on
# one machine would fight over it, and the service does not use it.
control_socket_disable = True
wsgi_app = "service.wsgi:app"
accesslog = None  # the app logs one JSON line per request itself
errorlog = "-"
# Set before the workers import numpy: one BLAS thread per worker unless configured.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(_s.blas_threads))
os.environ.setdefault("OMP_NUM_THREADS", str(_s.blas_threads))


def on_starting(server):
    # A fresh folder for prometheus_client's per-worker files, every start.
    path = tempfile.mkdtemp(prefix="bpserve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    server.log.info("metrics folder %s", path)
    # And one for what the workers must agree on that is not in the store: whether a
    # model's learning is paused by the storage (service/learning_state.py).
    os.environ["BPSERVE_STATE_DIR"] = tempfile.mkdtemp(prefix="bpserve-state-")


def pre_fork(server, worker):
    # In the master: the worker's slot in the connection ledger (service/worker.py).
    from service.worker import assign_slot

    assign_slot(server, worker)


def post_fork(server, worker):
    # In the worker, after fork: malloc settings must be made by the process that uses them.
    from service.malloc import keep_freed_memory

    keep_freed_memory()


def post_worker_init(worker):
    import gc

    gc.freeze()
    # A stopping gthread worker (gunicorn 27) stops accepting but keeps its copy of the
    # listening socket open while it drains, so the kernel goes on completing new
    # connections that nobody will answer and that are reset when the drain ends.
    # Closing this worker's copy as it stops accepting lets them be refused at once
    # (the master closed its own copy already; a SIGHUP reload keeps the master's).
    stop_accepting = getattr(worker, "set_accept_enabled", None)
    if stop_accepting is None:
        return

    def set_accept_enabled(enabled):
        stop_accepting(enabled)
        if not enabled and not worker.alive:
            for listener in worker.sockets:
                listener.close()

    worker.set_accept_enabled = set_accept_enabled


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for var in ("PROMETHEUS_MULTIPROC_DIR", "BPSERVE_STATE_DIR"):
        path = os.environ.get(var, "")
        if path.startswith(tempfile.gettempdir()):
            shutil.rmtree(path, ignore_errors=True)
